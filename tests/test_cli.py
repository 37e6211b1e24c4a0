"""The `bench` command line: run, list, scenario, check-scheduler, replay; one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app

runner = CliRunner()


COMMITTED_TINY_OPT_TS = Path(__file__).resolve().parents[1] / "leaderboard" / "results" / "tiny" / "opt-ts"


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
    assert "mean delay" in r.stdout and f"results saved to {out}/" in r.stderr
    assert (out / "tasks.parquet").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    # the effective command, every default resolved (not the test runner's argv)
    assert manifest["command"] == ["bench", "run", "--scheduler", "opt-ts", "--scenario", "tiny", "--seed", "4", "--episodes", "2", "--task-records", "--out", str(out)]
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
        (["run", "-s", "random", "--scenario", "tiny", "--seed", "-3"], "--seed = '-3'"),
        (["run", "-s", "random", "--scenario", "tiny", "--seed", str(2**64)], "--seed = 18446744073709551616"),
        (["run", "-s", "random", "--scenario", "tiny", "--out", "/proc/x"], "--out = '/proc/x'"),
        (["run", "-s", "random", "--scenario", "tiny", "--no-save", "--out", "x"], "--no-save is not allowed"),
        (["run", "-s", "random", "--scenario", "tiny", "--param", "x=1"], "takes no parameters"),
        (["run", "-s", "random", "--scenario", "tiny", "--seed", "1", "--num-seeds", "2"], "not allowed together"),
        (["run", "-s", "random", "--scenario", "tiny", "--seed", "0-999999999999"], "at most 100,000 seeds"),  # was a MemoryError
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


@pytest.mark.parametrize("command", [["run", "-s", "random", "--scenario", "tiny"], ["bound", "--scenario", "tiny", "--no-exact"],
                                     ["reproduce-paper", "--out", "x"], ["leaderboard", "verify", str(COMMITTED_TINY_OPT_TS)]])
@pytest.mark.parametrize("flag", ["--num-seeds", "--seeds"])
def test_a_range_given_as_a_seed_count_is_refused_and_the_range_flag_named(command, flag):
    """`--num-seeds 0-2` (or the old `--seeds 0-2`), meant as seeds 0..2, used to arrive as the count -2 ("--num-seeds = -2
    is not allowed", a value nobody typed); a documented bounds command failed that way."""
    if flag == "--seeds" and command[0] == "leaderboard":
        flag = "--num-seeds"  # --seeds, the old name, exists where --num-seeds replaced it: not on verify
    r = invoke(*command, flag, "0-2")
    assert r.exit_code == 2, r.output
    assert "'0-2' is not a count of seeds" in r.output and "--seed 0-2" in r.output and "-2 is not allowed" not in r.output


@pytest.mark.parametrize("value, fragment", [("²", "'²' is not a count of seeds"),  # isdigit() but not int(): was "Value error"
                                              ("99999999999999999999999", "expected at most 100,000"),  # was an OverflowError
                                              ("100001", "expected at most 100,000")])
def test_a_seed_count_is_ascii_digits_and_bounded(value, fragment):
    r = invoke("run", "-s", "random", "--scenario", "tiny", "--num-seeds", value)
    assert r.exit_code == 2 and fragment in r.output and "Traceback" not in r.output


def test_verify_refuses_zero_seeds():
    r = invoke("leaderboard", "verify", str(COMMITTED_TINY_OPT_TS), "--num-seeds", "0")
    assert r.exit_code == 2 and "--num-seeds = 0 is not allowed" in r.stderr  # it used to re-run every seed


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


def test_python_dash_m_bench_runs():
    r = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--scheduler", "local", "--scenario", "tiny", "--episodes", "1", "--json", "--no-save"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scheduler"] == "local" and "results not saved" in r.stderr


