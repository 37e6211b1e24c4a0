"""One error family (bench/core/errors.py): whatever a user can get wrong ends the command with one line that names
the field, the bad value and what is allowed, never a traceback. The CLI turns only BenchError (and OSError) into
that line, so each case here is a library path that used to raise something else and that the command line reaches.

The helper that makes any message one line (`one_line`) is tested here too: the sandbox relies on its exact rule."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import BenchError, ConfigError, first_line, one_line
from tests.forge import resign

runner = CliRunner()
TINY = ["run", "-s", "random", "--scenario", "tiny", "-n", "1", "--no-save"]
EVENT = ["run", "-s", "random", "--scenario", "tiny-poisson", "-n", "1", "--no-save"]


def one_error_line(r, fragment: str) -> str:
    """The command failed with exactly one line on stderr, "error: ..." holding `fragment`, and no traceback."""
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert fragment in lines[0] and "Traceback" not in r.output, lines[0]
    return lines[0]


# ---- the command line -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    # float() of a TOML integer beyond a float's range raised OverflowError (bench/core/config.py)
    ([*TINY, "--set", "episode.slot_s=1" + "0" * 400], "episode.slot_s = 1000"),
    ([*TINY, "--set", "servers.capacity_gcps=[1" + "0" * 400 + ", 1, 1, 1]"], "servers.capacity_gcps[0] = 1000"),
    # the event engine's own checks (bench/engine/events.py) raise ValueError; the scenario schema must refuse first
    ([*EVENT, "--set", "episode.accounting='metric'"], "episode.accounting = 'metric'"),
    ([*EVENT, "--set", "servers.gpus=0"], "servers.gpus = 0"),
    ([*EVENT, "--set", "servers.gpus=[1, 0, 1, 1]"], "servers.gpus = [1, 0, 1, 1]"),
    ([*EVENT, "--set", "episode.slot_s=0"], "episode.slot_s = 0"),
])
def test_bad_values_end_in_one_line(args, fragment):
    one_error_line(runner.invoke(app, args), fragment)


def test_a_bundle_with_a_negative_seed_ends_in_one_line(tmp_path):
    """A forger can write any seed into a bundle and re-sign it; replaying it built the task streams of seed -1,
    which raised ValueError in tasks.Streams (now ConfigError)."""
    path = tmp_path / "bundle"
    r = runner.invoke(app, ["run", "-s", "opt-ts", "--scenario", "tiny", "--seed", "0", "--episodes", "1", "--out", str(path)])
    assert r.exit_code == 0, r.output
    for name in ("episodes.parquet", "actions.parquet"):
        frame = pl.read_parquet(path / name)
        frame.with_columns(pl.lit(-1, dtype=pl.Int64).alias("seed")).write_parquet(path / name)
    resign(path, lambda m: m.update(seeds=[-1]))
    assert json.loads((path / "manifest.json").read_text())["seeds"] == [-1]
    one_error_line(runner.invoke(app, ["replay", str(path)]), "seed = -1 is not allowed; expected a non-negative integer")


# ---- the family ---------------------------------------------------------------------------------------------------

def test_config_error_names_field_value_and_what_is_allowed():
    exc = ConfigError("servers.count", 0, "an integer >= 1", source="my.toml")
    assert isinstance(exc, BenchError) and not isinstance(exc, ValueError)  # callers catch the family, not ValueError
    assert str(exc) == "my.toml: servers.count = 0 is not allowed; expected an integer >= 1"


# ---- one line -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "plain", "  two\nlines\r\n", "tab\tand\x0bvt", "\x1b[2Jclear", "a\u2028b\x00c", "é ü ✓", "\n\n"])
def test_one_line_of_a_text_is_the_sandbox_rule(text):
    """bench.core.errors.one_line(text) is the sandbox's rule to the character: whitespace collapsed, characters that
    are not printable (escape sequences, NUL, line separators) made spaces."""
    assert one_line(text) == " ".join("".join(c if c.isprintable() else " " for c in text).split())
    assert "\n" not in one_line(text) and "\x1b" not in one_line(text)


def test_one_line_of_an_exception():
    ray_like = RuntimeError("Traceback (most recent call last):\n  File 'x', line 1\n\nActorDiedError: the actor died\n")
    assert one_line(ray_like, line="last", typed=True) == "RuntimeError: ActorDiedError: the actor died"
    assert one_line(ValueError("bad header\nmore detail"), line="first") == "bad header"
    assert one_line(ValueError("bad header\nmore detail")) == "bad header more detail"
    assert one_line(KeyError()) == "KeyError" and one_line(OSError(), typed=True) == "OSError"
    assert first_line(ValueError("a\nb")) == "a b"


def test_one_line_cuts_after_a_sentence_or_with_an_ellipsis():
    long = "The first sentence says what went wrong. " + "Then a long explanation follows " * 10
    assert one_line(long, 60) == "The first sentence says what went wrong."
    assert one_line("x" * 100, 10) == "xxxxxxx..." and len(one_line("y" * 500, 300)) == 300
    assert first_line(ValueError("z" * 400)) == "z" * 297 + "..."


@pytest.mark.parametrize("scheduler, edit, fragment", [
    ("sac-ts", lambda m: m["protocol"].update(train_episodes=-1), "train_episodes = -1"),
])
def test_verify_of_a_bundle_whose_protocol_the_run_path_refuses_ends_in_one_line(tmp_path, scheduler, edit, fragment):
    """verify re-runs a bundle with the counts its manifest states (a bundle's schema check catches fewer
    evaluation episodes than rows, not a negative training count); the run path refuses it with one line, which
    verify reports (a negative count was never checked by the runner: the first training loop ran zero times)."""
    path = tmp_path / "bundle"
    r = runner.invoke(app, ["run", "-s", scheduler, "--scenario", "tiny", "--seed", "0", "--episodes", "1", "--train-episodes", "1", "--out", str(path)])
    assert r.exit_code == 0, r.output
    resign(path, edit)
    r = runner.invoke(app, ["leaderboard", "verify", str(path)])
    assert r.exit_code != 0 and "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), (r.output, r.exception)
    assert r.output.startswith("FAILED") and f"re-run: {fragment} is not allowed" in r.output, r.output
