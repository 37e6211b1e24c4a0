"""The regression gate: unchanged code reproduces its baseline; a heuristic made a few percent slower or
faster fails; a learner with other draws (the worst another machine can do) passes and one that stops
learning fails; on simulated per-seed noise the learner rule keeps its stated false-alarm rate, and the
power formula of `gate_power` agrees with simulation."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.cli.experiments import _print_gate
from bench.experiments.campaigns import gate_power
from bench.experiments.campaigns.gate import (
    FAMILY_ALPHA,
    GATED_METRICS,
    LEARNER_RATIO,
    GateCell,
    compare,
    holm,
    learner_fails,
    load_baseline,
    measure,
    paired_p,
    relative_change,
    write_baseline,
)
from schedulers.classical import LocalScheduler
from schedulers.opt_ts import OptTS, place_greedily
from schedulers.rl.sac import LADTS

HEURISTICS = [GateCell("tiny", "opt-ts", (0, 1), 10), GateCell("tiny", "local", (0, 1), 10)]
LEARNER = GateCell("tiny", "lad-ts", tuple(range(16)), 3, train_episodes=30, params=("min_buffer=100",))


class SlowerOptTS(OptTS):
    """opt-ts with a small bug: every tenth task goes to the server after its best one (a few % more delay)."""

    def decide(self, batch):
        actions = super().decide(batch)
        actions[::10] = (actions[::10] + 1) % batch.n_servers
        return actions


class FasterLocal(LocalScheduler):
    """`local` with a small "improvement": every twentieth task goes where opt-ts would send it (a few % less
    delay). A heuristic that gets faster has changed behaviour too, and must be recorded deliberately."""

    def decide(self, batch):
        actions = super().decide(batch)
        best = place_greedily(batch, batch.service_s, np.zeros(len(batch), dtype=np.int64))
        actions[::20] = best[::20]
        return actions


class BrokenUpdateLAD(LADTS):
    """lad-ts with a bug: its update step does nothing, so it never learns."""

    def _update(self, sample, active, noise=None):
        return {}


def _cells(per_cell_metric):
    """A `measure`-shaped dict of learner cells from {(cell, metric): per-seed array}."""
    out = {}
    for (key, metric), values in per_cell_metric.items():
        cell = out.setdefault(key, {"learns": True, "per_seed": {}})
        for s, v in enumerate(values):
            cell["per_seed"].setdefault(str(s), {})[metric] = float(v)
    return out


@pytest.fixture(scope="module")
def heuristic_baseline():
    return {"cells": measure(HEURISTICS)}


def test_unchanged_heuristics_reproduce_their_baseline_exactly(heuristic_baseline):
    report = compare(heuristic_baseline, measure(HEURISTICS))
    assert not report.failed and report.findings and all(f.verdict == "ok" for f in report.findings)


def test_a_few_percent_slower_or_faster_heuristic_fails(heuristic_baseline):
    now = measure(HEURISTICS, substitute={"opt-ts": "tests.test_check:SlowerOptTS", "local": "tests.test_check:FasterLocal"})
    report = compare(heuristic_baseline, now)
    assert report.failed
    found = {(f.cell, f.metric): f for f in report.findings}
    slower, faster = found["opt-ts@tiny", "mean_delay_s"], found["local@tiny", "mean_delay_s"]
    assert slower.verdict == "regressed" and 0 < slower.change < 0.05, slower
    assert faster.verdict == "improved" and -0.05 < faster.change < 0, faster
    assert faster.fails and "lower" in faster.detail


def test_exact_rule_allows_rounding_only_and_fails_both_ways():
    def run(value):
        return {"x@tiny": {"learns": False, "per_seed": {"0": {"mean_delay_s": value, "p95_delay_s": 3.0, "p99_delay_s": 4.0}}}}

    base = {"cells": run(2.0)}
    assert not compare(base, run(2.0 * (1 + 1e-12))).failed
    assert compare(base, run(2.0 * (1 + 1e-6))).findings[0].verdict == "regressed"
    lower = compare(base, run(2.0 * (1 - 1e-6)))
    assert lower.failed and lower.findings[0].verdict == "improved"


def test_holm_steps_down():
    assert holm([0.001, 0.02, 0.04], 0.05).tolist() == [True, True, True]
    assert holm([0.03, 0.03], 0.05).tolist() == [False, False]
    assert holm([0.2, 0.001, 0.02], 0.05).tolist() == [False, True, True]
    assert holm([[0.2, 0.001], [0.02, 0.03]], 0.05).tolist() == [[False, True], [True, True]]


def test_learner_rule_on_data_like_compare():
    """The vectorised rule the simulations below use is the one `compare` applies."""
    rng = np.random.default_rng(3)
    base = rng.uniform(2, 4, (12, 20))
    now = base * (1 + 0.3 * (np.arange(12) == 4)[:, None]) + rng.normal(0, 0.1, (12, 20))
    report = compare({"cells": _cells({(f"l{i // 3}@tiny", GATED_METRICS[i % 3]): base[i] for i in range(12)})}, _cells({(f"l{i // 3}@tiny", GATED_METRICS[i % 3]): now[i] for i in range(12)}))
    assert [f.fails for f in report.findings] == learner_fails(paired_p(base, now), relative_change(base, now)).tolist()
    assert [f.fails for f in report.findings] == [i == 4 for i in range(12)]
    assert paired_p(base[:2], base[:2]).tolist() == [1.0, 1.0] and paired_p(base[0], base[0] + 0.1) == 0.0


def test_learner_rule_keeps_its_false_alarm_rate_on_simulated_noise():
    """Unchanged learners on another machine: per seed, differences symmetric around 0; 4 cells x 3 metrics,
    20 seeds. Normal and independent (where Holm is tightest), then heavy-tailed (Student t, 3 degrees of
    freedom) and correlated across a cell's metrics, as delays are."""
    rng = np.random.default_rng(12)
    runs, m, n = 10000, 12, 20
    slack = 3 * np.sqrt(FAMILY_ALPHA / runs)  # three binomial standard deviations
    base = rng.uniform(2, 8, (m, n))
    scale = 0.15 * base.mean(axis=-1, keepdims=True)
    shared = np.repeat(rng.standard_t(3, (runs, 4, 1, n)), 3, axis=2).reshape(runs, m, n)
    for noise in (rng.normal(size=(runs, m, n)), 0.7 * shared + 0.3 * rng.standard_t(3, (runs, m, n))):
        now = base + scale * noise
        p = paired_p(base, now)
        fails = learner_fails(p, relative_change(base, now)).any(axis=-1).mean()
        assert fails <= FAMILY_ALPHA + slack, fails  # stated: at most 1% of runs fail by chance
        assert 0.035 < (p < 0.05).mean() < 0.055  # not trivially silent: uncorrected, about 5% of single tests


