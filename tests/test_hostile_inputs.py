"""Bad and hostile input, table-driven: every case ends with one line on stderr naming what is wrong, a non-zero exit,
no traceback, and nothing that was there before is lost. Add a row whenever a new case is found.

The cases share one process and one set of bundles (fast): see `bench.core.io`, `bench.experiments.runs.bundle_checks`
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
from bench.experiments.runs.bundle_checks import digest
from bench.experiments.runs.bundles import write_bundle
from bench.experiments.runs.runner import run
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
    import bench.experiments.runs.runner

    def no_work(*args, **kwargs):
        raise AssertionError("the run started before --out was checked")

    monkeypatch.setattr(bench.experiments.runs.runner.InProcess, "execute", no_work)
    (tmp_path / "f").write_text("file")
    r = runner.invoke(app, ["run", "-s", "lad-ts", "--scenario", "paper", "--out", str(tmp_path / "f" / "x")])
    assert r.exit_code == 2 and "--out" in r.stderr and "Traceback" not in r.output


FULL_DISK = r'''
set -u
D=$1; BENCH="$2 -m bench"
mount -t tmpfs -o size=16m tmpfs "$D" || exit 99
cd "$D"
$BENCH run -s opt-ts --scenario tiny -n 2 --out b >/dev/null 2>&1 || exit 98
cp -r "$3" p2c
dd if=/dev/zero of=fill bs=64k 2>/dev/null
sha256sum b/manifest.json | cut -c1-64; echo "==="
$BENCH run -s opt-ts --scenario tiny -n 3 --out b --overwrite 2>&1; echo "rc=$?"
sha256sum b/manifest.json | cut -c1-64; echo "==="
$BENCH leaderboard build --results "$4" --out site 2>&1 | grep -v "^valid: "; echo "rc=${PIPESTATUS[0]}"; echo "==="
$BENCH leaderboard verify p2c --record rec 2>&1; echo "rc=$?"; echo "==="
ls -A . rec
'''


@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_and_loses_nothing(tmp_path):
    """run --overwrite, leaderboard build and verify --record on a full disk (a 16 MiB tmpfs in a mount namespace of
    its own): one line each, exit 2, the old bundle intact, no staging file left behind."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no unprivileged mount namespace here to make a small full disk in")
    committed = Path(__file__).resolve().parents[1] / "leaderboard" / "results" / "tiny"
    script = tmp_path / "full.sh"
    script.write_text(FULL_DISK)
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["unshare", "-rm", "bash", str(script), str(disk), sys.executable, str(committed / "p2c"), str(committed)],
                       capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    before, run_out, build_out, verify_out, listing = r.stdout.split("===\n")
    assert "Traceback" not in r.stdout
    lines = run_out.strip().splitlines()
    assert lines[-3].startswith("error: No space left on device") and lines[-2] == "rc=2", run_out
    assert lines[-1] == before.strip()  # the old bundle is the same file
    assert build_out.strip().splitlines()[-2:] == ["error: No space left on device (nothing already written was changed)", "rc=2"], build_out
    assert verify_out.strip().splitlines()[-1] == "rc=2" and "error: No space left on device" in verify_out, verify_out
    assert not any(".tmp" in name for name in listing.split()), listing  # no staging file or directory left


