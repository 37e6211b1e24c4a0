"""The ranking statistics of the leaderboard (the rule is stated in leaderboard/rules.py and docs/leaderboard.md).

Per scenario, every pair of entries (A, B) is compared by a two-sided paired t-test of the difference
A - B in mean delay. Every scheduler sees the same task streams for a (scenario, seed), so the difference is
taken on identical tasks:

  over episodes  when neither entry learns and the scenario's episodes are independent (nothing is drawn
                 once per seed: servers and per-index task tables fixed), one pair per (seed, episode);
  over seeds     otherwise: one pair per seed both entries have, the mean of that seed's episode
                 differences (a learner also varies with its training seed; anything drawn per seed makes
                 the episodes of one seed dependent).

The p-values of all pairs of a scenario are adjusted together by Holm's step-down method, so the chance of
declaring any difference that is not there is at most 5% per scenario (family-wise error). A pair that cannot
be tested (no paired values, one value, zero variance with a non-zero mean difference, a non-finite value)
is an error with its reason: it is never counted as a tie, nor as a difference.

    rank  = 1 + the number of entries significantly better
    worst = N - the number of entries significantly worse   (the rank is shown as the range rank-worst)

Pure functions of their arguments; leaderboard/site.py shows the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import numpy as np
import polars as pl
from scipy import stats

from bench.experiments.runs.summary import Over, episodes_independent, pairing, t_interval, windows_repeat  # noqa: F401 (re-exported for the site)

ALPHA = 0.05  # family-wise error per scenario
LEVEL = 0.95  # the confidence level of the intervals shown


class NotComputable(ValueError):
    """A comparison or interval that the data cannot give; the message is the reason shown on the site."""


def paired_differences(a: pl.DataFrame, b: pl.DataFrame, over: Over, metric: str = "mean_delay_s") -> np.ndarray:
    """A - B of `metric`, one value per (seed, episode) both have, or per seed (the mean of its episode differences).

    `a` and `b` hold columns seed, episode and `metric` (episodes.parquet rows); a missing value becomes NaN."""
    cols = ["seed", "episode", metric]
    joined = a.select(cols).join(b.select(cols), on=["seed", "episode"], suffix="_b")
    if joined.height == 0:
        raise NotComputable("no paired episodes (no (seed, episode) in common)")
    d = joined.select("seed", "episode", (pl.col(metric).cast(pl.Float64) - pl.col(f"{metric}_b").cast(pl.Float64)).fill_null(float("nan")).alias("d"))
    if over == "episodes":
        return d["d"].to_numpy().astype(np.float64)
    if over == "windows":  # one value per window: every seed replays the same windows
        return d.group_by("episode").agg(pl.col("d").mean()).sort("episode")["d"].to_numpy().astype(np.float64)
    return d.group_by("seed").agg(pl.col("d").mean()).sort("seed")["d"].to_numpy().astype(np.float64)


@dataclass(frozen=True)
class TTest:
    n: int
    mean: float
    ci: tuple[float, float]  # LEVEL interval of the mean difference (not adjusted for multiplicity)
    t: float
    p: float  # two-sided


def paired_t_test(d: np.ndarray, level: float = LEVEL, constant_is_certain: bool = False) -> TTest:
    """Two-sided one-sample t-test of mean(d) = 0 on paired differences d; NotComputable says why it cannot be done.

    All differences exactly zero (the same results) is a test with p = 1; a zero variance with a non-zero mean
    has no t statistic and is an error, unless `constant_is_certain`: then every pair differing by the same amount
    is a certain difference (p = 0), as for a metric that is a fixed property of a choice (a variant's published
    quality, the same in every episode)."""
    d = np.asarray(d, dtype=np.float64)
    n = int(d.shape[0])
    if n == 0:
        raise NotComputable("no paired values")
    bad = int((~np.isfinite(d)).sum())
    if bad:
        raise NotComputable(f"{bad} of {n} paired difference(s) not finite (a missing or infinite value)")
    if n < 2:
        raise NotComputable("only 1 paired value; a t-test needs at least 2")
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * float(np.abs(d).max()) or sd == 0.0:
        if mean == 0.0:
            return TTest(n, 0.0, (0.0, 0.0), 0.0, 1.0)
        if constant_is_certain:
            return TTest(n, mean, (mean, mean), math.copysign(math.inf, mean), 0.0)
        raise NotComputable(f"zero variance with a non-zero mean difference ({mean:+.6g} s in all {n} pairs): the t statistic is undefined")
    se = sd / math.sqrt(n)
    t = mean / se
    p = float(2.0 * stats.t.sf(abs(t), n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    if not (math.isfinite(t) and math.isfinite(p) and math.isfinite(half)):
        raise NotComputable(f"non-finite test statistic (t = {t}, p = {p})")
    return TTest(n, mean, (mean - half, mean + half), float(t), p)


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down method: adjusted p-values, and which hypotheses are rejected at family-wise error `alpha`.

    Sorted ascending, p_(j) is rejected when p_(i) <= alpha / (m - i + 1) for every i <= j; equivalently its
    adjusted p-value max_{i<=j} min(1, (m - i + 1) p_(i)) is at most alpha."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.shape[0]
    if m == 0:
        return p.copy(), np.zeros(0, dtype=bool)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p-values must lie in [0, 1]; got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted, adjusted <= alpha


class Contender(Protocol):
    """What the ranking needs of an entry (bench.experiments.runs.compare.ResultSet has it)."""

    learns: bool
    scenario_hash: str
    episodes: pl.DataFrame  # seed, episode, mean_delay_s


@dataclass(frozen=True)
class Comparison:
    """Entries a and b (indices) compared: a - b in mean delay, or the error that prevented it."""

    a: int
    b: int
    over: Over
    n: int = 0
    mean: float | None = None
    ci: tuple[float, float] | None = None
    t: float | None = None
    p: float | None = None
    p_holm: float | None = None
    significant: bool = False  # after Holm's correction
    error: str | None = None

    @property
    def better(self) -> int | None:
        """The index of the entry significantly better (lower mean delay), or None."""
        if not self.significant or self.mean is None:
            return None
        return self.b if self.mean > 0 else self.a


def compare_all(contenders: Sequence[Contender], independent: bool, alpha: float = ALPHA, metric: str = "mean_delay_s",
                windows: bool = False, constant_is_certain: bool = False) -> list[Comparison]:
    """Every pair (i < j) of one scenario's entries, tested and Holm-adjusted together (module docstring).

    The family is the pairs that could be tested; a pair that could not is returned with its error."""
    out: list[Comparison] = []
    for i in range(len(contenders)):
        for j in range(i + 1, len(contenders)):
            a, b = contenders[i], contenders[j]
            over = pairing(a.learns, b.learns, independent, windows)
            if a.scenario_hash != b.scenario_hash:
                out.append(Comparison(i, j, over, error="different scenario configurations: the task streams are not the same"))
                continue
            try:
                test = paired_t_test(paired_differences(a.episodes, b.episodes, over, metric), constant_is_certain=constant_is_certain)
            except NotComputable as exc:
                reason = str(exc)
                if over == "seeds" and reason.startswith("only 1 paired value"):
                    reason = "only 1 seed in common; a paired test over seeds needs at least 2"
                out.append(Comparison(i, j, over, error=reason))
                continue
            out.append(Comparison(i, j, over, test.n, test.mean, test.ci, test.t, test.p))
    tested = [k for k, c in enumerate(out) if c.error is None]
    adjusted, rejected = holm([out[k].p for k in tested], alpha)
    for k, q, r in zip(tested, adjusted, rejected):
        out[k] = replace(out[k], p_holm=float(q), significant=bool(r) and out[k].mean != 0.0)
    return out


@dataclass(frozen=True)
class Rank:
    best: int  # 1 + number of entries significantly better
    worst: int  # N - number of entries significantly worse
    better: tuple[int, ...]  # indices of the entries significantly better
    worse: tuple[int, ...]
    errors: tuple[int, ...]  # indices of the entries whose comparison with this one failed

    @property
    def text(self) -> str:
        return str(self.best) if self.best == self.worst else f"{self.best}–{self.worst}"


def ranks(n: int, comparisons: Sequence[Comparison]) -> list[Rank]:
    """Each entry's rank range from the comparisons of compare_all."""
    better: list[list[int]] = [[] for _ in range(n)]
    worse: list[list[int]] = [[] for _ in range(n)]
    errors: list[list[int]] = [[] for _ in range(n)]
    for c in comparisons:
        if c.error is not None:
            errors[c.a].append(c.b)
            errors[c.b].append(c.a)
        elif c.better is not None:
            loser = c.b if c.better == c.a else c.a
            better[loser].append(c.better)
            worse[c.better].append(loser)
    return [Rank(1 + len(better[i]), n - len(worse[i]), tuple(sorted(better[i])), tuple(sorted(worse[i])), tuple(sorted(errors[i]))) for i in range(n)]