def test_power_formula_agrees_with_simulation():
    """One metric of one of 4 learner cells grows by the delta the formula says is caught 90% of the time."""
    rng = np.random.default_rng(5)
    runs, m, n, mean, sd_w = 10000, 12, 20, 4.0, 0.4
    delta = gate_power.detectable(n, mean, sd_w, FAMILY_ALPHA / m)
    assert LEARNER_RATIO < delta < 0.5
    seed_effect = mean + rng.normal(0, 0.3, (runs, m, n))
    base = seed_effect + rng.normal(0, sd_w, (runs, m, n))
    now = seed_effect + rng.normal(0, sd_w, (runs, m, n))  # another draw of every seed
    now[:, 0] *= 1 + delta
    caught = learner_fails(paired_p(base, now), relative_change(base, now))[:, 0].mean()
    assert 0.88 <= caught <= 0.92, caught  # 90% within three standard deviations


def test_power_table_of_the_committed_baseline():
    rows = gate_power.power_rows(load_baseline(gate_power.gate.DEFAULT_BASELINE))
    learners = [r for r in rows if r["learns"]]
    assert learners and all(0 < r["detectable"] < 10 and r["alpha"] > 0 for r in learners)
    assert all(r["detectable"] == 1e-9 and r["alpha"] == 0 for r in rows if not r["learns"])
    table = gate_power.markdown(rows)
    assert table.count("\n") == len(learners) + 2 and "heuristic cells" in table


