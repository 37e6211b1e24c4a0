"""Sweeps: grid expansion, resumption after SIGKILL, torn writes, failures, reports, local vs Ray."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import ConfigError
from bench.experiments.campaigns.sweep import LocalExecutor, SweepSpec, collect, is_complete, load_spec, run_sweep

runner = CliRunner()
SPEC = SweepSpec(scenarios=["tiny"], schedulers=[("opt-ts", ()), ("p2c", ())], seeds=[0, 1], grid={"servers.capacity_scale": [0.8, 1.2]}, episodes=3)


def _metrics(out: Path, spec: SweepSpec) -> dict:
    """Every cell's per-episode metrics (timing excluded), keyed by cell path."""
    result = {}
    for cell in spec.cells():
        df = pl.read_parquet(out / cell.relpath() / "episodes.parquet").drop("decision_us_per_task")
        result[str(cell.relpath())] = df.to_dicts()
    return result


def test_grid_expands_into_cells_and_reports(tmp_path):
    cells = SPEC.cells()
    assert len(cells) == 1 * 2 * 2 * 2
    assert {c.overrides for c in cells} == {("servers.capacity_scale=0.8",), ("servers.capacity_scale=1.2",)}
    status = run_sweep(SPEC, tmp_path, LocalExecutor(1))
    assert status["done"] == 8 and status["failed"] == 0
    assert all(is_complete(tmp_path / c.relpath()) for c in cells)
    manifest = json.loads((tmp_path / cells[0].relpath() / "manifest.json").read_text())
    assert manifest["sweep"]["overrides"] == list(cells[0].overrides) and manifest["scenario"]["config"]["servers"]["capacity_scale"] in (0.8, 1.2)
    table = collect(SPEC, tmp_path)
    assert table.height == 4 and set(table["cells"]) == {2}
    # more capacity, less delay, for both schedulers
    for name in ("opt-ts", "p2c"):
        rows = table.filter(pl.col("scheduler") == name).sort("servers.capacity_scale")
        assert rows["mean_delay_s"][0] > rows["mean_delay_s"][1]
    again = run_sweep(SPEC, tmp_path, LocalExecutor(1))
    assert again["skipped"] == 8 and again["done"] == 8