def test_console_script_runs_and_saves_under_runs(tmp_path):
    """The installed `bench` script (not python -m), as a user types it, from another directory."""
    script = Path(sys.executable).with_name("bench")
    assert script.is_file(), "the package's console script is installed beside the interpreter"
    r = subprocess.run([str(script), "run", "-s", "least-loaded", "--scenario", "tiny", "--episodes", "1"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    saved = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(saved) == 1 and (saved[0] / "manifest.json").is_file() and saved[0].name.endswith("least-loaded-tiny")
    assert f"results saved to {Path('runs') / saved[0].name}/" in r.stderr
    assert (tmp_path / "runs" / ".aigc-edge-bench").is_file()  # the suite's marker
    assert "mean delay" in r.stdout and "╭" not in r.stdout  # a plain table when piped, not cut
    for line in r.stdout.splitlines():
        assert not line.rstrip().endswith("…"), line


def test_help_shows_no_placeholders_for_flags():
    r = invoke("run", "--help")
    assert r.exit_code == 0 and "--json" in r.stdout and "<bool>" not in r.stdout and "--num-seeds" in r.stdout


def test_list_shows_a_dash_where_a_profile_has_no_measured_spread():
    """Published profiles carry one number per figure: no spread to show, never "nan%"."""
    r = invoke("list")
    assert r.exit_code == 0 and "nan" not in r.stdout
    published = [line for line in r.stdout.splitlines() if "published" in line and "cuda-t4-16gb" in line]
    assert published and all("—" in line for line in published)
    measured = [line for line in r.stdout.splitlines() if "cpu-intel-xeon-1t" in line and "sd15-tiny" in line]
    assert measured and "% max" in measured[0]


def test_evaluating_a_checkpoint_needs_no_parameters_again(tmp_path):
    """The README's two lines in a row: train with a non-default --param, then evaluate with --checkpoint alone."""
    out = tmp_path / "lad"
    r = invoke("run", "-s", "lad-ts", "--scenario", "tiny", "--train-episodes", "2", "-n", "1", "--param", "actor_lr=3e-4", "--out", str(out))
    assert r.exit_code == 0, r.output
    r = invoke("run", "-s", "lad-ts", "--scenario", "tiny", "-n", "1", "--checkpoint", str(out), "--json", "--no-save")
    assert r.exit_code == 0, r.output
    r = invoke("run", "-s", "lad-ts", "--scenario", "tiny", "-n", "1", "--checkpoint", str(out), "--param", "actor_lr=1e-4", "--no-save")
    assert r.exit_code == 2 and "--checkpoint was trained with actor_lr = 0.0003; this run has 0.0001" in r.stderr


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal():
    """Training printed nothing for minutes in a log (a newcomer's report): now the first step, a line every 30 s
    and the last step; --no-progress prints none."""
    r = invoke("run", "-s", "opt-ts", "--scenario", "tiny", "-n", "3", "--no-save")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if line.startswith("opt-ts on tiny: ")]
    assert lines[0].startswith("opt-ts on tiny: 1/3 (33%)") and lines[-1].startswith("opt-ts on tiny: 3/3 (100%)")
    r = invoke("run", "-s", "opt-ts", "--scenario", "tiny", "-n", "3", "--no-save", "--no-progress")
    assert r.exit_code == 0 and "opt-ts on tiny:" not in r.stderr


def test_plain_progress_prints_at_most_one_line_per_period(monkeypatch):
    from bench.cli import common

    printed: list[str] = []
    monkeypatch.setattr(common.err, "print", lambda text, **kw: printed.append(text))
    now = [0.0]
    p = common.PlainProgress("train", 100, every_s=30.0, clock=lambda: now[0])
    for step in range(100):
        now[0] = step * 1.0  # one step a second: lines at 0, 30, 60, 90 s and the last step
        p(f"episode {step + 1}")
    assert [line.split(":")[1].split()[0] for line in printed] == ["1/100", "31/100", "61/100", "91/100", "100/100"]
    assert printed[-1] == "train: 100/100 (100%) episode 100, 1 min 39 s elapsed"
