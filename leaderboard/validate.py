"""Validate submissions against the leaderboard's rules (leaderboard/rules.py), one line per failure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from bench.experiments.runs.compare import ResultSet, pool
from bench.core.errors import BenchError
from bench.experiments.runs.replay import replay
from bench.scenarios import load_scenario, scenario_from_dict
from leaderboard.rules import LIVE_RULES, RULES
from leaderboard.submission import Submission, builtin_name
from schedulers.registry import BUILTINS, resolve

QUANTILES = np.linspace(0.0, 1.0, 201)


def builtin_claim(scheduler: Any) -> str | None:
    """Why a manifest's `scheduler` entry is refused (a name or reference that is not text, or a built-in described
    otherwise than the registry describes it); None when it is fine.

    What a built-in is (its class, whether it learns) is the registry's, never the manifest's: verify picks its
    check by `learns` (exact actions for a rule, a 10% metric window for a learner), so a rule claimed to learn
    would be held only to the window. Honest bundles of a built-in always carry the registry's values."""
    if not isinstance(scheduler, dict):
        return "the manifest's scheduler entry is not an object"
    name = scheduler.get("name")
    ref = scheduler.get("ref", name)
    for key, value in (("name", name), ("ref", ref)):
        if not isinstance(value, str):
            return f"{key} = {json.dumps(value)[:60]} is not allowed; expected the scheduler's name or reference as text"
    builtin = next((x for x in (name, ref) if x in BUILTINS), None)
    if builtin is None:
        return None
    if name != builtin or ref != builtin:
        return (f"name = {str(name)[:60]!r} with ref = {str(ref)[:60]!r} is not allowed; a built-in is named by its own name "
                f"(expected both '{builtin}')")
    cls = resolve(builtin)
    expected = f"{cls.__module__}:{cls.__qualname__}"
    if scheduler.get("class") != expected:
        return f"class = {str(scheduler.get('class'))[:80]!r} is not allowed for the built-in '{builtin}'; expected {expected} (the registry's)"
    learns = scheduler.get("learns")
    if not isinstance(learns, bool) or learns != cls.learns:
        return f"learns = {json.dumps(learns)[:20]} is not allowed for the built-in '{builtin}'; expected {json.dumps(cls.learns)} (the registry's)"
    return None


@dataclass
class Validation:
    submission: Submission
    failures: list[str] = field(default_factory=list)
    result: ResultSet | None = None
    delay_quantiles: np.ndarray | None = None  # per-task delay at QUANTILES, all evaluation tasks pooled

    @property
    def valid(self) -> bool:
        return not self.failures


def validate(sub: Submission, *, check_replay: bool = True, collect_delays: bool = False) -> Validation:
    v = Validation(sub)
    fail = v.failures.append
    for problem in sub.load(verify=True):
        fail(("schema: " if "schema" in problem or "not a result bundle" in problem else "integrity: ") + problem)
    if sub.meta_error:
        fail(f"disclosure: {sub.meta_error}")
    if not sub.bundles:
        if not sub.bundle_dirs:
            fail(f"schema: {sub.root}: no result bundle (no manifest.json) found")
        return v
    for b in sub.bundles:  # before pooling: what ran must be told as the registry tells it (builtin_claim)
        problem = builtin_claim(b.manifest.get("scheduler"))
        if problem:
            fail(f"scheduler: {b.path}: {problem}")
    if v.failures:
        return v
    try:
        result = pool(sub.bundles, label=sub.label)
    except BenchError as exc:
        fail(f"pooling: {exc}")
        return v
    v.result = result
    first = sub.bundles[0].manifest
    name = first["scenario"]["name"]
    rules = LIVE_RULES if result.live else RULES
    rule = rules.get(name)
    if rule is None:
        fail(f"scenario: '{name}' is not a leaderboard scenario{' for live runs' if result.live else ''}; expected one of {', '.join(rules)}")
        return v
    if sub.meta is not None and builtin_name(sub.meta.name) not in (None, result.scheduler):
        fail(f"disclosure: name = {sub.meta.name[:60]!r} in submission.toml is not allowed; it is the built-in scheduler "
             f"'{builtin_name(sub.meta.name)}' and this submission runs '{result.scheduler}'; expected a name of your own")
    preset_hash = load_scenario(name).hash
    for b in sub.bundles:
        m = b.manifest
        try:
            recomputed = scenario_from_dict(m["scenario"]["config"]).hash
        except BenchError as exc:
            fail(f"scenario: {b.path}: the recorded scenario is not valid ({exc})")
            continue
        if recomputed != m["scenario"]["hash"] or m["scenario"]["hash"] != preset_hash:
            fail(f"scenario: {b.path}: scenario '{name}' was modified (its configuration hashes to {recomputed[:12]}, the preset to {preset_hash[:12]})")
    seeds = result.seeds
    missing = [s for s in rule.seeds if s not in seeds]
    if missing:
        fail(f"seeds: {len(seeds)} seed(s) {seeds[:10]}; '{name}' ranks every entry on seeds {list(rule.seeds)} (missing {missing})")
    eval_episodes = first["protocol"]["eval_episodes"]
    if eval_episodes < rule.min_eval_episodes:
        fail(f"episodes: {eval_episodes} evaluation episodes per seed; '{name}' needs at least {rule.min_eval_episodes}")
    if result.learns:
        trained = first["protocol"]["train_episodes"]
        if trained > rule.max_train_episodes:
            fail(f"training: {trained} training episodes per seed; '{name}' allows at most {rule.max_train_episodes}")
        elif trained <= 0:
            fail("training: no training is recorded (a policy evaluated from a checkpoint must come from a bundle that records its training)")
        if sub.meta is None or not sub.meta.hyperparameter_tuning.strip():
            fail("disclosure: a learning scheduler's submission.toml must state hyperparameter_tuning (how its hyper-parameters were chosen; 'none' for the defaults)")
    if check_replay and not v.failures:
        delays: list[np.ndarray] = []
        for b in sub.bundles:
            try:
                report = replay(b, on_trace=(lambda s, e, trace: delays.append(trace.delay_s.copy())) if collect_delays else None)
            except BenchError as exc:
                fail(f"replay: {exc}")
                continue
            for line in report.mismatches[:3]:
                fail(f"replay: {b.path}: {line}")
            if len(report.mismatches) > 3:
                fail(f"replay: {b.path}: ... and {len(report.mismatches) - 3} more mismatches")
        if collect_delays and result.live and not v.failures:  # the measured delays of the completed requests
            delays = [b.tasks().filter(pl.col("status") == "done")["delay_s"].to_numpy() for b in sub.bundles]
        if collect_delays and delays and not v.failures:
            v.delay_quantiles = np.quantile(np.concatenate(delays), QUANTILES)
    return v
