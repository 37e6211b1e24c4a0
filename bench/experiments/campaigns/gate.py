"""The regression gate: `bench check` runs a fixed, fast set of cells and compares their delay metrics
with a committed baseline (`bench/experiments/campaigns/regression_baseline.json`); `bench check --update` rewrites it.

Rules (docs/regression.md), both two-sided: a change either way fails, because a bug can lower delays too
(a dropped wait term), and a deliberate change of behaviour is recorded with `--update`.
- Schedulers that do not learn are deterministic given the seed: every gated metric of every seed must
  equal the baseline's within a float tolerance (relative 1e-9). No chance is involved: false alarms 0.
- Learning schedulers are bit-identical on one machine and software, but another CPU rounds differently and
  training can amplify that into another path. They are compared seed by seed (paired: the same seed gives
  the same task stream), as asv does, with a ratio threshold and a significance test: a metric fails only if
  its mean over seeds moved by more than LEARNER_RATIO AND a two-sided paired t-test on the per-seed
  differences rejects "no change" after Holm's correction over all learner metrics of the run, at
  FAMILY_ALPHA per run. Under "no change", another machine's per-seed results are another draw of the same
  distribution: the differences are symmetric around 0, where the t-test holds its level (tests check it
  on simulated noise). Power (the smallest change caught 90% of the time): `python -m
  bench.experiments.campaigns.gate_power`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

import bench
from bench.core.errors import BenchError
from bench.core.io import staged

GATED_METRICS = ("mean_delay_s", "p95_delay_s", "p99_delay_s")
FLOAT_TOLERANCE = 1e-9  # heuristics: relative change counted as float rounding, not behaviour
LEARNER_RATIO = 0.02  # learners: smallest relative change of a mean over seeds that can fail
FAMILY_ALPHA = 0.01  # learners: chance that unchanged code fails the run (Holm over all learner metrics)
SCHEMA = 1
DEFAULT_BASELINE = Path(__file__).with_name("regression_baseline.json")


@dataclass(frozen=True)
class GateCell:
    scenario: str
    scheduler: str
    seeds: tuple[int, ...]
    episodes: int
    train_episodes: int | None = None
    params: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.scheduler}@{self.scenario}"


# Learner cells (all on `tiny`, `min_buffer=100`, 20 evaluation episodes: cheap, and they average out the
# policy's sampling). Seeds and training episodes per learner were chosen from measured per-seed noise and
# cost (docs/regression.md): SAC-TS's outcome spreads much less after 60 training episodes; LAD-TS and
# DQN-TS spread about as much after 60 as after 30, so they get more seeds instead.
LEARNER_PLAN = {"lad-ts": (40, 30), "d2sac-ts": (24, 30), "sac-ts": (20, 60), "dqn-ts": (48, 30)}  # seeds, training episodes
LEARNER_DEFAULT = (24, 30)
LEARNER_EPISODES = 20
LEARNER_PARAMS = ("min_buffer=100",)


def default_cells() -> list[GateCell]:
    """The gate's fixed cells: every heuristic on `paper` (seed 0) and `tiny` (seeds 0-1), every learner on `tiny`."""
    from schedulers.registry import builtin_names

    from bench.scenarios import load_scenario

    paper, tiny = load_scenario("paper"), load_scenario("tiny")  # the serving rules need a scenario with [serving]: not gated here
    rules, learners = builtin_names(learns=False, scenario=paper), builtin_names(learns=True, scenario=tiny)
    cells = [GateCell("paper", h, (0,), 3) for h in rules]
    cells += [GateCell("tiny", h, (0, 1), 10) for h in rules]
    for name in learners:
        seeds, train = LEARNER_PLAN.get(name, LEARNER_DEFAULT)
        cells.append(GateCell("tiny", name, tuple(range(seeds)), LEARNER_EPISODES, train, LEARNER_PARAMS))
    return cells


@dataclass
class Finding:
    cell: str
    metric: str
    baseline: float
    now: float
    tolerance: str
    verdict: str  # "ok", "regressed" (higher delay), "improved" (lower delay); both of the latter fail
    detail: str = ""

    @property
    def change(self) -> float:
        return (self.now - self.baseline) / self.baseline if self.baseline else float("inf")

    @property
    def fails(self) -> bool:
        return self.verdict != "ok"


