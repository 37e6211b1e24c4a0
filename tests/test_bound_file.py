"""Bounds files (bench/experiments/bounds/files.py): written atomically, read as untrusted input, used only where they fit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bench.core.errors import BenchError
from bench.experiments.bounds.files import find_bounds, read_bounds_file, write_bounds_file


def _bounds(n=3):
    return [SimpleNamespace(seed=0, episode=e, tasks=10 + e, lower_bound_s=2.0 + e, no_wait_floor_s=1.0, optimum_s=None if e else 2.5) for e in range(n)]


def test_round_trip_and_mean_over(tmp_path):
    path = write_bounds_file(tmp_path / "tiny" / "bounds.json", "tiny", "abc", "slotted", reversed(_bounds()))
    b = read_bounds_file(path)
    assert (b.scenario, b.scenario_hash, b.time_model) == ("tiny", "abc", "slotted")
    assert b.mean_over([(0, 0, 10), (0, 2, 12)]) == pytest.approx(3.0)
    assert b.mean_over([(0, 0, 11)]) is None  # another workload: task counts differ
    assert b.mean_over([(0, 0, 10), (1, 0, 10)]) is None  # an episode the file does not cover
    assert b.optimum == {(0, 0): 2.5}
    again = write_bounds_file(path, "tiny", "abc", "slotted", _bounds(2))  # an existing file is replaced (it was refused as "a file")
    assert len(read_bounds_file(again).lower) == 2
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(BenchError, match="not a directory"):
        write_bounds_file(tmp_path, "tiny", "abc", "slotted", _bounds())


def test_the_best_known_assignment_rides_along_where_there_is_one(tmp_path):
    records = [SimpleNamespace(**vars(r), best_known_s=r.lower_bound_s * 1.2 if r.episode else 2.5) for r in _bounds()]
    b = read_bounds_file(write_bounds_file(tmp_path / "bounds.json", "tiny", "abc", "slotted", records))
    assert b.best_known == {(0, 0): 2.5, (0, 1): pytest.approx(3.6), (0, 2): pytest.approx(4.8)}
    assert b.mean_over([(0, 1, 11), (0, 2, 12)], "best_known") == pytest.approx(4.2)
    assert b.mean_over([(0, 1, 11), (0, 2, 12)]) == pytest.approx(3.5)  # the lower bound, as before
    plain = read_bounds_file(write_bounds_file(tmp_path / "plain.json", "tiny", "abc", "slotted", _bounds()))
    assert plain.best_known == {} and plain.mean_over([(0, 1, 11)], "best_known") is None
    assert "best_known_s" not in json.loads((tmp_path / "plain.json").read_text())["episodes"][0]


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(kind="results"), "kind/version"),
    (lambda d: d.update(extra=1), "fields"),
    (lambda d: d.update(time_model="quantum"), "time_model"),
    (lambda d: d.update(episodes=[]), "episodes"),
    (lambda d: d["episodes"][0].update(seed=-1), r"episodes\[0\].seed"),
    (lambda d: d["episodes"][0].update(tasks=True), r"episodes\[0\].tasks"),
    (lambda d: d["episodes"][1].update(lower_bound_s=float("inf")), r"episodes\[1\].lower_bound_s"),
    (lambda d: d["episodes"][1].update(lower_bound_s=0.5), r"episodes\[1\].lower_bound_s"),  # below its own floor
    (lambda d: d["episodes"][1].update(lower_bound_s=10**400), r"episodes\[1\].lower_bound_s"),  # beyond a float: was OverflowError
    (lambda d: d["episodes"][0].update(optimum_s=1.0), r"episodes\[0\].optimum_s"),  # an optimum below the bound
    (lambda d: d["episodes"].append(dict(d["episodes"][0])), r"episodes\[3\]"),  # a duplicate episode
    (lambda d: d["episodes"][1].update(best_known_s=2.5), r"episodes\[1\].best_known_s"),  # an assignment below the lower bound
    (lambda d: d["episodes"][0].update(best_known_s=2.4), r"episodes\[0\].best_known_s"),  # below the proven optimum
    (lambda d: d["episodes"][1].update(best_known_s=float("nan")), r"episodes\[1\].best_known_s"),
    (lambda d: d["episodes"][1].update(best_known_s="4"), r"episodes\[1\].best_known_s"),
    (lambda d: d["episodes"][1].update(best_known=4.0), r"episodes\[1\]"),  # an unknown field
])
def test_hostile_files_are_refused_naming_the_field(tmp_path, change, field):
    path = write_bounds_file(tmp_path / "bounds.json", "tiny", "abc", "slotted", _bounds())
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=field):
        read_bounds_file(path)


def test_find_bounds_lists_what_does_not_check_out(tmp_path):
    write_bounds_file(tmp_path / "tiny" / "bounds.json", "tiny", "abc", "slotted", _bounds())
    write_bounds_file(tmp_path / "tiny" / "an-entry" / "bounds.json", "tiny", "abc", "slotted", _bounds())  # inside an entry: not read
    write_bounds_file(tmp_path / "paper" / "bounds.json", "tiny", "abc", "slotted", _bounds())  # another scenario's folder
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bounds.json").write_text("{not json")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "bounds.json").write_bytes(b"0" * 4_000_001)
    found, problems = find_bounds([tmp_path])
    assert list(found) == ["tiny"] and len(found["tiny"]) == 1 and len(problems) == 3
    assert any("expected the folder's scenario, 'paper'" in p for p in problems)
    assert any("UTF-8 JSON" in p for p in problems) and any("size" in p for p in problems)
