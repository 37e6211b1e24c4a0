"""Scenario files: presets, validation errors, overrides, hashes, the paper's fixed parameters."""

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.scenarios import load_scenario, preset_names
from bench.engine.system import System

PAPER_CAPACITY = [50, 25, 18, 32, 28, 21, 50, 17, 44, 41, 21, 31, 41, 36, 30, 47, 49, 13, 48, 14]
PAPER_RATE = [499, 478, 461, 416, 473, 408, 500, 462, 427, 430, 480, 407, 476, 415, 453, 480, 427, 444, 477, 475]


def test_presets_load_and_are_distinct():
    names = preset_names()
    assert {"paper", "paper-iid", "tiny"} <= set(names)
    hashes = {load_scenario(n).hash for n in names}
    assert len(hashes) == len(names)


def test_paper_preset_is_the_papers_system(paper):
    assert paper.servers.count == 20
    assert list(paper.servers.capacity_gcps) == PAPER_CAPACITY
    assert sum(paper.servers.capacity_gcps) == 656
    assert list(paper.servers.rate_mbps) == PAPER_RATE
    # the explicit lists are the reference code's legacy-seeded draws
    assert PAPER_CAPACITY == np.random.RandomState(2).randint(10, 51, 20).tolist()
    assert PAPER_RATE == np.random.RandomState(5).randint(400, 501, 20).tolist()
    assert paper.episode.slots == 59 and paper.episode.slot_s == 1.0
    assert paper.tasks.arrivals_per_bs == (1, 50)
    assert paper.tasks.attributes == "per-index"
    assert paper.protocol.train_episodes == 500


def test_paper_per_index_table_pins_reference_values(paper_system):
    table = paper_system.table
    assert table.density.shape == (50,)
    np.testing.assert_allclose(table.density[:4], [0.18780611, 0.24992246, 0.10242342, 0.16431771], rtol=1e-7)
    assert table.steps[:6].tolist() == [6, 12, 13, 9, 10, 12]
    np.testing.assert_allclose(table.result_mbit[:4], [0.7668088, 0.8881298, 0.60004575, 0.72093303], rtol=1e-7)
    # the quirk: the same per-index values for every seed
    other = System.build(paper_system.scenario, 7).table
    assert np.array_equal(other.density, table.density) and np.array_equal(other.steps, table.steps)


def test_paper_load_is_about_1_24_times_capacity(paper_system):
    # expected Gcycles per slot: 20 base stations x sum_n P(K > n) * w_n, with K uniform on 1..50
    t = paper_system.table
    p = (50 - np.arange(50)) / 50
    load = 20 * float((p * t.density * t.steps).sum())
    assert 1.2 < load / 656 < 1.25


def test_hash_is_stable_and_ignores_names_and_protocol(paper, tmp_path):
    assert paper.hash == "ec8d458e5c685d88fcb804ce3ee09f25f12ef3224c0e248c43fce81fd0c3f5bf"
    renamed = load_scenario("paper", ["name=mine", "description=x", "protocol.eval_episodes=3"])
    assert renamed.hash == paper.hash
    assert load_scenario("paper", ["servers.capacity_gcps=[" + ",".join(["30"] * 20) + "]"]).hash != paper.hash


