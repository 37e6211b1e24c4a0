"""The runner, result bundles, replay, pairing and reproducibility."""

import json
import shutil
import sys

import numpy as np
import polars as pl
import pytest

from bench.core.errors import BundleError
from bench.experiments.runs.bundles import read_bundle, sha256_file, write_bundle
from bench.experiments.runs.replay import replay
from bench.experiments.runs.runner import run
from bench.scenarios import load_scenario
from tests.forge import resign

LEARNER = "tests.toy_learner:BanditLearner"


def test_two_schedulers_see_identical_evaluation_tasks(tiny, tmp_path):
    a = run(tiny, "random", seeds=[5], episodes=3, keep_traces=True)
    b = run(tiny, "opt-ts", seeds=[5], episodes=3, keep_traces=True)
    write_bundle(a, tmp_path / "a", task_records=True)
    write_bundle(b, tmp_path / "b", task_records=True)
    ta = pl.read_parquet(tmp_path / "a" / "tasks.parquet")
    tb = pl.read_parquet(tmp_path / "b" / "tasks.parquet")
    task_cols = ["seed", "episode", "slot", "origin", "index", "size_mbit", "work_gcycles", "steps", "result_mbit"]
    assert ta.select(task_cols).equals(tb.select(task_cols))
    assert not ta["action"].equals(tb["action"])
    # per-task records agree with the per-episode metrics
    ep = pl.read_parquet(tmp_path / "a" / "episodes.parquet")
    means = ta.group_by("seed", "episode", maintain_order=True).agg(pl.col("delay_s").mean())
    np.testing.assert_allclose(means["delay_s"].to_numpy(), ep["mean_delay_s"].to_numpy(), rtol=1e-12)


def test_a_run_is_a_pure_function_of_its_inputs(tiny):
    first = run(tiny, "p2c", seeds=[0, 1], episodes=4).summary()
    second = run(tiny, "p2c", seeds=[0, 1], episodes=4).summary()
    first.pop("timing"), second.pop("timing")
    assert json.dumps(first) == json.dumps(second)
    third = run(tiny, "p2c", seeds=[0, 2], episodes=4).summary()
    assert third["mean_delay_s"] != first["mean_delay_s"]


def test_summary_fields_and_ci(tiny):
    s = run(tiny, "least-loaded", seeds=[0, 1], episodes=5).summary()
    for key in ("scheduler", "scenario", "seeds", "episodes", "mean_delay_s", "ci95_delay_s", "p95_delay_s", "timing"):
        assert key in s
    assert s["seeds"] == [0, 1] and s["episodes"] == 5 and s["ci95_over"] == "episodes"
    lo, hi = s["ci95_delay_s"]
    assert lo < s["mean_delay_s"] < hi
    parts = s["mean_upload_s"] + s["mean_wait_s"] + s["mean_compute_s"] + s["mean_download_s"]
    assert parts == pytest.approx(s["mean_delay_s"], rel=1e-12)
    assert s["timing"]["decision_us_per_task"] > 0
    assert len(s["per_seed"]) == 2


def test_bundle_round_trip_and_replay(tiny, tmp_path):
    result = run(tiny, "opt-ts", seeds=[0, 3], episodes=4)
    out = write_bundle(result, tmp_path / "bundle")
    bundle = read_bundle(out)
    m = bundle.manifest
    assert m["scenario"]["hash"] == tiny.hash and m["seeds"] == [0, 3]
    assert m["protocol"] == {"eval_episodes": 4, "train_episodes": 0}
    assert set(m["files"]) == {"summary.json", "episodes.parquet", "actions.parquet"}
    assert m["provenance"]["packages"]["numpy"] == np.__version__
    assert bundle.episodes.height == 8
    assert bundle.actions.height == sum(r["tasks"] for r in result.rows)
    assert bundle.actions["action"].dtype == pl.UInt8
    report = replay(out)
    assert report.ok, report.mismatches
    assert report.episodes == 8
    assert not list(tmp_path.glob(".bundle.tmp-*"))


def test_existing_output_is_refused_then_replaced_atomically(tiny, tmp_path):
    result = run(tiny, "random", episodes=2)
    out = tmp_path / "b"
    write_bundle(result, out)
    with pytest.raises(BundleError, match="--overwrite"):
        write_bundle(result, out)
    before = sha256_file(out / "manifest.json")
    other = run(tiny, "local", episodes=2)
    write_bundle(other, out, overwrite=True)
    assert sha256_file(out / "manifest.json") != before
    assert read_bundle(out).manifest["scheduler"]["name"] == "local"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    (tmp_path / "empty").mkdir()
    write_bundle(result, tmp_path / "empty")  # an empty directory is fine


def test_failed_write_leaves_old_bundle_intact(tiny, tmp_path, monkeypatch):
    result = run(tiny, "random", episodes=2)
    out = write_bundle(result, tmp_path / "b")
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    import bench.experiments.runs.bundles as results

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results, "_actions_frame", boom)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(result, out, overwrite=True)
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]




