"""The dispatching rules of the queueing literature (schedulers/queueing.py): size-interval assignment and its tuning."""

import numpy as np
import pytest

from bench.core.config import tomllib
from bench.experiments.runs.runner import run
from bench.scenarios import load_scenario
from leaderboard.populate import TUNED, tuned_params
from leaderboard.rules import RULES
from schedulers import make
from tests.conftest import play


@pytest.mark.parametrize("scenario, episodes", [("paper", 2), ("paper-poisson", 1)])
def test_sita_without_reserved_servers_is_opt_ts(scenario, episodes):
    """reserved = 0: one group, every server, and opt-ts's rule within it (slotted, and over event-time windows)."""
    sc = load_scenario(scenario)
    a = run(sc, "sita", params={"reserved": 0}, seeds=[0], episodes=episodes)
    b = run(sc, "opt-ts", seeds=[0], episodes=episodes)
    for x, y in zip(a.per_seed[0].actions, b.per_seed[0].actions):
        assert np.array_equal(x, y)


def test_sita_puts_small_requests_on_the_fastest_servers_and_large_ones_elsewhere(paper_system):
    s = paper_system
    capacity = np.asarray(s.info().capacity_gcps, dtype=float)
    fast = set(np.argsort(-capacity, kind="stable")[:4].tolist())
    sched = make("sita", {"reserved": 4, "threshold_s": 0.027})
    sched.reset(s.info(), s.streams.scheduler())
    trace = play(s, sched, 0)
    size = trace.workload.work_gcycles / capacity.max()  # paper: compute = work / capacity; the fastest server's time
    small = size <= 0.027
    on_fast = np.isin(trace.actions, sorted(fast))
    assert 0.2 < small.mean() < 0.8  # both groups are exercised
    assert on_fast[small].all() and not on_fast[~small].any()


def test_sita_beats_opt_ts_on_paper_with_its_tuned_parameters_on_unseen_seeds():
    """Tuned on seeds 10-11 only; on seed 3 (neither tuned on nor ranked) the size split still lowers the mean delay."""
    sc = load_scenario("paper")
    tuned = run(sc, "sita", params=tuned_params("sita", "paper"), seeds=[3], episodes=3).summary()["mean_delay_s"]
    greedy = run(sc, "opt-ts", seeds=[3], episodes=3).summary()["mean_delay_s"]
    assert tuned < 0.9 * greedy


def test_every_tuned_parameter_set_is_a_point_of_its_recorded_sweep():
    """tuned.toml names leaderboard scenarios, its parameters make a valid scheduler, and each chosen point is in the
    sweep file that tuned it, whose seeds are not the leaderboard's."""
    table = tomllib.loads(TUNED.read_text(encoding="utf-8"))
    assert table, "no tuned parameters"
    for name, scenarios in table.items():
        for scenario, params in scenarios.items():
            assert scenario in RULES, scenario
            make(name, params)  # the Config accepts them
            sweep = tomllib.loads((TUNED.parent / f"{name}-{scenario}.toml").read_text(encoding="utf-8"))
            assert sweep["scenarios"] == [scenario]
            assert not set(sweep["seeds"]) & set(RULES[scenario].seeds), "tuned on ranked seeds"
            points = [e["params"] for e in sweep["schedulers"] if isinstance(e, dict) and e["name"] == name]
            assert params in points, (scenario, params)