def test_missing_baseline_and_missing_cells(tmp_path):
    r = CliRunner().invoke(app, ["check", "--baseline", str(tmp_path / "none.json")])
    assert r.exit_code == 2 and "bench check --update" in r.stderr
    report = compare({"schema": 1, "cells": {}}, {"opt-ts@tiny": {"learns": False, "per_seed": {"0": {"mean_delay_s": 1, "p95_delay_s": 1, "p99_delay_s": 1}}}})
    assert report.failed and report.missing == ["opt-ts@tiny"]


def test_a_failing_cell_is_one_line():
    with pytest.raises(Exception) as info:
        measure([GateCell("tiny", "tests.test_check:NoSuchScheduler", (0,), 1)])
    assert "NoSuchScheduler" in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def learner_baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("gate") / "baseline.json"
    write_baseline(path, measure([LEARNER], jobs=2), [LEARNER])
    return json.loads(path.read_text())


@pytest.mark.slow
def test_redrawn_learner_passes(learner_baseline):
    now = measure([LEARNER], jobs=2, substitute={"lad-ts": "bench.experiments.campaigns.gate_power:Redrawn1_lad_ts"})
    before = [learner_baseline["cells"]["lad-ts@tiny"]["per_seed"][s]["mean_delay_s"] for s in map(str, LEARNER.seeds)]
    after = [now["lad-ts@tiny"]["per_seed"][s]["mean_delay_s"] for s in map(str, LEARNER.seeds)]
    assert not np.allclose(before, after), "other draws must change the per-seed results"
    report = compare(learner_baseline, now)
    assert not report.failed, [f for f in report.findings if f.verdict != "ok"]


@pytest.mark.slow
def test_learner_that_stops_learning_fails_with_a_readable_table(learner_baseline, capsys):
    """Without updates LAD-TS's delays rise by about a third on average, and erratically (its outcome spreads
    much more than a trained one's), so 16 seeds are needed here; the gate's own cell has 40."""
    report = compare(learner_baseline, measure([LEARNER], jobs=2, substitute={"lad-ts": "tests.test_check:BrokenUpdateLAD"}))
    assert report.failed and all(f.change > 0.2 for f in report.findings)
    assert {(f.cell, f.metric) for f in report.findings if f.verdict == "regressed"} >= {("lad-ts@tiny", "p95_delay_s"), ("lad-ts@tiny", "p99_delay_s")}
    _print_gate(report)
    text = capsys.readouterr().out
    assert "FAILED" in text and "lad-ts@tiny" in text and "paired t" in text and "%" in text


def test_update_keeps_the_noise_replicates_of_unchanged_cells_only(tmp_path):
    path = tmp_path / "baseline.json"
    a, b = GateCell("tiny", "lad-ts", (0, 1), 3, 30), GateCell("tiny", "sac-ts", (0, 1), 3, 30)
    measured = _cells({(c.key, metric): [1.0, 2.0] for c in (a, b) for metric in GATED_METRICS})
    noise = {c.key: {"replicates": [measured[c.key]["per_seed"]] * 2} for c in (a, b)}
    write_baseline(path, measured, [a, b], noise)
    write_baseline(path, measured, [a, GateCell("tiny", "sac-ts", (0, 1), 5, 30)])
    assert set(json.loads(path.read_text())["noise"]) == {"lad-ts@tiny"}


def test_the_power_given_the_committed_baseline_is_asymmetric_where_the_baseline_is_off_centre():
    """Audit: the gate's power was stated as if both sides were random draws; against a fixed baseline that lies
    above its seeds' means, decreases are caught sooner than increases (and the reverse below)."""
    from bench.experiments.campaigns.gate_power import given_baseline

    rng = np.random.default_rng(1)
    mu = rng.uniform(1.0, 2.0, size=20)
    replicates = [{str(s): {"m": float(mu[s] + 0.02 * rng.normal())} for s in range(20)} for _ in range(3)]
    high = {str(s): {"m": float(mu[s] * 1.02)} for s in range(20)}  # a baseline drawn 2% above its means
    up = given_baseline(high, replicates, "m", sd_w=0.03, alpha=0.001, runs=4000)
    low = {str(s): {"m": float(mu[s] * 0.98)} for s in range(20)}
    down = given_baseline(low, replicates, "m", sd_w=0.03, alpha=0.001, runs=4000)
    assert up[-0.05] > up[0.05] and down[0.05] > down[-0.05]  # a high baseline sees decreases sooner, a low one increases
