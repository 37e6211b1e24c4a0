"""The regression gate's power: the smallest relative change of a delay metric that `bench check` catches
90% of the time, per cell, computed from the committed baseline.

    python -m bench.experiments.campaigns.gate_power                    # the table of docs/regression.md
    python -m bench.experiments.campaigns.gate_power --measure-noise    # re-measure the learners' noise (minutes)

Heuristics are deterministic: any change beyond the float tolerance, up or down, on any gated seed fails,
so their power is 1 for every change larger than rel 1e-9 (of the cells' own behaviour: a change that
leaves every gated cell's output alone is not seen).

Learners. Unchanged code on another machine gives, per seed, at worst another draw of the learner's
outcome (float rounding differs and training amplifies it into another path). The baseline stores that
noise: `--measure-noise` re-runs every learner cell `replicates` times with its random generator seeded
differently (`Redrawn<k>_<name>` below: the same learner, other weights and samples, the same task
stream), which decorrelates the paths completely, the worst another CPU can do. From those replicates,
sigma_w is each seed's spread between draws (pooled over seeds). A regression by delta makes the new
per-seed values (1 + delta) times another draw, so the paired differences have mean delta * mean(baseline)
and standard deviation sigma_w * sqrt(1 + (1 + delta)^2). Assuming they are normal, the chance that the
gate fails (|mean change| > LEARNER_RATIO and the paired t-test's p below FAMILY_ALPHA / m, Holm's first
step with m learner tests) is an integral over the sample standard deviation's chi-square law; the table
gives the delta at which it is 90%.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import integrate, optimize, stats

from bench.core.errors import BenchError
from bench.core.io import staged
from bench.experiments.campaigns import gate

POWER = 0.9
REPLICATES = 3
_REDRAWN = re.compile(r"Redrawn(\d+)_(\w+)")


def redrawn(name: str, offset: int) -> type:
    """The learner `name` with its random generator seeded `offset` further on: other initial weights and
    samples, the same task stream and environment (both come from the seed's own streams)."""
    from schedulers.registry import resolve

    base = resolve(name)
    if not base.learns or not hasattr(base, "_build"):
        raise BenchError(f"gate noise: scheduler '{name}' is not a built-in deep learner; expected one of the learners in schedulers/rl")

    def reset(self: Any, info: Any, rng: np.random.Generator) -> None:
        base.reset(self, info, rng)
        self.gen.manual_seed(int(self.gen.initial_seed()) + offset)
        self._build()  # fresh weights (and LAD-TS's memory) from the new draws

    ident = f"Redrawn{offset}_{name.replace('-', '_')}"
    return type(ident, (base,), {"reset": reset, "__module__": __name__, "__qualname__": ident})


def __getattr__(attr: str) -> type:
    """`bench.experiments.campaigns.gate_power:Redrawn<k>_<name>` resolves (in a worker too) to `redrawn(name, k)`."""
    from schedulers.registry import builtin_names

    match = _REDRAWN.fullmatch(attr)
    if match is None:
        raise AttributeError(attr)
    names = {n.replace("-", "_"): n for n in builtin_names(learns=True)}
    if match.group(2) not in names:
        raise AttributeError(attr)
    return redrawn(names[match.group(2)], int(match.group(1)))


def measure_noise(cells: list[gate.GateCell], jobs: int = 1, replicates: int = REPLICATES, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per learner cell: `replicates` runs of every seed with other draws (offsets 1..replicates)."""
    from schedulers.registry import resolve

    learners = [c for c in cells if resolve(c.scheduler).learns]
    noise: dict[str, Any] = {c.key: {"method": "redrawn generator", "replicates": []} for c in learners}
    for k in range(1, replicates + 1):
        sub = {c.scheduler: f"{__name__}:Redrawn{k}_{c.scheduler.replace('-', '_')}" for c in learners}
        measured = gate.measure(learners, jobs=jobs, substitute=sub, progress=progress)
        for c in learners:
            noise[c.key]["replicates"].append(measured[c.key]["per_seed"])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for entry in noise.values():
        entry["created_utc"] = stamp
    return noise


def within_seed_sd(replicates: list[dict[str, dict[str, float]]], metric: str) -> tuple[float, int]:
    """Pooled standard deviation between draws of the same seed, and its degrees of freedom."""
    seeds = sorted(set.intersection(*(set(r) for r in replicates)), key=int)
    x = np.array([[r[s][metric] for s in seeds] for r in replicates])  # (replicates, seeds)
    if x.shape[0] < 2 or not seeds:
        raise BenchError(f"gate noise: {metric} needs at least 2 replicates of common seeds; run --measure-noise")
    return float(np.sqrt(x.var(axis=0, ddof=1).mean())), len(seeds) * (x.shape[0] - 1)


def rejection_chance(delta: float, n: int, mean: float, sd_w: float, alpha: float, ratio: float = gate.LEARNER_RATIO) -> float:
    """Chance that the gate fails a metric whose per-seed values moved by `delta` (relative), n seeds, a
    per-test level `alpha` (two-sided) and the ratio threshold, under normal paired differences."""
    sd = sd_w * math.sqrt(1 + (1 + delta) ** 2)
    se = sd / math.sqrt(n)
    t_crit = stats.t.ppf(1 - alpha / 2, n - 1)
    shift = delta * mean

    def given(u: float) -> float:  # u: (n-1) s^2 / sd^2, chi-square with n-1 degrees of freedom
        bound = max(ratio * mean, t_crit * se * math.sqrt(u / (n - 1)))
        return (stats.norm.sf((bound - shift) / se) + stats.norm.cdf((-bound - shift) / se)) * stats.chi2.pdf(u, n - 1)

    lo, hi = stats.chi2.ppf([1e-12, 1 - 1e-12], n - 1)
    value, _ = integrate.quad(given, lo, hi, limit=200, points=[n - 1])
    return float(value)


CONDITIONAL_RUNS = 20_000  # simulated runs per rate given the committed baseline


def given_baseline(base: dict[str, float], replicates: list[dict[str, dict[str, float]]], metric: str, sd_w: float, alpha: float,
                   deltas: tuple[float, ...] = (-0.05, 0.0, 0.05), runs: int = CONDITIONAL_RUNS) -> dict[float, float]:
    """The chance that the gate fails, against *this* baseline (its values are one fixed draw, not a random one):
    per seed s the new value is (1 + delta) x another draw N(mu_s, sd_w^2), mu_s the mean of the seed's noise
    replicates; the gate's own rule (paired t p below `alpha`, Holm's first limit, and |change| > LEARNER_RATIO) on
    simulated runs (fixed seed: the table does not move between calls). A baseline drawn below its seeds' means
    catches increases sooner than decreases, one above them the reverse (the audit: d2sac-ts caught +5% always, -5%
    62% of the time)."""
    seeds = sorted(set(base) & set.intersection(*(set(r) for r in replicates)), key=int)
    b = np.array([base[s][metric] for s in seeds])
    mu = np.array([[r[s][metric] for s in seeds] for r in replicates]).mean(axis=0)
    rng = np.random.default_rng(20261206)
    out = {}
    for delta in deltas:
        now = (1 + delta) * (mu + sd_w * rng.standard_normal((runs, len(seeds))))
        fails = (gate.paired_p(np.broadcast_to(b, now.shape), now) < alpha) & (np.abs(gate.relative_change(b, now)) > gate.LEARNER_RATIO)
        out[delta] = float(fails.mean())
    return out


def detectable(n: int, mean: float, sd_w: float, alpha: float, power: float = POWER) -> float:
    """The smallest relative increase caught with probability `power`."""
    if rejection_chance(4.0, n, mean, sd_w, alpha) < power:
        return math.inf
    return float(optimize.brentq(lambda d: rejection_chance(d, n, mean, sd_w, alpha) - power, 0.0, 4.0, xtol=1e-5))


def power_rows(baseline: dict[str, Any]) -> list[dict[str, Any]]:
    cells = baseline["cells"]
    learners = [k for k, c in cells.items() if c["learns"]]
    m = len(learners) * len(gate.GATED_METRICS)
    rows = []
    for key, cell in cells.items():
        for metric in gate.GATED_METRICS:
            base = np.array([v[metric] for v in cell["per_seed"].values()])
            row = {"cell": key, "metric": metric, "learns": cell["learns"], "seeds": len(base), "mean": float(base.mean())}
            if not cell["learns"]:
                row.update(alpha=0.0, detectable=gate.FLOAT_TOLERANCE)
            else:
                noise = baseline.get("noise", {}).get(key)
                if not noise or len(noise.get("replicates", [])) < 2:
                    raise BenchError(f"gate power: the baseline holds no noise replicates for {key}; run `python -m bench.experiments.campaigns.gate_power --measure-noise`")
                sd_w, df = within_seed_sd(noise["replicates"], metric)
                alpha = gate.FAMILY_ALPHA / m
                row.update(alpha=alpha, sd_w=sd_w, df=df, sd_rel=sd_w * math.sqrt(2) / row["mean"], detectable=detectable(len(base), row["mean"], sd_w, alpha),
                           given=given_baseline(cell["per_seed"], noise["replicates"], metric, sd_w, alpha))
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "| cell | metric | seeds | false alarm per test | sd of a per-seed difference | change caught 90% of the time | chance to catch +5% "
        "| given the committed baseline: false alarm | catch +5% | catch −5% |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["learns"]:
            at5 = rejection_chance(0.05, r["seeds"], r["mean"], r["sd_w"], r["alpha"])
            g = r["given"]
            out.append(f"| {r['cell']} | {r['metric']} | {r['seeds']} | {r['alpha']:.2g} | {100 * r['sd_rel']:.1f}% | +{100 * r['detectable']:.1f}% | {100 * at5:.0f}% "
                       f"| {100 * g[0.0]:.2f}% | {100 * g[0.05]:.0f}% | {100 * g[-0.05]:.0f}% |")
    heuristics = {r["cell"] for r in rows if not r["learns"]}
    if heuristics:
        out.append(f"| {len(heuristics)} heuristic cells | all three | 1–2 | 0 | 0 (deterministic) | any change > rel {gate.FLOAT_TOLERANCE:g} | 100% | 0 | 100% | 100% |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.campaigns.gate_power", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=gate.DEFAULT_BASELINE, help="baseline file (default: the committed one)")
    parser.add_argument("--measure-noise", action="store_true", help="re-run the learner cells with other draws and store them in the baseline")
    parser.add_argument("--replicates", type=int, default=REPLICATES, help="draws per seed for --measure-noise (>= 2)")
    parser.add_argument("--jobs", "-j", type=int, default=2, help="worker processes for --measure-noise")
    args = parser.parse_args(argv)
    try:
        baseline = gate.load_baseline(args.baseline)
        if args.measure_noise:
            if args.replicates < 2:
                raise BenchError(f"--replicates = {args.replicates} is not allowed; expected an integer >= 2")
            cells = [c for c in gate.default_cells() if c.key in baseline["cells"]]
            baseline["noise"] = measure_noise(cells, jobs=args.jobs, replicates=args.replicates)
            text = json.dumps(baseline, indent=1) + "\n"
            with staged(args.baseline) as tmp:
                tmp.write_text(text, encoding="utf-8")
            print(f"noise replicates written to {args.baseline}", file=sys.stderr)
        rows = power_rows(baseline)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