def test_tampered_bundles_are_caught(tiny, tmp_path):
    good = write_bundle(run(tiny, "opt-ts", seeds=[0], episodes=3), tmp_path / "good")

    edited = tmp_path / "edited"
    shutil.copytree(good, edited)
    ep = pl.read_parquet(edited / "episodes.parquet")
    ep.with_columns(pl.col("mean_delay_s") * 0.9).write_parquet(edited / "episodes.parquet")
    with pytest.raises(BundleError, match="episodes.parquet does not match its SHA-256"):
        read_bundle(edited)
    resign(edited)  # a forger who also fixes the hashes is caught by the replay
    report = replay(edited)
    assert not report.ok and any("mean_delay_s" in m for m in report.mismatches)

    swapped = tmp_path / "swapped"
    shutil.copytree(good, swapped)
    acts = pl.read_parquet(swapped / "actions.parquet")
    acts.with_columns(((pl.col("action") + 1) % 4).cast(pl.UInt8)).write_parquet(swapped / "actions.parquet")
    resign(swapped)
    assert not replay(swapped).ok

    summary = tmp_path / "summary"
    shutil.copytree(good, summary)
    s = json.loads((summary / "summary.json").read_text())
    s["mean_delay_s"] = 1.0
    (summary / "summary.json").write_text(json.dumps(s))
    resign(summary)
    report = replay(summary)
    assert not report.ok and "summary.json: mean_delay_s" in report.mismatches[0]

    missing = tmp_path / "missing"
    shutil.copytree(good, missing)
    (missing / "actions.parquet").unlink()
    with pytest.raises(BundleError, match="actions.parquet is missing"):
        read_bundle(missing)


def test_learning_scheduler_trains_on_the_training_stream_then_evaluates(tiny, tmp_path):
    result = run(tiny, LEARNER, seeds=[0], episodes=3, train_episodes=6)
    assert result.learns and result.train_episodes == 6
    seed = result.per_seed[0]
    assert [r["episode"] for r in seed.training] == list(range(6))
    assert seed.state is not None and seed.state["count"].sum() > 0
    out = write_bundle(result, tmp_path / "b")
    curve = pl.read_parquet(out / "training.parquet")
    assert curve.height == 6 and set(curve.columns) >= {"seed", "episode", "mean_delay_s", "wall_s"}
    assert replay(out).ok
    s = result.summary()
    assert s["train_episodes"] == 6 and s["ci95_over"].startswith("episodes of one training seed")
    two = run(tiny, LEARNER, seeds=[0, 1], episodes=2, train_episodes=3).summary()
    assert two["ci95_over"] == "seeds"
    per_seed = [p["mean_delay_s"] for p in two["per_seed"]]
    lo, hi = two["ci95_delay_s"]
    assert lo < np.mean(per_seed) < hi


def test_learning_hooks_order_and_stream_separation(tiny):
    from bench.engine.system import System
    from bench.experiments.runs.runner import run_episode
    from schedulers import make

    system = System.build(tiny, 0)
    env = system.env()
    sched = make(LEARNER)
    sched.reset(system.info(), system.streams.scheduler())
    run_episode(env, sched, system.workload(0, training=True), episode=0, training=True, who="t")
    learned = sched.count.sum()
    run_episode(env, sched, system.workload(0), episode=0, training=False, who="t")
    assert sched.events == [("begin", 0, True), ("begin", 0, False)]
    assert sched.count.sum() == learned  # no learning during evaluation
    assert sched.observed_tasks == system.workload(0, training=True).n_tasks + system.workload(0).n_tasks


def test_feedback_is_built_only_for_a_scheduler_that_reads_it(tiny, monkeypatch):
    """A slot's feedback costs the engine arrays per slot: built for a scheduler whose observe does something (in
    process: its class overrides it; through the channel: its child's class does), never for one that ignores it."""
    from bench.engine.system import System
    from bench.experiments.runs.runner import run_episode
    from bench.experiments.sandbox.channel import RemoteScheduler
    from schedulers import make

    system = System.build(tiny, 0)
    env = system.env()
    built = []
    original = type(env).last_feedback
    monkeypatch.setattr(type(env), "last_feedback", lambda self: built.append(1) or original(self))
    rule, learner = make("opt-ts"), make(LEARNER)
    assert not rule.reads_feedback() and learner.reads_feedback()
    for sched in (rule, learner):
        sched.reset(system.info(), system.streams.scheduler())
        built.clear()
        run_episode(env, sched, system.workload(0, training=True), episode=0, training=True, who="t")
        assert bool(built) == sched.reads_feedback()
    facts = {"scheduler": "x", "batch_unit": "slot", "event_batches": "window", "learns": False, "hooks": []}
    assert not RemoteScheduler(-1, -1, "x", {**facts, "observes": False}).reads_feedback()
    assert RemoteScheduler(-1, -1, "x", {**facts, "observes": True}).reads_feedback()


def test_heuristics_ignore_training_episodes(tiny):
    result = run(tiny, "random", episodes=2, train_episodes=50)
    assert result.train_episodes == 0 and result.per_seed[0].training == []


