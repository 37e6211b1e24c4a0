"""`bench leaderboard verify`: submissions believed because they were re-run (issue: forged submissions passed)."""

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.experiments.runs.bundles import write_bundle
from bench.experiments.runs.runner import run
from bench.scenarios import load_scenario
from leaderboard.verify import read_records, verify_bundle, write_record
from tests.forge import resign

runner = CliRunner()

RULE = """
import numpy as np
from schedulers import Scheduler


class Nearest(Scheduler):
    name = "nearest-queue"

    def decide(self, batch):
        placed = batch.assigned_s.copy()
        out = np.empty(len(batch), dtype=np.int64)
        for i in range(len(batch)):
            a = int(np.argmin(np.where(batch.mask[i], batch.backlog_s + placed, np.inf)))
            out[i] = a
            placed[a] += batch.compute_s[i, a]
        return out
"""


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    tiny = load_scenario("tiny")
    write_bundle(run(tiny, "p2c", seeds=[0, 1], episodes=3), root / "p2c")
    write_bundle(run(tiny, "sac-ts", params=["min_buffer=40"], seeds=[0, 1], episodes=3, train_episodes=20), root / "sac", checkpoint=False)
    (root / "plugin").mkdir()
    (root / "plugin" / "nearest.py").write_text(RULE)
    write_bundle(run(tiny, f"{root}/plugin/nearest.py:Nearest", seeds=[0], episodes=2), root / "plugin-run")
    return root


def _copy(bundles, name, tmp_path):
    shutil.copytree(bundles / name, tmp_path / name)
    return tmp_path / name


def test_honest_bundles_verify_and_records_tie_to_the_digest(bundles, tmp_path):
    for name in ("p2c", "sac"):
        v = verify_bundle(bundles / name)
        assert v.ok, v.reasons
        assert v.decision_us_per_task > 0 and v.measured_in == "process"
    assert verify_bundle(bundles / "sac").rerun_mean_delay_s == verify_bundle(bundles / "sac").claimed_mean_delay_s  # same machine: exact
    path = write_record(verify_bundle(bundles / "p2c"), tmp_path / "records")
    digest = json.loads((bundles / "p2c" / "manifest.json").read_text())["digest"]
    assert read_records(tmp_path / "records")[digest]["ok"] is True and path.name.startswith(digest[:16])


def test_the_site_says_which_decision_times_verify_re_measured(tmp_path):
    from leaderboard.site import build_site

    results, tiny = tmp_path / "results", load_scenario("tiny")
    for name in ("p2c", "random"):  # the leaderboard's minimum protocol on tiny
        write_bundle(run(tiny, name, seeds=[0, 1, 2], episodes=10), results / "tiny" / name)
    write_record(verify_bundle(results / "tiny" / "p2c"), tmp_path / "records")
    report = build_site([results], tmp_path / "site", records=read_records(tmp_path / "records"))
    pages = {e.result.scheduler: (tmp_path / "site" / f"entry-{e.id}.html").read_text() for e in report.entries}
    assert "decision (µs/task, re-measured by verify)" in pages["p2c"]
    assert "decision (µs/task, reported)" in pages["random"]
    # records from two directories (the committed ones and one's own), no copying folders together
    write_record(verify_bundle(results / "tiny" / "random"), tmp_path / "mine")
    r = runner.invoke(app, ["leaderboard", "build", "--results", str(results), "--out", str(tmp_path / "site2"),
                            "--verified", str(tmp_path / "records"), "--verified", str(tmp_path / "mine")])
    assert r.exit_code == 0 and "2 entries (2 verified" in r.stdout, r.output


def test_another_schedulers_actions_are_rejected(bundles, tmp_path):
    """A manifest claiming opt-ts over p2c's actions: its files agree, replay passes, verify does not."""
    forged = _copy(bundles, "p2c", tmp_path)

    def claim_opt_ts(m):
        m["scheduler"].update(name="opt-ts", ref="opt-ts", **{"class": "schedulers.opt_ts:OptTS"})

    resign(forged, claim_opt_ts)
    v = verify_bundle(forged)
    assert not v.ok and v.reasons[0].startswith("actions: seed 0 episode 0") and "does not produce" in v.reasons[0]


def test_an_edited_training_budget_is_rejected(bundles, tmp_path):
    forged = _copy(bundles, "sac", tmp_path)

    def fewer_episodes(m):
        m["protocol"]["train_episodes"] = 2

    resign(forged, fewer_episodes)
    v = verify_bundle(forged)
    assert not v.ok and v.reasons[0].startswith("training: retrained within the claimed budget (2 episodes)")


def test_duplicated_rows_are_rejected_before_anything_runs(bundles, tmp_path):
    forged = _copy(bundles, "p2c", tmp_path)
    episodes = pl.read_parquet(forged / "episodes.parquet")
    pl.concat([episodes, episodes.head(2)]).write_parquet(forged / "episodes.parquet")
    resign(forged)
    v = verify_bundle(forged)
    assert not v.ok and "more than once" in v.reasons[0] and v.reasons[0].startswith("schema:")


@pytest.mark.slow
def test_a_plugin_is_verified_from_its_carried_source_in_the_sandbox(bundles, tmp_path):
    v = verify_bundle(bundles / "plugin-run", allow_unisolated=True)
    assert v.ok, v.reasons
    assert v.measured_in == "sandbox" and v.scheduler == "nearest-queue"
    stripped = _copy(bundles, "plugin-run", tmp_path)

    def drop_source(m):
        for name in [n for n in m["files"] if n.startswith("source/")]:
            del m["files"][name]

    resign(stripped, drop_source)
    v = verify_bundle(stripped, allow_unisolated=True)
    assert not v.ok and v.reasons[0].startswith("source: the bundle carries no code")


def test_verify_from_the_command_line(bundles, tmp_path):
    forged = _copy(bundles, "p2c", tmp_path)
    resign(forged, lambda m: m["scheduler"].update(name="random", ref="random", **{"class": "schedulers.classical:RandomScheduler"}))
    r = runner.invoke(app, ["leaderboard", "verify", str(bundles / "p2c"), str(forged), "--record", str(tmp_path / "rec")])
    assert r.exit_code == 1
    assert "VERIFIED p2c" in r.stdout and "FAILED   random" in r.stdout and "does not produce" in r.stdout
    assert len(list(Path(tmp_path / "rec").glob("*.json"))) == 2


def test_verify_records_from_several_directories_merge_and_a_failure_wins():
    from leaderboard.verify import merge_records

    ok, bad = {"digest": "d1", "ok": True}, {"digest": "d1", "ok": False}
    assert merge_records([{"d1": ok}, {"d1": bad}]) == {"d1": bad}
    assert merge_records([{"d1": bad}, {"d1": ok}]) == {"d1": bad}
    assert merge_records([{"d1": ok}, {"d2": {"digest": "d2", "ok": True}}]).keys() == {"d1", "d2"}


def test_build_takes_verify_records_from_several_directories(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    r = CliRunner().invoke(app, ["leaderboard", "build", "--out", str(tmp_path / "site"), "--verified", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "--verified = " in r.stderr and "nowhere" in r.stderr and not (tmp_path / "site").exists()