def test_cli_sweep_with_flags_writes_summary_and_plot(tmp_path):
    r = runner.invoke(app, ["sweep", "--out", str(tmp_path), "--scenario", "tiny", "-s", "local", "-s", "least-loaded", "--vary", "tasks.arrivals_per_bs=[[1, 4], [1, 8]]", "--seeds", "2", "-n", "2", "-j", "1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "delay_vs_parameter.html").is_file()
    html = (tmp_path / "delay_vs_parameter.html").read_text()
    assert len(html) > 1_000_000 and "<script src=\"http" not in html  # plotly.js embedded: works offline
    summary = pl.read_csv(tmp_path / "summary.csv")
    assert summary.height == 4 and summary["failed"].sum() == 0


def test_spec_file_and_its_errors(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('scenarios = ["tiny"]\nseeds = [3, 5]\nepisodes = 2\nschedulers = ["opt-ts", { name = "lad-ts", params = { hidden = 8 } }]\n[grid]\n"episode.slots" = [4, 6]\n')
    spec = load_spec(f)
    assert spec.seeds == [3, 5] and spec.schedulers[1] == ("lad-ts", ("hidden=8",)) and len(spec.cells()) == 8
    spec.validate()
    for text, field in [
        ('schedulers = ["opt-ts"]\ncolour = 1\n', "colour"),
        ('schedulers = []\n', "schedulers"),
        ('schedulers = ["opt-ts"]\nseeds = -2\n', "seeds"),
        ('schedulers = [{ title = "x" }]\n', "schedulers[0]"),
        ('schedulers = ["opt-ts"]\n[grid]\n"servers.count" = []\n', "grid"),
    ]:
        f.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_spec(f)
        assert info.value.field == field
    bad = SweepSpec(scenarios=["tiny"], schedulers=[("opt-ts", ())], seeds=[0], grid={"servers.capacity_scale": [1.0, -1.0]})
    with pytest.raises(ConfigError, match="capacity_scale = -1.0"):
        bad.validate()


def test_failed_cells_are_kept_beside_the_results_and_retried(tmp_path):
    spec = SweepSpec(scenarios=["tiny"], schedulers=[("opt-ts", ()), ("tests.test_schedulers:Broken", ())], seeds=[0, 1], episodes=1)
    r = runner.invoke(app, ["sweep", "--out", str(tmp_path), "--scenario", "tiny", "-s", "opt-ts", "-s", "tests.test_schedulers:Broken", "--seeds", "2", "-n", "1", "-j", "1"])
    assert r.exit_code == 1
    assert "failed" in r.stderr and "returned server 99" in r.stderr
    broken = [c for c in spec.cells() if "Broken" in c.scheduler]
    for c in broken:
        error = (tmp_path / c.relpath()).parent / f"seed-{c.seed}.error.txt"
        assert "returned server 99" in error.read_text()
    status = run_sweep(spec, tmp_path, LocalExecutor(1))
    assert status["skipped"] == 2 and status["failed"] == 2


def test_torn_writes_and_corrupt_cells_are_redone(tmp_path):
    run_sweep(SPEC, tmp_path, LocalExecutor(1))
    reference = _metrics(tmp_path, SPEC)
    cells = SPEC.cells()
    # a write killed half way leaves a hidden temporary directory; a damaged bundle fails its hashes
    torn = (tmp_path / cells[0].relpath()).parent / ".seed-0.tmp-abc123"
    torn.mkdir()
    (torn / "episodes.parquet").write_bytes(b"partial")
    shutil.rmtree(tmp_path / cells[0].relpath())
    (tmp_path / cells[1].relpath() / "actions.parquet").write_bytes(b"garbage")
    status = run_sweep(SPEC, tmp_path, LocalExecutor(1))
    assert status["cleaned"] == 1 and status["skipped"] == 6 and status["done"] == 8
    assert not torn.exists()
    assert _metrics(tmp_path, SPEC) == reference


@pytest.mark.slow
def test_sigkill_half_way_then_resume_equals_uninterrupted(tmp_path):
    """Killed at a known point, whatever the machine's speed: the sweep runs its cells in order (-j 1) and the
    gate rule (tests.test_sweep:Gate) blocks while its gate file exists, so exactly the 8 cells before it are done."""
    args = ["sweep", "--scenario", "tiny", "-s", "opt-ts", "-s", "weighted-random", "-s", "round-robin", "-s", "tests.test_sweep:Gate",
            "--seeds", "4", "-n", "30", "-j", "1", "--no-progress"]
    spec = SweepSpec(scenarios=["tiny"], schedulers=[("opt-ts", ()), ("weighted-random", ()), ("round-robin", ()), ("tests.test_sweep:Gate", ())],
                     seeds=[0, 1, 2, 3], episodes=30)
    killed = tmp_path / "killed"
    gate = tmp_path / "gate"
    gate.write_text("closed")
    env = {**os.environ, "AIGC_TEST_GATE": str(gate), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    before_gate = [c for c in spec.cells() if c.scheduler in ("opt-ts", "round-robin")]  # the order: by name, then seed
    try:
        deadline = time.monotonic() + 600  # a guard against a hang only; the loop ends when the gate is reached
        while time.monotonic() < deadline and not (tmp_path / "gate.reached").exists():
            assert proc.poll() is None, "the sweep ended before it reached the gate"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    gate.unlink()
    finished = [c for c in spec.cells() if is_complete(killed / c.relpath())]
    assert finished == before_gate, [str(c.relpath()) for c in finished]
    stamps = {str(c.relpath()): (killed / c.relpath() / "manifest.json").stat().st_mtime_ns for c in finished}
    r = runner.invoke(app, [*args, "--out", str(killed)])
    assert r.exit_code == 0, r.output
    # finished cells were not redone; every cell is now complete
    assert {k: (killed / k / "manifest.json").stat().st_mtime_ns for k in stamps} == stamps
    assert all(is_complete(killed / c.relpath()) for c in spec.cells())
    clean = tmp_path / "clean"
    assert runner.invoke(app, [*args, "--out", str(clean)]).exit_code == 0
    assert _metrics(killed, spec) == _metrics(clean, spec)


@pytest.mark.slow
def test_ray_executor_matches_local(tmp_path):
    pytest.importorskip("ray")
    spec = SweepSpec(scenarios=["tiny"], schedulers=[("opt-ts", ()), ("sac-ts", ())], seeds=[0, 1], episodes=2, train_episodes=3)
    run_sweep(spec, tmp_path / "local", LocalExecutor(2))
    r = runner.invoke(app, ["sweep", "--out", str(tmp_path / "ray"), "--scenario", "tiny", "-s", "opt-ts", "-s", "sac-ts", "--seeds", "2", "-n", "2", "--train-episodes", "3", "--executor", "ray", "-j", "2"])
    assert r.exit_code == 0, r.output
    assert _metrics(tmp_path / "local", spec) == _metrics(tmp_path / "ray", spec)


from schedulers.interface import Scheduler  # noqa: E402


class Gate(Scheduler):
    """Every task to its own base station; while the file named by AIGC_TEST_GATE exists, it marks that it got there
    (GATE.reached) and waits: a sweep stopped at a point that does not depend on the machine's speed."""

    name = "gate"

    def decide(self, batch):
        gate = os.environ.get("AIGC_TEST_GATE")
        if gate and os.path.exists(gate):
            Path(gate + ".reached").touch()
            while os.path.exists(gate):
                time.sleep(0.05)
        return np.asarray(batch.origin, dtype=np.int64)


class Dies(Scheduler):
    """Kills its own worker process, as an out-of-memory kill would (SIGKILL): the cell can never finish."""

    name = "dies"

    def decide(self, batch):
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_dying_worker_fails_only_its_cell_and_resume_retries_it(tmp_path):
    """Review defect: one worker killed (as an OOM kill would) ended the whole sweep with BrokenProcessPool."""
    spec = SweepSpec(scenarios=["tiny"], schedulers=[("local", ()), ("tests.test_sweep:Dies", ()), ("opt-ts", ())], seeds=[0, 1], episodes=2)
    status = run_sweep(spec, tmp_path, LocalExecutor(2))
    assert status["failed"] == 2 and status["done"] == 4
    assert all("killed by SIGKILL" in e for e in status["errors"].values()), status["errors"]
    for cell in spec.cells():
        assert is_complete(tmp_path / cell.relpath()) == (cell.scheduler != "tests.test_sweep:Dies")
    error = (tmp_path / spec.cells()[2].relpath()).parent / "seed-0.error.txt"
    assert "SIGKILL" in error.read_text()
    again = run_sweep(spec, tmp_path, LocalExecutor(2))  # resume: the finished cells are kept, the dead ones retried
    assert again["skipped"] == 4 and again["failed"] == 2


def test_a_cell_folder_of_another_configuration_is_refused_not_mixed(tmp_path):
    """Review defect: a sweep reused any complete cell folder, whatever its episodes or scenario."""
    from bench.core.errors import BenchError

    small = SweepSpec(scenarios=["tiny"], schedulers=[("opt-ts", ())], seeds=[0], episodes=2)
    run_sweep(small, tmp_path, LocalExecutor(1))
    more = SweepSpec(scenarios=["tiny"], schedulers=[("opt-ts", ())], seeds=[0], episodes=3)
    with pytest.raises(BenchError, match="evaluation episodes 2 .this sweep: 3"):
        run_sweep(more, tmp_path, LocalExecutor(1))
    assert pl.read_parquet(tmp_path / small.cells()[0].relpath() / "episodes.parquet").height == 2  # nothing replaced


def test_two_scenario_files_with_one_name_do_not_collide(tmp_path):
    text = (Path(__file__).parent.parent / "bench" / "scenarios" / "presets" / "tiny.toml").read_text()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "s.toml").write_text(text)
    (tmp_path / "b" / "s.toml").write_text(text.replace("slots = 8", "slots = 9"))
    spec = SweepSpec(scenarios=[str(tmp_path / "a" / "s.toml"), str(tmp_path / "b" / "s.toml")], schedulers=[("local", ())], seeds=[0], episodes=1)
    a, b = spec.cells()
    assert a.relpath() != b.relpath()
    run_sweep(spec, tmp_path / "out", LocalExecutor(1))
    assert is_complete(tmp_path / "out" / a.relpath()) and is_complete(tmp_path / "out" / b.relpath())


def test_a_second_sweep_on_the_same_out_refuses(tmp_path):
    import fcntl

    from bench.core.errors import BenchError
    from bench.experiments.campaigns.sweep import LOCK, lock_out_dir

    with lock_out_dir(tmp_path):
        with pytest.raises(BenchError, match="in use by another sweep"):
            with lock_out_dir(tmp_path):
                pass
    with lock_out_dir(tmp_path):  # released: usable again
        assert (tmp_path / LOCK).is_file()
    assert fcntl  # the lock is an advisory flock, released when its process dies


def test_sweep_refuses_a_directory_it_did_not_write(tmp_path):
    from bench.core.errors import BenchError

    (tmp_path / "notes.txt").write_text("mine")
    spec = SweepSpec(scenarios=["tiny"], schedulers=[("local", ())], seeds=[0], episodes=1)
    with pytest.raises(BenchError, match="expected a new or empty directory"):
        run_sweep(spec, tmp_path, LocalExecutor(1))
    assert (tmp_path / "notes.txt").read_text() == "mine"
