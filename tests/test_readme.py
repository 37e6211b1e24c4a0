"""The README's "Using it" lines, run as written, top to bottom, in a fresh directory with the venv of the test
command on PATH (a child venv on top of it, so `pip install -e my-rule` does not touch the test environment).

Lines that take minutes run with fewer episodes, seeds or repeats: SMALLER says exactly how, keyed by the README's
text, so a README line that changes fails here until this file follows. The user's copy of GenTD26's trace
(`lora_request_trace.csv`, no licence to ship it) is a small file written in its format. Marked slow; runs in CI."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

# README line (comment removed) -> what runs instead, and why
SMALLER = {
    "bench run -s opt-ts --scenario paper-bursty": "bench run -s opt-ts --scenario paper-bursty -n 2",
    "bench run -s least-loaded --scenario edge-gpu --json": "bench run -s least-loaded --scenario edge-gpu --json -n 2",
    "bench run -s lad-ts --train-episodes 100 --param actor_lr=3e-4 --out runs/lad":
        "bench run -s lad-ts --train-episodes 2 -n 1 --param actor_lr=3e-4 --out runs/lad",
    "bench run -s lad-ts --checkpoint runs/lad": "bench run -s lad-ts --checkpoint runs/lad -n 1",
    "bench run -s largest-batch --scenario batch-gpu": "bench run -s largest-batch --scenario batch-gpu -n 2",
    "bench run -s cascade --scenario cascade-gpu": "bench run -s cascade --scenario cascade-gpu --train-episodes 5 -n 2",
    "bench run -s my-rule --sandbox --out runs/my-rule": "bench run -s my-rule --sandbox --out runs/my-rule -n 2",
    "bench leaderboard build --results leaderboard/results --results submissions --out site":
        "bench leaderboard build --results submissions --out site",  # the committed results: test_leaderboard.py builds them
    "bench run -s opt-ts --scenario edge-gpu --trace gentd26.parquet": "bench run -s opt-ts --scenario edge-gpu --trace gentd26.parquet -n 1",
    "bench sweep --out runs/load -s opt-ts -s p2c --vary 'tasks.arrivals.rate_per_s=[400, 530, 660]' --scenario paper-poisson --num-seeds 3":
        "bench sweep --out runs/load -s opt-ts -s p2c --vary 'tasks.arrivals.rate_per_s=[400, 530, 660]' --scenario paper-poisson --num-seeds 1 -n 1",
    "bench profile --model sd15-tiny --out p.json": "bench profile --model sd15-tiny --out p.json --resolutions 64 --batch-sizes 1 --repeats 3 --warmup 1",
    "bench live -s least-loaded --scenario live-cpu --compare-sim":
        "bench live -s least-loaded --scenario live-cpu --compare-sim --time-scale 20 --warmup 0 --profile-seconds 1",
    "bench reproduce-paper --num-seeds 3 --jobs 2 --out runs/paper":
        "bench reproduce-paper --num-seeds 1 --jobs 2 --out runs/paper --episodes 1 --train-episodes 1 -s opt-ts -s lad-ts",
    "pytest tests/benchmarks --benchmark-enable": "pytest tests/benchmarks/test_arrivals_speed.py --benchmark-enable -q -p no:cacheprovider",
}
# README line -> why it does not run here
NOT_HERE = {
    ". .venv/bin/activate": "the test puts the venv on PATH itself",
    "bench check": ".ci/run runs exactly this line, in the same venv, as a step of its own",
}


def readme_lines() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Using it\n.*?```sh\n(.*?)```", text, re.S).group(1)
    return [" ".join(shlex.split(line, comments=True)) if "'" not in line else line.split("  #")[0].strip()
            for line in block.splitlines() if line.strip()]


def gentd26_copy(path: Path, n: int = 4000) -> None:
    """A small lora_request_trace.csv in GenTD26's raw format (made up here; three hours of requests)."""
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 3 * 3600, n)) + np.datetime64("2024-11-15T08:00:00").astype("datetime64[s]").astype(np.int64)
    rows = []
    for i, s in enumerate(t):
        stamp = str(np.datetime64(int(s), "s")).replace("T", " ")
        model = f"M{int(rng.zipf(1.6)) % 40:04d}"
        rows.append(f"{stamp},TXT_2_IMG,SUCCEED,20.0,G{i:05d},40.0,10.0,{rng.choice([1.0, 2.0, 4.0])},{rng.choice([20.0, 30.0])},{model},0")
    header = ("gmt_create,predict_type,predict_status,exec_time_seconds,groupId,prompt_length,negative_prompt_length,"
              "num_images_per_prompt,num_inference_steps,checkpoint_model_version_id,num_lora")
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv on top of this one (a .pth adds this environment's packages), with a `bench` command of its own."""
    env_dir = tmp_path_factory.mktemp("readme") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=300)
    site = next((env_dir / "lib").glob("python*/site-packages"))
    (site / "on_top_of_ci.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    for name, code in (("bench", "from bench.cli import app; app()"), ("pip", "from pip._internal.cli.main import main; sys.exit(main())"),
                       ("pytest", "import pytest; sys.exit(pytest.console_main())")):
        script = env_dir / "bin" / name
        script.write_text(f"#!{env_dir / 'bin' / 'python'}\nimport sys\nif __name__ == '__main__':\n    {code}\n")  # as pip writes them: spawned workers import it
        script.chmod(0o755)
    return env_dir


@pytest.mark.slow
def test_the_readme_lines_run_as_written(venv, tmp_path):
    lines = readme_lines()
    stale = [k for k in [*SMALLER, *NOT_HERE] if k not in lines]
    assert not stale, f"README lines changed; update SMALLER/NOT_HERE in this file: {stale}"
    assert "bench check" in (REPO / ".ci" / "run").read_text()
    work = tmp_path / "clone"
    work.mkdir()
    gentd26_copy(work / "lora_request_trace.csv")
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv), "PIP_NO_INDEX": "1"}
    env.pop("PYTHONPATH", None)
    took: list[tuple[float, str]] = []  # printed (pytest -s): where this test's time goes
    for line in lines:
        if line in NOT_HERE:
            continue
        command = SMALLER.get(line, line)
        for part in command.split(" && "):
            args = shlex.split(part)
            if args[:3] == ["pip", "install", "-e"]:
                args = ["pip", "install", "--quiet", "--no-deps", "--no-build-isolation", *args[2:]]
            cwd = REPO if args[0] == "pytest" else work
            start = time.monotonic()
            r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
            took.append((round(time.monotonic() - start, 1), part[:70]))
            assert r.returncode == 0, f"{line}\n(ran: {part})\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
            assert "Traceback" not in r.stderr, (line, r.stderr[-3000:])
    assert (work / "site" / "index.html").is_file() and (work / "gentd26.parquet").is_file() and (work / "p.json").is_file()
    print("\n".join(f"{t:6.1f} s  {what}" for t, what in sorted(took, reverse=True)[:10]))