@dataclass
class GateReport:
    findings: list[Finding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.missing) or any(f.fails for f in self.findings)


def _run_seed(scenario: str, scheduler: str, params: tuple[str, ...], seed: int, episodes: int, train_episodes: int | None) -> dict[str, float]:
    """One seed of one cell (in a worker): the gated metrics, each averaged over the evaluation episodes."""
    from bench.experiments.runs.runner import run
    from bench.scenarios import load_scenario

    result = run(load_scenario(scenario, ()), scheduler, params=list(params), seeds=[seed], episodes=episodes, train_episodes=train_episodes)
    return {m: float(np.mean([r[m] for r in result.rows])) for m in GATED_METRICS}


def measure(cells: list[GateCell], jobs: int = 1, substitute: Mapping[str, str] | None = None, progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run the cells; per cell key: whether it learns, and per seed the gated metrics (mean over episodes).

    `substitute` runs another scheduler (`module:Class`) in a cell's place (tests, noise measurement). Seeds run
    in `jobs` long-lived worker processes (a run is a pure function of its inputs, so which process runs it
    does not matter; starting a process per seed would cost more than most runs), learners first."""
    from schedulers.registry import resolve

    substitute = dict(substitute or {})
    out: dict[str, dict[str, Any]] = {c.key: {"learns": resolve(c.scheduler).learns, "per_seed": {}} for c in cells}
    tasks = [(c, seed) for c in sorted(cells, key=lambda c: not out[c.key]["learns"]) for seed in c.seeds]

    def args(c: GateCell, seed: int) -> tuple[Any, ...]:
        return (c.scenario, substitute.get(c.scheduler, c.scheduler), c.params, seed, c.episodes, c.train_episodes)

    def record(c: GateCell, seed: int, metrics: dict[str, float]) -> None:
        out[c.key]["per_seed"][str(seed)] = metrics
        if progress:
            progress(f"{c.key} seed {seed}")

    def failure(c: GateCell, seed: int, exc: BaseException) -> BenchError:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        return BenchError(f"bench check: cell {c.key} seed {seed} failed: {type(exc).__name__}: {lines[-1]}")

    if jobs <= 1:
        for c, seed in tasks:
            try:
                record(c, seed, _run_seed(*args(c, seed)))
            except Exception as exc:
                raise failure(c, seed, exc) from None
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [(c, seed, pool.submit(_run_seed, *args(c, seed))) for c, seed in tasks]
            try:
                for c, seed, fut in futures:
                    try:
                        record(c, seed, fut.result())
                    except Exception as exc:
                        raise failure(c, seed, exc) from None
            finally:
                for _, _, fut in futures:
                    fut.cancel()
    for cell in out.values():
        cell["per_seed"] = dict(sorted(cell["per_seed"].items(), key=lambda kv: int(kv[0])))
    return out


def paired_p(base: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Two-sided paired t-test of "no change" over the last axis (seeds): p per leading index; 1 when the
    values are identical (or one seed), 0 when every seed moved by the same amount."""
    base = np.asarray(base, dtype=float)
    d = np.asarray(now, dtype=float) - base
    n = d.shape[-1]
    if n < 2:
        return np.ones(d.shape[:-1])
    sd = d.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(d.mean(axis=-1)) / (sd / np.sqrt(n))
    p = 2 * stats.t.sf(t, n - 1)
    p = np.where(sd <= 1e-12 * np.abs(base).max(axis=-1), 0.0, p)
    return np.where((d == 0).all(axis=-1), 1.0, p)


def holm(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down over the last axis: which hypotheses are rejected with a family-wise error rate of at
    most `alpha` (the smallest p against alpha/m, the next against alpha/(m-1), ..., stopping at the first miss)."""
    p = np.asarray(pvalues, dtype=float)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    passed = np.logical_and.accumulate(ranked <= alpha / (m - np.arange(m)), axis=-1)
    rejected = np.empty_like(passed)
    np.put_along_axis(rejected, order, passed, axis=-1)
    return rejected


def relative_change(base: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Change of the mean over the last axis (seeds), relative to the baseline's."""
    return np.asarray(now).mean(axis=-1) / np.asarray(base).mean(axis=-1) - 1


def learner_fails(pvalues: np.ndarray, change: np.ndarray) -> np.ndarray:
    """The learner rule over one run's tests (last axis): Holm rejects "no change" at FAMILY_ALPHA for the
    run, and the mean moved by more than LEARNER_RATIO either way."""
    return holm(pvalues, FAMILY_ALPHA) & (np.abs(change) > LEARNER_RATIO)


def compare(baseline: dict[str, Any], now: dict[str, dict[str, Any]]) -> GateReport:
    report = GateReport()
    learner_tests: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for key, cell in now.items():
        base = baseline.get("cells", {}).get(key)
        if base is None or set(base["per_seed"]) != set(cell["per_seed"]):
            report.missing.append(key)
            continue
        seeds = sorted(cell["per_seed"], key=int)
        for metric in GATED_METRICS:
            b = np.array([base["per_seed"][s][metric] for s in seeds])
            n = np.array([cell["per_seed"][s][metric] for s in seeds])
            if cell["learns"]:
                learner_tests.append((key, metric, b, n))
                continue
            worse = n > b * (1 + FLOAT_TOLERANCE) + 1e-12
            better = n < b * (1 - FLOAT_TOLERANCE) - 1e-12
            verdict = "regressed" if worse.any() else ("improved" if better.any() else "ok")
            detail = "; ".join(f"seeds {[int(s) for s, w in zip(seeds, mask) if w]} {word}" for mask, word in ((worse, "higher"), (better, "lower")) if mask.any())
            report.findings.append(Finding(key, metric, float(b.mean()), float(n.mean()), f"exact (rel {FLOAT_TOLERANCE:g}), both ways", verdict, detail))
    if learner_tests:
        m = len(learner_tests)
        pvalues = np.array([float(paired_p(b, n)) for _, _, b, n in learner_tests])
        change = np.array([float(relative_change(b, n)) for _, _, b, n in learner_tests])
        for (key, metric, b, n), p, c, fails in zip(learner_tests, pvalues, change, learner_fails(pvalues, change)):
            verdict = ("regressed" if c > 0 else "improved") if fails else "ok"
            detail = f"paired t p = {p:.2g} over {len(b)} seeds (Holm over {m} tests: the smallest p must be < {FAMILY_ALPHA / m:.2g})"
            report.findings.append(Finding(key, metric, float(b.mean()), float(n.mean()), f"±{LEARNER_RATIO:.0%} and Holm p < {FAMILY_ALPHA:g}", verdict, detail))
    return report


def load_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BenchError(f"bench check: no baseline at {path}; create it with `bench check --update`")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise BenchError(f"bench check: {path} has schema {data.get('schema')!r}; expected {SCHEMA} (recreate it with --update)")
    return data


def cell_definition(c: GateCell) -> dict[str, Any]:
    return {"scenario": c.scenario, "scheduler": c.scheduler, "episodes": c.episodes, "train_episodes": c.train_episodes, "params": list(c.params)}


def write_baseline(path: Path, measured: dict[str, dict[str, Any]], cells: list[GateCell], noise: dict[str, Any] | None = None) -> None:
    """Write the baseline atomically. `noise` (from `gate_power.measure_noise`) replaces the learners' noise
    replicates; without it, the file's current ones are kept for cells defined as before (same scenario,
    scheduler, parameters, episodes and seeds)."""
    from bench.core.provenance import package_versions

    definitions = {c.key: {**cell_definition(c), "seeds": [str(s) for s in c.seeds]} for c in cells}
    if noise is None:
        noise = {}
        try:
            old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            for key, entry in old.get("noise", {}).items():
                before = old["cells"].get(key, {})
                if key in definitions and {**{k: before.get(k) for k in cell_definition(cells[0])}, "seeds": list(before.get("per_seed", {}))} == definitions[key]:
                    noise[key] = entry
        except (ValueError, KeyError, TypeError, AttributeError):
            noise = {}
    data = {
        "schema": SCHEMA,
        "suite_version": bench.__version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "packages": package_versions(),
        "cells": {c.key: {**measured[c.key], **cell_definition(c)} for c in cells},
        "noise": noise,
    }
    text = json.dumps(data, indent=1) + "\n"
    with staged(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
