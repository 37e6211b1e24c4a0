"""A learning scheduler's trained states, one per seed, as a bundle stores them (checkpoint.pt), and the rules for
evaluating from one: which hyper-parameters it brings, which runs it fits, and the training it reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from bench.core.config import parse_override
from bench.core.errors import BundleError
from bench.scenarios import Scenario

RUNTIME_PARAMS = frozenset({"device", "threads"})  # where a learner runs, not what it learned: a checkpoint may change them


@dataclass
class Checkpoint:
    """Trained states of a learning scheduler, one per seed."""

    scheduler: str
    scenario_hash: str
    params: dict[str, Any]
    states: dict[int, dict[str, Any]]
    source: str | None = None
    sha256: str | None = None
    # how the policy was trained, when the checkpoint comes from a bundle: its training episodes, and per
    # seed the learning-curve rows and the learner's counters; a run from the checkpoint reports them
    train_episodes: int | None = None
    training: dict[int, dict[str, Any]] = field(default_factory=dict)

    def fill(self, scheduler: str, params: Sequence[str] | Mapping[str, Any]) -> Sequence[str] | Mapping[str, Any]:
        """The run's hyper-parameters completed with the ones the policy was trained with: evaluating a checkpoint
        needs none of them again. A parameter given explicitly is kept (check() refuses it when it differs), and
        a checkpoint of another scheduler fills nothing (check() refuses it)."""
        if scheduler != self.scheduler:
            return params
        given = dict(params) if isinstance(params, Mapping) else {".".join(k): v for k, v in map(parse_override, params)}
        return {**{k: v for k, v in self.params.items() if k not in RUNTIME_PARAMS}, **given}

    def check(self, scheduler: str | None, scenario: Scenario, seeds: Sequence[int], params: Mapping[str, Any] | None = None) -> None:
        """Refuse a checkpoint of another scheduler, scenario, hyper-parameters or seeds (one line each).

        `params` are the run's resolved hyper-parameters; `device` and `threads` may differ (where the policy
        runs, not what it is). `scheduler` None: not known yet (a confined scheduler names itself when its process
        starts; the runner checks the name and parameters then)."""
        if scheduler is not None and scheduler != self.scheduler:
            raise BundleError(f"--checkpoint holds a '{self.scheduler}' policy; expected one of '{scheduler}'")
        if params is not None:
            for key in sorted(set(self.params) | set(params)):
                if key in RUNTIME_PARAMS:
                    continue
                mine, theirs = self.params.get(key, "<absent>"), params.get(key, "<absent>")
                if mine != theirs:
                    raise BundleError(f"--checkpoint was trained with {key} = {mine!r}; this run has {theirs!r} (pass --param {key}={json.dumps(mine)} to evaluate it)")
        if scenario.hash != self.scenario_hash:
            raise BundleError(f"--checkpoint was trained on scenario hash {self.scenario_hash[:12]}; this run's scenario has {scenario.hash[:12]}")
        missing = [s for s in seeds if s not in self.states]
        if missing:
            raise BundleError(f"--checkpoint has no state for seed(s) {missing}; it holds seeds {sorted(self.states)}")

    def trained(self, seed: int, rows: list[dict[str, Any]], stats: dict[str, float], train_s: float) -> tuple[list[dict[str, Any]], dict[str, float], float]:
        """What a run from this checkpoint reports as seed `seed`'s training: how the policy was trained (its
        learning curve, counters and time) where the checkpoint carries it, else what the run itself saw."""
        if seed not in self.training:
            return rows, stats, train_s
        trained = self.training[seed]
        rows = [dict(r) for r in trained.get("rows", [])]
        return rows, dict(trained.get("stats", stats)), float(sum(r.get("wall_s", 0.0) for r in rows))

    def info(self) -> dict[str, Any]:
        """The result's record of the checkpoint it was evaluated from."""
        return {"source": self.source, "sha256": self.sha256, "train_episodes": self.train_episodes}