def test_a_profile_of_zeros_or_of_bytes_ends_in_one_line(tmp_path):
    """A profile whose medians are all 0 ended in "ValueError: capacities and link rates must be positive", a binary
    profile file in a UnicodeDecodeError traceback."""
    import json
    import shutil

    shipped = Path(__file__).resolve().parents[1] / "profiles" / "data"
    for hw in ("cpu-intel-xeon-1t", "cpu-intel-xeon-2t"):
        shutil.copytree(shipped / hw, tmp_path / "p" / hw)

    def zero(x):
        if isinstance(x, dict):
            return {k: (0.0 if k in ("median_s", "p25_s", "p75_s") else zero(v)) for k, v in x.items()}
        return [zero(v) for v in x] if isinstance(x, list) else x

    target = tmp_path / "p" / "cpu-intel-xeon-1t" / "sd15-tiny.json"
    target.write_text(json.dumps(zero(json.loads(target.read_text()))))
    r = runner.invoke(app, ["run", "-s", "opt-ts", "--scenario", "edge-cpu", "--set", f'servers.profile_dirs=["{tmp_path / "p"}"]', "-n", "1", "--no-save"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "step median_s at 64px x1 = 0.0 is not allowed; expected a number of seconds > 0" in r.stderr, r.stderr
    target.write_bytes(bytes(range(256)) * 4)
    r = runner.invoke(app, ["run", "-s", "opt-ts", "--scenario", "edge-cpu", "--set", f'servers.profile_dirs=["{tmp_path / "p"}"]', "-n", "1", "--no-save"])
    assert r.exit_code == 2 and "Traceback" not in r.output and "expected UTF-8 text" in r.stderr, r.stderr


MISDESCRIBED_BUILTIN = [
    ("a rule that claims to learn", lambda m: m["scheduler"].update(learns=True), "learns = true is not allowed for the built-in 'opt-ts'; expected false"),
    ("another class", lambda m: m["scheduler"].update(**{"class": "schedulers.classical:LocalScheduler"}), "class = 'schedulers.classical:LocalScheduler' is not allowed"),
    ("a name over another built-in's ref", lambda m: m["scheduler"].update(ref="p2c"), "name = 'opt-ts' with ref = 'p2c' is not allowed"),
    ("a name that is not text", lambda m: m["scheduler"].update(name=["opt-ts"]), 'name = ["opt-ts"] is not allowed; expected'),
]


@pytest.mark.parametrize("command", ["validate", "verify"])
@pytest.mark.parametrize("case, edit, fragment", MISDESCRIBED_BUILTIN, ids=[c[0] for c in MISDESCRIBED_BUILTIN])
def test_a_manifest_that_misdescribes_a_builtin_is_refused_in_one_line(good, tmp_path, case, edit, fragment, command):
    """Review: verify chose its check by the manifest's `learns`, so opt-ts claimed as a learner was held to the
    10% window. What a built-in is, is the registry's; validate and verify both refuse another description."""
    path = _bundle(good, tmp_path, lambda p: resign(p, edit))
    r = runner.invoke(app, ["leaderboard", command, str(path)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert [line for line in r.stdout.splitlines() if fragment in line and line.strip().startswith(("scheduler: ", "FAILED"))], r.stdout


def test_carrying_a_plugins_source_never_imports_it(tmp_path, monkeypatch):
    """The parent of a sandboxed run must not run the plugin's code, not even its imports: carry_source reads
    files. The class the sandboxed child reports does not choose what is read either."""
    import sys
    from types import SimpleNamespace

    from bench.experiments.runs.bundles import carry_source

    (tmp_path / "lib" / "tripwire").mkdir(parents=True)
    (tmp_path / "lib" / "tripwire" / "__init__.py").write_text("raise SystemExit('imported by the parent')\n")
    (tmp_path / "lib" / "tripwire" / "rule.py").write_text("raise SystemExit('imported by the parent')\n")
    (tmp_path / "lib" / "evil.py").write_text("raise SystemExit('imported by the parent')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    out = tmp_path / "bundle"
    out.mkdir()
    entry = carry_source(SimpleNamespace(scheduler_ref="tripwire.rule:Rule", scheduler_class="evil:Rule"), out)
    assert entry == {"loader": "module", "entry": "tripwire.rule:Rule", "files": ["source/tripwire/__init__.py", "source/tripwire/rule.py"]}
    entry = carry_source(SimpleNamespace(scheduler_ref=str(tmp_path / "lib" / "evil.py") + ":Rule", scheduler_class="tripwire:Rule"), out)
    assert entry == {"loader": "file", "entry": "evil.py:Rule", "files": ["source/evil.py"]}
    assert "tripwire" not in sys.modules and "evil" not in sys.modules
    assert carry_source(SimpleNamespace(scheduler_ref="nowhere_at_all.rule:Rule", scheduler_class="tripwire:Rule"), out)["note"].startswith("no source file found")
    assert carry_source(SimpleNamespace(scheduler_ref="opt-ts", scheduler_class="evil:Rule"), out) == {}
