"""Bad and hostile input, table-driven: every case ends with one line on stderr naming what is wrong, a non-zero exit,
no traceback, and nothing that was there before is lost. Add a row whenever a new case is found.

The cases share one process and one set of bundles (fast): see `bench.core.io`, `bench.experiments.bundle_checks`
and docs/leaderboard.md (threat model)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.experiments.bundle_checks import digest
from bench.experiments.bundles import write_bundle
from bench.experiments.runner import run
from bench.scenarios import load_scenario
from tests.forge import resign

runner = CliRunner()
TINY = ["--scenario", "tiny", "-n", "1", "--no-save"]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-inputs")
    return write_bundle(run(load_scenario("tiny"), "opt-ts", seeds=[0], episodes=2), root / "good")


def _bundle(good: Path, tmp: Path, damage) -> Path:
    """A copy of the good bundle, damaged by `damage(path)`."""
    path = tmp / "bundle"
    shutil.copytree(good, path)
    damage(path)
    return path


def _truncate(name):
    def damage(path):
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[: len(data) // 2])
        resign(path)
    return damage


def _manifest(edit):
    """Edit the manifest and recompute its digest, as a forger would (the files it lists are not read)."""
    def damage(path):
        m = json.loads((path / "manifest.json").read_text())
        edit(m)
        m["digest"] = digest(m)
        (path / "manifest.json").write_text(json.dumps(m))
    return damage


def _list_file(name):
    def edit(m):
        m["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    return _manifest(edit)


def _symlink_episodes(path):
    target = path.parent / "elsewhere.parquet"
    shutil.move(path / "episodes.parquet", target)
    os.symlink(target, path / "episodes.parquet")


def _duplicate_rows(path):
    eps = pl.read_parquet(path / "episodes.parquet")
    pl.concat([eps, eps.head(1)]).write_parquet(path / "episodes.parquet")
    resign(path)


def _nan_summary(path):
    text = (path / "summary.json").read_text().replace('"mean_delay_s": ', '"mean_delay_s": NaN, "x": ', 1)
    (path / "summary.json").write_text(text)
    resign(path)


def _edit_without_digest(path):
    m = json.loads((path / "manifest.json").read_text())
    m["protocol"]["train_episodes"] = 7
    (path / "manifest.json").write_text(json.dumps(m))


def _extra_column(path):
    pl.read_parquet(path / "episodes.parquet").with_columns(pl.lit(1.0).alias("bonus")).write_parquet(path / "episodes.parquet")
    resign(path)


def _missing_actions(path):
    acts = pl.read_parquet(path / "actions.parquet")
    acts.head(acts.height - 3).write_parquet(path / "actions.parquet")
    resign(path)


BUNDLE_CASES = [
    ("truncated episodes.parquet", _truncate("episodes.parquet"), "episodes.parquet is not a readable Parquet file"),
    ("truncated actions.parquet", _truncate("actions.parquet"), "actions.parquet is not a readable Parquet file"),
    ("manifest not JSON", lambda p: (p / "manifest.json").write_text("{not json"), "manifest.json is not valid JSON"),
    ("a file outside the bundle", _list_file("../../../etc/passwd"), "expected one of"),
    ("an absolute path", _list_file("/etc/passwd"), "expected one of"),
    ("a device file", _list_file("/proc/kmsg"), "expected one of"),
    ("source path escaping", _list_file("source/../../x.py"), "expected one of"),
    ("a symbolic link", _symlink_episodes, "is a symbolic link"),
    ("duplicated episode rows", _duplicate_rows, "more than once"),
    ("NaN in summary.json", _nan_summary, "summary.json is not valid JSON (NaN is not allowed"),
    ("manifest edited after writing", _edit_without_digest, "does not match its digest"),
    ("an unknown column", _extra_column, "has a column 'bonus'"),
    ("fewer actions than tasks", _missing_actions, "expected one action per task"),
    ("another schema", _manifest(lambda m: m.update(schema_version=99)), "v99 is not supported"),
]


@pytest.mark.parametrize("command", ["replay", "validate", "compare", "checkpoint"])
@pytest.mark.parametrize("case, damage, fragment", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_damaged_bundles_fail_with_one_line(good, tmp_path, case, damage, fragment, command):
    path = _bundle(good, tmp_path, damage)
    args = {
        "replay": ["replay", str(path)],
        "validate": ["leaderboard", "validate", str(path)],
        "compare": ["compare", str(path), str(good)],
        "checkpoint": ["run", "-s", "lad-ts", "--checkpoint", str(path), *TINY],
    }[command]
    r = runner.invoke(app, args)
    assert r.exit_code in (1, 2), r.output
    text = r.stderr + r.stdout
    assert "Traceback" not in text and fragment in text, text
    if command != "validate":
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr


RULE_RAISES = "from schedulers import Scheduler\nclass R(Scheduler):\n    name = 'r'\n    def decide(self, batch):\n        raise KeyError('boom')\n"
RULE_EXITS = "from schedulers import Scheduler\nclass R(Scheduler):\n    name = 'r'\n    def decide(self, batch):\n        raise SystemExit(0)\n"
RULE_IMPORT_FAILS = "raise TypeError('not a plugin')\n"
RULE_ALLOCATES = "import numpy as np\nfrom schedulers import Scheduler\nclass R(Scheduler):\n    name = 'r'\n    def decide(self, batch):\n        raise MemoryError('could not allocate 8 GiB')\n"


def _setup(tmp: Path, kind: str) -> dict[str, str]:
    """Files a case needs; returns names to substitute in its arguments."""
    values = {"TMP": str(tmp)}
    if kind == "non-utf8":
        (tmp / "s.toml").write_bytes(b'name = "x"\n\xff\xfe\n')
    if kind == "not-toml":
        (tmp / "s.toml").write_text("name = \n[[[")
    if kind == "a-file":
        (tmp / "f").write_text("I am a file")
    if kind.startswith("rule:"):
        (tmp / "rule.py").write_text({"raises": RULE_RAISES, "exits": RULE_EXITS, "import": RULE_IMPORT_FAILS, "allocates": RULE_ALLOCATES}[kind[5:]])
    if kind == "checkpoint":
        (tmp / "c.pt").write_bytes(b"\x80\x04not a checkpoint")
    return values


CLI_CASES = [
    ("scenario not UTF-8", "non-utf8", ["run", "-s", "opt-ts", "--scenario", "TMP/s.toml", "--no-save"], "expected UTF-8 text"),
    ("sweep file not UTF-8", "non-utf8", ["sweep", "TMP/s.toml", "--out", "TMP/o"], "expected UTF-8 text"),
    ("scenario not TOML", "not-toml", ["run", "-s", "opt-ts", "--scenario", "TMP/s.toml", "--no-save"], "expected valid TOML"),
    ("1e12 tasks per episode", "", ["run", "-s", "opt-ts", *TINY, "--set", "tasks.arrivals_per_bs=[1, 1000000000000]"], "at most 20,000,000 tasks"),
    ("65,535 servers", "", ["run", "-s", "opt-ts", *TINY, "--set", "servers.count=65535"], "servers.count = 65535"),
    ("a huge seed", "", ["run", "-s", "opt-ts", *TINY, "--seed", str(2**70)], "--seed = 1180591620717411303424"),
    ("--out under a file", "a-file", ["run", "-s", "opt-ts", "--scenario", "tiny", "-n", "1", "--out", "TMP/f/run"], "is a file"),
    ("--out in /proc", "", ["run", "-s", "opt-ts", "--scenario", "tiny", "-n", "1", "--out", "/proc/self/x"], "/proc"),
    ("an empty class reference", "", ["run", "-s", ":X", *TINY], "expected a name, module:Class or path/to/file.py:Class"),
    ("an import that raises", "rule:import", ["run", "-s", "TMP/rule.py:R", *TINY], "importing 'TMP/rule.py' failed (TypeError: not a plugin)"),
    ("an exception in decide", "rule:raises", ["run", "-s", "TMP/rule.py:R", *TINY], "decide() raised KeyError"),
    ("SystemExit in decide", "rule:exits", ["run", "-s", "TMP/rule.py:R", *TINY], "decide() raised SystemExit: 0"),
    ("MemoryError in decide", "rule:allocates", ["run", "-s", "TMP/rule.py:R", *TINY], "decide() raised MemoryError"),
    ("a malformed checkpoint", "checkpoint", ["run", "-s", "lad-ts", *TINY, "--checkpoint", "TMP/c.pt"], "could not be read as a checkpoint"),
    ("a built-in's name taken", "", ["new-scheduler", "opt-ts", "--dir", "TMP"], "reserved"),
    ("an unknown preset", "", ["run", "-s", "opt-ts", "--scenario", "nope", "--no-save"], "--scenario = 'nope'"),
    ("a trace that does not exist", "", ["run", "-s", "opt-ts", "--scenario", "tiny", "--trace", "TMP/none.parquet", "--no-save"], "trace = "),
    ("a trace in /proc", "", ["run", "-s", "opt-ts", "--scenario", "tiny", "--trace", "/proc/kmsg", "--no-save"], "trace = '/proc/kmsg'"),
    ("bound --out in /proc", "", ["bound", "--scenario", "tiny", "--seed", "0", "--no-exact", "--out", "/proc/x.json"], "expected a path outside /proc"),
    ("bound --out under a file", "a-file", ["bound", "--scenario", "tiny", "--seed", "0", "--no-exact", "--out", "TMP/f/bounds.json"], "is a file"),
]


@pytest.mark.parametrize("case, setup, args, fragment", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_fails_with_one_line(tmp_path, case, setup, args, fragment):
    values = _setup(tmp_path, setup)
    args = [a.replace("TMP", values["TMP"]) for a in args]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment.replace("TMP", values["TMP"]) in lines[0], r.stderr
    assert "Traceback" not in r.output


@pytest.mark.parametrize("args, what", [
    (["leaderboard", "build", "--out", "."], "the current directory"),
    (["leaderboard", "build", "--results", "RES", "--out", "RES"], "the submissions"),
    (["run", "-s", "opt-ts", "--scenario", "tiny", "-n", "1", "--out", "MINE", "--overwrite"], "a directory that is not a bundle"),
    (["new-scheduler", "my-rule", "--dir", "MINE/.."], "a non-empty target"),
    (["sweep", "--scenario", "tiny", "-s", "local", "--out", "MINE", "-n", "1"], "a directory the suite did not write"),
])
def test_nothing_the_suite_did_not_write_is_deleted(tmp_path, monkeypatch, good, args, what):
    """Data loss from the review: build --out . emptied the directory, --results X --out X deleted the submissions,
    run --out D --overwrite deleted a D that was not a bundle."""
    mine = tmp_path / "my-rule"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    results = tmp_path / "results"
    shutil.copytree(good, results / "opt-ts" / "seed-0")
    monkeypatch.chdir(mine)
    args = [a.replace("RES", str(results)).replace("MINE", str(mine)) for a in args]
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    r = runner.invoke(app, args)
    assert r.exit_code == 2, (what, r.output)
    assert "Traceback" not in r.output
    assert (mine / "notes.txt").read_text() == "precious"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before, what


def test_single_file_outputs_refuse_to_overwrite(tmp_path):
    target = tmp_path / "trace.parquet"
    target.write_text("mine")
    src = tmp_path / "raw.csv"
    src.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:15:46.6805900,374,44\r\n")
    r = runner.invoke(app, ["trace", "import", str(src), "--format", "azure-llm-2023", "--out", str(target)])
    assert r.exit_code == 2 and "--force" in r.stderr and target.read_text() == "mine"
    (tmp_path / "p.json").write_text("mine")
    r = runner.invoke(app, ["profile", "--model", "sd15-tiny", "--out", str(tmp_path / "p.json")])
    assert r.exit_code == 2 and "--overwrite" in r.stderr and (tmp_path / "p.json").read_text() == "mine"


def test_refusals_happen_before_any_work(tmp_path, monkeypatch):
    """A bad --out is found before training starts, not after (the review: found only after the run)."""
    import bench.experiments.runner

    def no_work(*args, **kwargs):
        raise AssertionError("the run started before --out was checked")

    monkeypatch.setattr(bench.experiments.runner, "run", no_work)
    (tmp_path / "f").write_text("file")
    r = runner.invoke(app, ["run", "-s", "lad-ts", "--scenario", "paper", "--out", str(tmp_path / "f" / "x")])
    assert r.exit_code == 2 and "--out" in r.stderr and "Traceback" not in r.output