def test_user_file_and_overrides(tmp_path):
    text = (load_scenario.__globals__["resources"].files("bench.scenarios") / "presets" / "tiny.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(text.replace('name = "tiny"', 'name = "mine"'))
    sc = load_scenario(str(path), ["episode.slots=3", "tasks.arrivals_per_bs=[0, 2]"])
    assert sc.name == "mine" and sc.episode.slots == 3 and sc.tasks.arrivals_per_bs == (0, 2)
    assert sc.hash != load_scenario("tiny").hash


def test_drawn_servers_come_from_the_environment_stream():
    from bench.scenarios import scenario_from_dict

    # a drawn range replaces the explicit list, so edit the table rather than override a key

    data = load_scenario("tiny").to_dict()
    del data["servers"]["capacity_gcps"], data["servers"]["rate_mbps"]
    data["servers"]["capacity_gcps_range"] = [10, 50]
    data["servers"]["rate_mbps_range"] = [400, 500]
    sc = scenario_from_dict(data)
    a, b, c = System.build(sc, 1), System.build(sc, 1), System.build(sc, 2)
    assert np.array_equal(a.costs.capacity_gcps, b.costs.capacity_gcps)
    assert not np.array_equal(a.costs.capacity_gcps, c.costs.capacity_gcps)
    assert a.costs.capacity_gcps.min() >= 10 and a.costs.capacity_gcps.max() <= 50


@pytest.mark.parametrize(
    "overrides, field, fragment",
    [
        (["servers.bogus=1"], "servers.bogus", "unknown key"),
        (["servers.count=two"], "servers.count", "an integer"),
        (["servers.count=4.5"], "servers.count", "an integer"),
        (["servers.capacity_gcps=[10, -6, 4, 8]"], "servers.capacity_gcps[1]", "> 0"),
        (["servers.count=5"], "servers.capacity_gcps", "5 values"),
        (["tasks.size_mbit=[5.0, 2.0]"], "tasks.size_mbit", "low < high"),
        (["tasks.size_mbit=[3.0, 3.0]"], "tasks.size_mbit", "empty"),
        (["tasks.steps=[4, 2]"], "tasks.steps", "low <= high"),
        (["tasks.arrivals_per_bs=[0, 0]"], "tasks.arrivals_per_bs", "high is >= 1"),
        (["tasks.attributes=quirky"], "tasks.attributes", "'per-task', 'per-index'"),
        (["episode.slot_s=0"], "episode.slot_s", "> 0"),
        (["protocol.eval_episodes=0"], "protocol.eval_episodes", ">= 1"),
        (["episode.slots=true"], "episode.slots", "an integer"),
        (["tasks.per_index_legacy_seeds={density=1, steps=1, result=1}"], "tasks.per_index_legacy_seeds", "per-index"),
        (["servers=3"], "servers", "a table"),
    ],
)
def test_invalid_values_name_field_value_and_allowed(overrides, field, fragment):
    with pytest.raises(ConfigError) as info:
        load_scenario("tiny", overrides)
    message = str(info.value)
    assert info.value.field == field, message
    assert fragment in message, message
    assert "\n" not in message


def test_missing_required_field(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "x"\n[servers]\ncount = 1\ncapacity_gcps = [1]\nrate_mbps = [1]\n')
    with pytest.raises(ConfigError, match=r"episode = <missing>"):
        load_scenario(str(path))


def test_missing_file_and_unknown_preset_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="an existing .toml file"):
        load_scenario(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"--scenario = 'nope' .*a preset \(azure-code, .*edge-cpu, .*paper, .*tiny, tiny-poisson\)"):
        load_scenario("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_scenario(str(bad))


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_scenario("tiny", ["servers.count"])
    with pytest.raises(ConfigError, match="a table"):
        load_scenario("tiny", ["name.x=1"])


def test_overrides_reach_elements_of_a_list_of_tables():
    sc = load_scenario("edge-cpu", ["tasks.mix[0].weight=7", "tasks.mix[1].deadline_s=9.5"])
    assert sc.tasks.mix[0].weight == 7 and sc.tasks.mix[1].deadline_s == 9.5
    assert sc.tasks.mix[2] == load_scenario("edge-cpu").tasks.mix[2]
    with pytest.raises(ConfigError, match=r"tasks.mix\[9\] = 9 .*0\.\.4"):
        load_scenario("edge-cpu", ["tasks.mix[9].weight=1"])
    with pytest.raises(ConfigError, match=r"name\[i\] with i >= 0"):
        load_scenario("edge-cpu", ["tasks.mix[x].weight=1"])
    with pytest.raises(ConfigError, match=r"tasks.mix\[0\].weight = 0 is not allowed; expected a number > 0"):
        load_scenario("edge-cpu", ["tasks.mix[0].weight=0"])