def test_converged_episode_rule():
    from bench.experiments.runs.summary import converged_episode

    assert converged_episode([10.0] * 5) is None  # shorter than the window
    assert converged_episode([10.0] * 30) == 10  # flat from the start: the first full window
    curve = list(np.linspace(20, 10, 100)) + [10.0] * 100
    # the 10-episode average first comes within 5% (<= 10.5) of the final level 10 at episode 100
    e = converged_episode(curve)
    window = np.convolve(curve, np.ones(10) / 10, mode="valid")
    assert window[e - 10] <= 10.5 < window[e - 11]


def test_git_revision_dirty_ignores_only_the_results_the_suite_writes(tmp_path):
    """Regenerating leaderboard/results in a clean checkout must not mark the new bundles as made by modified code."""
    import subprocess

    from bench.core import provenance

    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "leaderboard" / "results").mkdir(parents=True)
    shutil.copy(provenance.__file__, repo / "bench" / "provenance.py")
    (repo / "bench" / "__init__.py").write_text("")
    (repo / "bench" / "engine.py").write_text("x = 1\n")
    (repo / "leaderboard" / "results" / "r.json").write_text("{}")

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    code = f"import sys; sys.path.insert(0, {str(repo)!r}); import bench, bench.provenance as p; print(p.git_revision()['dirty'])"

    def dirty():
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()

    assert dirty() == "False"
    (repo / "leaderboard" / "results" / "r.json").write_text('{"new": 1}')
    assert dirty() == "False"  # results rewritten: still the same code
    (repo / "bench" / "engine.py").write_text("x = 2\n")
    assert dirty() == "True"  # code changed


@pytest.mark.parametrize("field, kwargs", [
    ("seeds", {"seeds": [0, 0]}),
    ("seeds", {"seeds": [-1]}),
    ("episodes", {"episodes": 0}),
    ("train_episodes", {"train_episodes": -1}),
])
def test_one_run_path_checks_a_request_the_same_way_wherever_it_runs(tiny, field, kwargs, monkeypatch):
    """In this process and in the sandbox, a bad request is refused by the same check, with one line naming the
    field, before anything runs (the two used to check differently: train_episodes < 0 passed one of them)."""
    from bench.core.errors import ConfigError
    from bench.experiments.runs.runner import InProcess
    from bench.experiments.sandbox import run as sandbox

    def no_work(*args, **kwargs):
        raise AssertionError("the run started before its request was checked")

    monkeypatch.setattr(InProcess, "execute", no_work)
    monkeypatch.setattr(sandbox.Sandboxed, "execute", no_work)
    for attempt in (lambda: run(tiny, "sac-ts", **kwargs), lambda: sandbox.run_sandboxed(tiny, "sac-ts", **kwargs),
                    lambda: sandbox.run_sandboxed(tiny, "plugin_module:Anything", **kwargs)):
        with pytest.raises(ConfigError) as caught:
            attempt()
        assert caught.value.field == field and "\n" not in str(caught.value)


def test_the_cli_the_library_and_a_sweep_save_the_same_bundle(tiny, tmp_path):
    """`bench run`, run(save=...) and a sweep's cell all go through the one run path: the same metrics, actions and
    summary outside timing."""
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.experiments.campaigns.sweep import LocalExecutor, SweepSpec, run_sweep
    from bench.experiments.runs.runner import Save

    r = CliRunner().invoke(app, ["run", "-s", "p2c", "--scenario", "tiny", "--seed", "1", "-n", "2", "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    run(tiny, "p2c", seeds=[1], episodes=2, save=Save(tmp_path / "lib"))
    run_sweep(SweepSpec(scenarios=["tiny"], schedulers=[("p2c", ())], seeds=[1], episodes=2), tmp_path / "sweep", LocalExecutor(jobs=1))
    bundles = [read_bundle(p) for p in (tmp_path / "cli", tmp_path / "lib", next((tmp_path / "sweep").rglob("seed-1")))]
    summaries = [{k: v for k, v in b.summary.items() if k != "timing"} for b in bundles]
    assert summaries[0] == summaries[1] == summaries[2]
    frames = [b.episodes.drop("decision_us_per_task") for b in bundles]
    assert frames[0].equals(frames[1]) and frames[0].equals(frames[2])
    assert bundles[0].manifest["command"][:2] == ["bench", "run"] and bundles[1].manifest["command"][:2] == ["bench", "run"]


def test_task_records_add_up_with_the_model_load(tmp_path):
    """Audit defect: on residency scenarios tasks.parquet had no load column and end_s left the load out (off by up
    to 54.7 s), so its parts did not add up to delay_s."""
    result = run(load_scenario("edge-gpu"), "opt-ts", seeds=[0], episodes=1, keep_traces=True)
    write_bundle(result, tmp_path / "b", task_records=True)
    t = pl.read_parquet(tmp_path / "b" / "tasks.parquet")
    assert (t["load_s"] > 0).sum() > 0
    parts = t["upload_s"] + t["wait_s"] + t["load_s"] + t["compute_s"] + t["download_s"]
    assert np.allclose(parts, t["delay_s"], rtol=0, atol=1e-9)
    assert np.allclose(t["end_s"] - t["start_s"], t["load_s"] + t["compute_s"], rtol=0, atol=1e-9)
