"""Every `bench ...` line of the documentation's shell blocks parses with today's command line: its subcommands and
options exist and its values convert. Nothing runs (the README's lines run in test_readme.py); a renamed or removed
option, or a value of the wrong kind, fails here. Found this way: docs/leaderboard.md's bounds command said
`--seeds 0-2` after `--seeds` had become the old name of the count `--num-seeds`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from bench.cli import app

REPO = Path(__file__).resolve().parent.parent
COMMAND = get_command(app)


def documented_lines() -> list[tuple[str, str]]:
    """(file, line) for every line starting with `bench ` in a ```sh (or unmarked) block of the README and docs/."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("bench "):
                    found.append((path.name, line))
    return found


def parse(argv: list[str]) -> None:
    """Parse argv as `bench` would, down to the leaf command, without invoking anything."""
    ctx = COMMAND.make_context("bench", list(argv))
    command = COMMAND
    while hasattr(command, "resolve_command"):  # a group: its subcommand and the rest of the line
        args = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []), *ctx.args]
        name, command, rest = command.resolve_command(ctx, args)
        ctx = command.make_context(name, rest, parent=ctx)


def parse_error(argv: list[str]) -> str | None:
    try:
        parse(argv)
    except Exception as exc:  # click's usage errors (typer vendors click, so match by what they offer)
        if not hasattr(exc, "format_message"):
            raise
        return exc.format_message()
    return None


def test_the_docs_have_command_lines():
    lines = documented_lines()
    assert len(lines) > 40 and {f for f, _ in lines} >= {"README.md", "leaderboard.md", "bounds.md"}


@pytest.mark.parametrize("where, line", documented_lines(), ids=lambda x: x if isinstance(x, str) and x.endswith(".md") else None)
def test_every_documented_command_parses(where, line):
    error = parse_error(shlex.split(line, comments=True)[1:])
    assert error is None, f"{where}: `{line}`: {error}"


@pytest.mark.parametrize("argv, fragment", [
    (["run", "-s", "opt-ts", "--bogus"], "No such option: --bogus"),
    (["bound", "--scenario", "paper", "--seeds", "0-2"], "'0-2' is not a count of seeds"),
    (["run", "-s", "opt-ts", "--episodes", "many"], "--episodes"),
    (["leaderboard", "verify"], "Missing argument"),
])
def test_the_check_catches_what_it_claims_to(argv, fragment):
    error = parse_error(argv)
    assert error is not None and fragment in error
