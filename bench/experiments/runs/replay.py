"""Replay a bundle: regenerate its evaluation task streams, re-apply its actions, recompute its metrics.

The recomputed per-episode metrics must equal the stored ones exactly (same code, same arithmetic),
so a bundle whose numbers were edited, or whose actions do not belong to its scenario and seeds, fails.
Timing columns are wall-clock measurements and are not compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.engine.trace import EpisodeTrace
from bench.core.errors import BenchError, BundleError
from bench.engine.metrics import EPISODE_METRICS, episode_metrics, same_value
from bench.experiments.runs.summary import episodes_independent, summarize
from bench.experiments.runs.bundles import Bundle, read_bundle
from bench.scenarios import scenario_from_dict
from bench.engine.system import System


@dataclass
class ReplayReport:
    episodes: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def replay(bundle: Bundle | Path, on_trace: Callable[[int, int, EpisodeTrace], None] | None = None) -> ReplayReport:
    """Recompute every episode of `bundle`; `on_trace(seed, episode, trace)` sees each replayed episode."""
    if not isinstance(bundle, Bundle):
        bundle = read_bundle(Path(bundle))
    m = bundle.manifest
    if m.get("mode") == "live":  # measured, not simulated: its metrics are recomputed from the recorded timestamps
        from bench.experiments.runs.live_records import replay_live

        problems = replay_live(bundle)
        return ReplayReport(episodes=len(bundle.episodes), mismatches=problems)
    try:
        scenario = scenario_from_dict(m["scenario"]["config"], source=f"{bundle.path}/manifest.json scenario")
    except BenchError as exc:
        raise BundleError(f"{bundle.path}: the manifest's scenario is invalid ({exc})") from None
    if scenario.hash != m["scenario"]["hash"]:
        raise BundleError(f"{bundle.path}: the scenario config does not match its recorded hash (it was edited)")

    report = ReplayReport()
    stored = {(int(r["seed"]), int(r["episode"])): r for r in bundle.episodes.iter_rows(named=True)}
    n_actions = 0
    for seed in m["seeds"]:
        system = System.build(scenario, int(seed))
        env = system.env()
        for e in range(m["protocol"]["eval_episodes"]):
            row = stored.get((int(seed), e))
            if row is None:
                report.mismatches.append(f"seed {seed} episode {e}: no row in episodes.parquet")
                continue
            actions = bundle.episode_actions(int(seed), e)
            n_actions += actions.shape[0]
            try:
                trace = env.evaluate(system.workload(e), actions, who=f"bundle actions (seed {seed}, episode {e})")
            except BenchError as exc:
                report.mismatches.append(str(exc))
                continue
            if on_trace is not None:
                on_trace(int(seed), e, trace)
            again = episode_metrics(trace)
            if bundle.version == 1:  # schema 1 counted a model load in the compute part
                again["mean_compute_s"] += again["mean_load_s"]
            for key in EPISODE_METRICS:
                if key in row and not same_value(again[key], row[key]):
                    report.mismatches.append(f"seed {seed} episode {e}: {key} is {row[key]!r} in the bundle, {again[key]!r} on replay")
            report.episodes += 1
    if n_actions != bundle.actions.height:
        report.mismatches.append(f"actions.parquet has {bundle.actions.height} rows; the episodes account for {n_actions}")
    expected = {(int(s), e) for s in m["seeds"] for e in range(m["protocol"]["eval_episodes"])}
    extra = sorted(set(stored) - expected)
    if extra:
        report.mismatches.append(f"episodes.parquet has rows outside the protocol's seeds and episodes: {extra[:5]}")
    if not report.mismatches:
        independent = episodes_independent(m["scenario"]["config"]) if bundle.version >= 2 else True  # schema 1: episodes always
        again = summarize(list(stored.values()), learns=bool(m["scheduler"]["learns"]), independent=independent)
        for key, value in again.items():
            if bundle.summary.get(key) != value:
                report.mismatches.append(f"summary.json: {key} is {bundle.summary.get(key)!r}; the episodes give {value!r}")
    return report