INTERVAL_RULE = ("95% interval of the mean on the log scale, m·exp(±t·s/(m√n)) over the same units as the comparisons "
                 "(episodes or per-seed means): the delta method for log m, so it holds the mean, never reaches zero, and "
                 "leans right as positive, skewed delays do; for many units it is the t interval")


def mean_interval(episodes: pl.DataFrame, over: Over, metric: str = "mean_delay_s", level: float = LEVEL) -> tuple[float, float] | None:
    """The interval of an entry's mean `metric` (INTERVAL_RULE), over the same units its comparisons use: episodes,
    or per-seed means. A t interval of a few widely spread seeds reached below zero (dqn-ts on edge-gpu: [-13.8,
    243.3] s), which no delay can; a metric that is not positive everywhere keeps the t interval."""
    values = episodes.select("seed", "episode", pl.col(metric).cast(pl.Float64)).drop_nulls()
    if over == "seeds":  # sorted: group_by's order varies from process to process, and with it the sums' last bits
        values = values.group_by("seed").agg(pl.col(metric).mean()).sort("seed")
    elif over == "windows":
        values = values.group_by("episode").agg(pl.col(metric).mean()).sort("episode")
    v = values[metric].to_numpy()
    if not np.isfinite(v).all() or v.shape[0] < 2:
        return None
    if not (v > 0).all():
        return t_interval(v, level)
    m = float(v.mean())
    half = float(stats.t.ppf(0.5 + level / 2, v.shape[0] - 1) * v.std(ddof=1) / (m * math.sqrt(v.shape[0])))
    return (m * math.exp(-half), m * math.exp(half))


def separable_difference(comparisons: Sequence[Comparison], over: Over, tests: int, alpha: float = ALPHA) -> tuple[float, int] | None:
    """What the ranking can separate among pairs over `over`: the median, over those pairs, of the smallest mean
    difference that Holm's first (strictest) step declares, t(n-1, 1 - alpha / (2 tests)) * sd / sqrt(n), with each
    pair's own sd of its paired differences and n; and that median n. None without such a pair."""
    found = []
    for c in comparisons:
        if c.error is None and c.over == over and c.n >= 2 and c.t not in (None, 0.0) and c.mean is not None and np.isfinite(c.t):
            sd = abs(c.mean / c.t) * math.sqrt(c.n)  # t = mean / (sd / sqrt(n))
            found.append((float(stats.t.ppf(1 - alpha / (2 * max(tests, 1)), c.n - 1)) * sd / math.sqrt(c.n), c.n))
    if not found:
        return None
    return float(np.median([f[0] for f in found])), int(np.median([f[1] for f in found]))


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """Whether each point is on the front of lower-is-better (x, y): no other point is lower on both."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    return [bool(np.isfinite(x[i]) and np.isfinite(y[i]) and not ((x < x[i]) & (y < y[i])).any()) for i in range(x.shape[0])]
