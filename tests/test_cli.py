"""The `bench` command line: run, list, scenario, check-scheduler, replay; one-line errors."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bench.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def _without_timing(text):
    data = json.loads(text)
    data.pop("timing")
    return data


def test_run_json_is_reproducible_outside_timing():
    args = ["run", "--scheduler", "p2c", "--scenario", "tiny", "--seeds", "2", "--episodes", "3", "--json"]
    a, b = invoke(*args), invoke(*args)
    assert a.exit_code == 0, a.output
    assert _without_timing(a.stdout) == _without_timing(b.stdout)
    summary = json.loads(a.stdout)
    assert summary["scheduler"] == "p2c" and summary["scenario"] == "tiny"
    assert summary["seeds"] == [0, 1] and summary["episodes"] == 3
    assert set(summary["timing"]) >= {"decision_us_per_task", "wall_s"}


def test_run_writes_bundle_and_table(tmp_path):
    out = tmp_path / "run"
    r = invoke("run", "-s", "opt-ts", "--scenario", "tiny", "--seed", "4", "--episodes", "2", "--out", str(out), "--task-records")
    assert r.exit_code == 0, r.output
    assert "mean delay" in r.stdout and "bundle written" in r.stdout
    assert (out / "tasks.parquet").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"][:2] == ["bench", "run"] or manifest["command"][0] == "bench"
    r = invoke("replay", str(out))
    assert r.exit_code == 0 and "2 episodes replayed" in r.stdout
    r = invoke("run", "-s", "opt-ts", "--scenario", "tiny", "--episodes", "1", "--out", str(out))
    assert r.exit_code == 2 and "--overwrite" in r.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "-s", "nope", "--scenario", "tiny"], "--scheduler = 'nope'"),
        (["run", "-s", "random", "--scenario", "missing.toml"], "--scenario = 'missing.toml'"),
        (["run", "-s", "random", "--scenario", "tiny", "--set", "servers.capacity_gcps=[1, -2, 3, 4]"], "servers.capacity_gcps[1] = -2"),
        (["run", "-s", "random", "--scenario", "tiny", "--set", "servers.colour=1"], "unknown key"),
        (["run", "-s", "random", "--scenario", "tiny", "--episodes", "0"], "--episodes = 0"),
        (["run", "-s", "random", "--scenario", "tiny", "--seed", "-3"], "--seed = -3"),
        (["run", "-s", "random", "--scenario", "tiny", "--param", "x=1"], "takes no parameters"),
        (["run", "-s", "random", "--scenario", "tiny", "--seed", "1", "--seeds", "2"], "not allowed together"),
        (["run", "-s", "random", "--scenario", "tiny", "--device", "cuda"], "--device is not allowed with 'random'"),
        (["run", "-s", "lad-ts", "--scenario", "tiny", "--device", "tpu"], "lad-ts.device = 'tpu'"),
    ],
)
def test_bad_input_fails_with_one_line(args, fragment):
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:") and fragment in lines[0]
    assert "Traceback" not in r.output


def test_list_scenario_and_check_scheduler():
    r = invoke("list")
    assert r.exit_code == 0 and "opt-ts" in r.stdout and "paper-iid" in r.stdout
    r = invoke("scenario", "paper")
    data = json.loads(r.stdout)
    assert data["hash"].startswith("ec8d458e") and data["servers"]["count"] == 20
    r = invoke("scenario", "--fields")
    assert "tasks.per_index_legacy_seeds.density" in r.stdout
    r = invoke("scheduler", "lad-ts")
    assert r.exit_code == 0 and "denoising_steps" in r.stdout and "actor_lr" in r.stdout
    r = invoke("scheduler", "opt-ts")
    assert r.exit_code == 0 and "no hyper-parameters" in r.stdout
    r = invoke("check-scheduler", "least-loaded")
    assert r.exit_code == 0 and "FAIL" not in r.stdout
    r = invoke("check-scheduler", "tests.test_schedulers:Broken")
    assert r.exit_code == 1 and "FAIL" in r.stdout


def test_console_script_runs():
    r = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--scheduler", "local", "--scenario", "tiny", "--episodes", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scheduler"] == "local"
