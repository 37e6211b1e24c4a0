"""The hot paths, one slot of `paper` at a time: the environment's step, every built-in scheduler's
decisions, and one learning update of each learner (all 20 agents, batches of 64).

    pytest tests/benchmarks --benchmark-enable                                   # run
    pytest tests/benchmarks --benchmark-enable --benchmark-storage=file://tests/benchmarks/baseline \\
        --benchmark-save=baseline                                                 # save a baseline
    pytest tests/benchmarks --benchmark-enable --benchmark-storage=file://tests/benchmarks/baseline \\
        --benchmark-compare --benchmark-compare-fail=median:50%                   # compare with it

(See docs/regression.md. Timings are machine-specific: compare on the machine that saved the baseline.)
"""

import numpy as np
import pytest
import torch

from bench.scenarios import load_scenario
from bench.engine.system import System
from schedulers import make
from schedulers.registry import BUILTINS, resolve
from bench.experiments.runs.runner import run_episode


@pytest.fixture(scope="module")
def paper():
    system = System.build(load_scenario("paper"), 0)
    return system, system.workload(0)


@pytest.mark.benchmark(group="environment")
def test_environment_step_one_slot(benchmark, paper):
    system, wl = paper
    env = system.env()
    actions = np.random.default_rng(0).integers(0, 20, wl.n_tasks)
    n = int(wl.slot_offsets[1])

    def step():
        env.reset(wl)
        env.step(actions[:n])

    benchmark(step)
    assert env.slot == 1


@pytest.mark.benchmark(group="decisions")
@pytest.mark.parametrize("name", sorted(n for n in BUILTINS if not resolve(n).requires_serving))  # the serving rules need [serving]
def test_decisions_one_slot(benchmark, paper, name):
    system, wl = paper
    env = system.env()
    sched = make(name)
    sched.reset(system.info(), system.streams.scheduler())
    sched.begin_episode(0, training=False)
    env.reset(wl)
    batch = env.batch(env.pending("slot"))
    assert resolve(name).batch_unit == "slot"  # every built-in decides a whole slot per call
    sched.decide(batch)  # compile kernels, warm caches
    actions = benchmark(sched.decide, batch)
    benchmark.extra_info["decisions"] = len(batch)
    assert actions.shape == (len(batch),)


@pytest.mark.benchmark(group="learning-update")
@pytest.mark.parametrize("name", ["lad-ts", "d2sac-ts", "sac-ts", "dqn-ts"])
def test_one_learning_update(benchmark, paper, name):
    system, _ = paper
    learner = make(name)
    learner.reset(system.info(), system.streams.scheduler())
    env = system.env()
    run_episode(env, learner, system.workload(0, training=True), episode=0, training=True, who=name)
    sample = learner.replay.sample(learner.config.batch_size, learner.gen)
    active = torch.ones(learner.n_agents, dtype=torch.bool)
    before = {k: v.clone() for k, v in learner._tensors().items()}
    benchmark(learner._update, sample, active)
    benchmark.extra_info["agent_updates"] = learner.n_agents
    changed = [k for k, v in learner._tensors().items() if not torch.equal(v, before[k])]
    assert changed, "an update must change the networks"
