"""A new researcher's path, end to end, from a fresh virtual environment: scaffold a scheduler, install it, check it,
run it on `paper`, compare it with a built-in by name, make a submission, validate it, verify it, build the site.

The venv is made on top of this one (a .pth file adds this environment's site-packages), so it takes seconds;
everything else is what a user types. Marked slow; it runs in CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("new-user")
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    purelib = Path(sysconfig.get_paths()["purelib"])
    site = next((env_dir / "lib").glob("python*/site-packages"))
    (site / "on_top_of_ci.pth").write_text(f"import site; site.addsitedir({str(purelib)!r})\n")
    return env_dir


def _sh(venv: Path, cwd: Path, *args: str, ok: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_from_an_idea_to_a_ranked_entry(venv, tmp_path):
    py = str(venv / "bin" / "python")
    bench = [py, "-m", "bench"]
    work = tmp_path / "work"
    work.mkdir()

    # 1. scaffold and install (the entry point registers the name)
    _sh(venv, work, *bench, "new-scheduler", "queue-aware")
    _sh(venv, work, py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", "queue-aware", timeout=300)
    listed = _sh(venv, work, *bench, "list", "schedulers").stdout
    assert "queue-aware" in listed and "plugin" in listed

    # 2. check it (a child process with a wall-time limit) and run its own tests
    checks = _sh(venv, work, *bench, "check-scheduler", "queue-aware", "--param", "tolerance_s=0.1").stdout
    assert "FAIL" not in checks and "event time model" in checks
    _sh(venv, work / "queue-aware", py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")

    # 3. run it on paper and compare it with a built-in's committed results, by name
    _sh(venv, work, *bench, "run", "-s", "queue-aware", "--scenario", "paper", "--seed", "0,1", "-n", "2", "--out", "paper-run")
    if (REPO / "leaderboard" / "results" / "paper" / "opt-ts").is_dir():
        comparison = json.loads(_sh(venv, work, *bench, "compare", "paper-run", "opt-ts", "--json").stdout)
        assert comparison["b"]["scheduler"] == "opt-ts" and comparison["paired_episodes"] == 4
        assert {m["metric"] for m in comparison["metrics"]} >= {"mean_delay_s", "p95_delay_s"}

    # 4. a submission at a leaderboard scenario's minimum protocol, with its description
    entry = work / "submissions" / "tiny" / "queue-aware"
    _sh(venv, work, *bench, "run", "-s", "queue-aware", "--scenario", "tiny", "--num-seeds", "3", "-n", "10", "--out", str(entry / "all-seeds"))
    (entry / "submission.toml").write_text('name = "Queue-aware (scaffold)"\nauthors = ["A. Newcomer"]\ndescription = "The `new-scheduler` example."\n')
    assert (entry / "all-seeds" / "source" / "queue_aware" / "scheduler.py").is_file()  # the bundle carries the code
    valid = _sh(venv, work, *bench, "leaderboard", "validate", str(work / "submissions")).stdout
    assert "VALID" in valid and "INVALID" not in valid
    verified = _sh(venv, work, *bench, "leaderboard", "verify", str(entry), "--allow-unisolated", "--record", "records").stdout
    assert "VERIFIED queue-aware" in verified and "(sandbox)" in verified

    # 5. the site, with the new entry beside the committed ones
    _sh(venv, work, *bench, "leaderboard", "build", "--results", str(work / "submissions"), "--out", "site", "--verified", "records")
    page = (work / "site" / "scenario-tiny.html").read_text()
    assert "Queue-aware (scaffold)" in page and "✓" in page
