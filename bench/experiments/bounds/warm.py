"""A feasible assignment to start the exact searches from: opt-ts's, charged by the engine. A search that finds
nothing better in its time still answers with it (audit: `bench bound` said "no-solution" on an instance where
opt-ts's assignment is feasible), and the branch and bound prunes against it from its first node."""

from __future__ import annotations

import numpy as np

from bench.engine.environment import Environment
from bench.experiments.runs.runner import run_episode
from schedulers.opt_ts import OptTS
from tasks.workload import Workload


def opt_ts_actions(env: Environment, workload: Workload) -> np.ndarray:
    """opt-ts's server for every task of `workload`, decision order."""
    trace, _ = run_episode(env, OptTS(), workload, episode=0, training=False, who="opt-ts (the exact search's start)")
    return np.array(trace.actions, dtype=np.int64)  # a copy the search may write
