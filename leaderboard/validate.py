"""Validate submissions against the leaderboard's rules (leaderboard/rules.py), one line per failure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from bench.experiments.runs.compare import ResultSet, pool
from bench.core.errors import BenchError
from bench.experiments.runs.replay import replay
from bench.scenarios import load_scenario, scenario_from_dict
from leaderboard.rules import LIVE_RULES, RULES
from leaderboard.submission import Submission

QUANTILES = np.linspace(0.0, 1.0, 201)


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
    if len(seeds) < rule.min_seeds:
        fail(f"seeds: {len(seeds)} seed(s) {seeds}; '{name}' needs at least {rule.min_seeds}")
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
