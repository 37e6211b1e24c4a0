"""What a run is asked to do, and the same request resolved: every check made before any work, so a bad argument
fails in a second with one line, never after an hour of training (docs/results.md).

`RunRequest` holds the caller's words (a scheduler reference, parameters as given, optional counts);
`resolve(request)` checks them against the scenario, the scheduler's registry entry and the checkpoint, and
returns a `RunPlan` in which every count is known. A scheduler the suite must not import (untrusted code run in
the sandbox) is resolved as far as its name allows: what it is (`learns`, its parameters) is learnt from its run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from bench.core.errors import BenchError, ConfigError
from bench.engine.system import System
from bench.experiments.runs.checkpoint import Checkpoint
from bench.scenarios import Scenario
from schedulers.registry import BUILTINS, config_dict, label, make, parse_params, resolve as resolve_scheduler


@dataclass(frozen=True)
class RunRequest:
    """A run as asked for. `confined`: the scheduler's code runs elsewhere (the sandbox) and is not imported here
    unless it is a built-in. `scenario_ref`, `overrides` and `trace` are how the scenario was named (the bundle's
    command line re-creates the run from them); `device` is the learners' torch device (their `device` parameter)."""

    scenario: Scenario
    scheduler: str
    params: Sequence[str] | Mapping[str, Any] = ()
    seeds: Sequence[int] = (0,)
    episodes: int | None = None
    train_episodes: int | None = None
    checkpoint: Checkpoint | None = None
    keep_traces: bool = False
    device: str | None = None
    confined: bool = False
    scenario_ref: str | None = None
    overrides: Sequence[str] = ()
    trace: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """A checked request. `cls` is None for a confined non-built-in (never imported here); then `learns`,
    `scheduler_class` and `scheduler_params` are None until its run says, and `train_for` gives the training."""

    request: RunRequest
    scenario: Scenario
    scheduler: str  # the reference as given
    label: str  # the display name
    cls: type | None
    learns: bool | None
    scheduler_class: str | None
    scheduler_params: dict[str, Any] | None
    params: Sequence[str] | Mapping[str, Any]  # as given, completed from the checkpoint
    seeds: list[int]
    episodes: int
    checkpoint: Checkpoint | None

    def train_for(self, learns: bool) -> int:
        """Training episodes per seed of a scheduler that learns or not: none for rules and from a checkpoint
        (its own training is reported instead), else the request's or the scenario's."""
        if not learns or self.checkpoint is not None:
            return 0
        n = self.request.train_episodes
        return self.scenario.protocol.train_episodes if n is None else int(n)

    @property
    def train_episodes(self) -> int | None:
        """Training episodes the run reports: None while `learns` is unknown."""
        if self.learns is None:
            return None
        if self.learns and self.checkpoint is not None:
            return self.checkpoint.train_episodes or 0
        return self.train_for(self.learns)

    @property
    def episodes_total(self) -> int | None:
        """Episodes the run plays (training and evaluation, all seeds): the length of a progress bar."""
        if self.learns is None:
            return None
        return len(self.seeds) * (self.episodes + self.train_for(self.learns))

    def command(self, learns: bool, *, out: str | None = None, task_records: bool = False, with_checkpoint: bool = True,
                sandbox: bool = False) -> list[str]:
        """The `bench run` command line that re-creates this run (a bundle's manifest records it); `learns` is
        the scheduler's, known after the run for a confined one."""
        r = self.request
        cmd = ["bench", "run", "--scheduler", self.scheduler, "--scenario", r.scenario_ref or self.scenario.name]
        cmd += ["--trace", r.trace] if r.trace else []
        cmd += [x for o in r.overrides for x in ("--set", o)]
        given = r.params if not isinstance(r.params, Mapping) else [f"{k}={json.dumps(v)}" for k, v in r.params.items()]
        cmd += [x for p in given for x in ("--param", p)]
        cmd += ["--device", r.device] if r.device is not None else []
        cmd += ["--seed", ",".join(map(str, self.seeds)), "--episodes", str(self.episodes)]
        cmd += ["--train-episodes", str(self.train_for(True))] if learns and self.checkpoint is None else []
        cmd += ["--checkpoint", str(self.checkpoint.source)] if self.checkpoint is not None else []
        cmd += ["--task-records"] * task_records + ["--no-checkpoint"] * (not with_checkpoint) + ["--sandbox"] * sandbox
        return cmd + (["--out", out] if out is not None else [])


def resolve(request: RunRequest) -> RunPlan:
    """Check a request before any work (one line naming the field on any problem) and complete it."""
    r = request
    seeds = list(r.seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError("seeds", seeds, "distinct non-negative integers, at least one")
    episodes = r.scenario.protocol.eval_episodes if r.episodes is None else r.episodes
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise ConfigError("episodes", episodes, "an integer >= 1")
    if r.train_episodes is not None and (not isinstance(r.train_episodes, int) or isinstance(r.train_episodes, bool) or r.train_episodes < 0):
        raise ConfigError("train_episodes", r.train_episodes, "an integer >= 0")
    params = r.params
    if r.device is not None:
        params = {**_as_mapping(params), "device": r.device}
    if r.checkpoint is not None:  # the hyper-parameters the policy was trained with, unless given (and then checked)
        params = r.checkpoint.fill(r.scheduler, params)
    if r.scenario.tasks.trace is not None:  # a replayed trace has as many evaluation episodes as evaluation windows
        System.build(r.scenario, seeds[0]).check_episodes(episodes)
    if r.confined and r.scheduler not in BUILTINS:
        plain_params(params)
        if r.checkpoint is not None:  # what can be checked before the scheduler's code runs: scenario and seeds
            r.checkpoint.check(None, r.scenario, seeds)
        return RunPlan(r, r.scenario, r.scheduler, r.scheduler, None, None, None, None, params, seeds, episodes, r.checkpoint)

    cls = resolve_scheduler(r.scheduler)
    name = label(r.scheduler, cls)
    if getattr(cls, "requires_serving", False) and r.scenario.serving is None:
        raise ConfigError("--scenario", r.scenario.name, f"a scenario with [serving] for '{r.scheduler}', which decides variants or batches "
                          "(docs/serving.md: batch-gpu, cascade-gpu)")
    if r.device is not None and (cls.Config is None or "device" not in {f.name for f in dataclasses.fields(cls.Config)}):
        raise BenchError(f"--device is not allowed with '{r.scheduler}'; expected a scheduler with a device parameter (the deep-RL learners)")
    parse_params(cls, r.scheduler, params)
    resolved = config_dict(make(r.scheduler, params))
    if r.checkpoint is not None:
        if not cls.learns:
            raise BenchError(f"--checkpoint is not allowed with '{r.scheduler}'; expected a learning scheduler")
        r.checkpoint.check(name, r.scenario, seeds, resolved)
    return RunPlan(r, r.scenario, r.scheduler, name, cls, bool(cls.learns), f"{cls.__module__}:{cls.__qualname__}", resolved,
                   params, seeds, episodes, r.checkpoint)


def _as_mapping(params: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    from bench.core.config import parse_override

    if isinstance(params, Mapping):
        return dict(params)
    return {".".join(k): v for k, v in map(parse_override, params)}


def plain_params(params: Sequence[str] | Mapping[str, Any]) -> dict[str, Any] | list[str]:
    """Parameters as plain data that crosses into the sandbox as JSON (refused when they do not)."""
    data = dict(params) if isinstance(params, Mapping) else [str(p) for p in params]
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError("--param", data, "plain values (text, numbers, booleans, lists)") from None
    return data
