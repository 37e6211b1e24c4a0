"""What every command shares: the two consoles, one-line errors, number formatting, seed flags."""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from bench.core.errors import BenchError

PIPED_WIDTH = 500  # columns when output is not a terminal: tables are never cut, however long a cell


def _console(stderr: bool = False) -> Console:
    """A console that wraps to the terminal, or, when piped, is wide enough that no table is cut."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


out = _console()
err = _console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guarded(fn: Callable[[], Any]) -> Any:
    """Run a library call; a problem the user can fix ends the command with one line: a BenchError, or what the
    operating system refused (a full disk, a read-only or missing directory, no permission). Writers stage their
    output and rename it into place, so nothing written before is lost."""
    try:
        return fn()
    except BenchError as exc:
        fail(str(exc))
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or type(exc).__name__}{where} (nothing already written was changed)")


MAX_SEED = 2**63 - 1  # seeds are stored as 64-bit integers in result files
MAX_SEED_COUNT = 100_000  # seeds in one command: more runs than any machine finishes, yet a list it can build


def parse_seed_specs(specs: List[str]) -> list[int]:
    """`--seed` values: one seed (7), a list (0,3,5) or a range (10-19, both ends included), repeatable."""
    chosen: list[int] = []
    for spec in specs:
        for part in str(spec).split(","):
            part = part.strip()
            low, dash, high = part.partition("-")
            try:
                ends = (int(low), int(high)) if dash else (int(part), int(part))
            except ValueError:
                fail(f"--seed = {spec!r} is not allowed; expected a seed (7), a list (0,3,5) or a range (10-19)")
            if ends[1] < ends[0]:
                fail(f"--seed = {spec!r} is not allowed; expected a range low-high with low <= high")
            if len(chosen) + ends[1] - ends[0] + 1 > MAX_SEED_COUNT:
                fail(f"--seed = {spec!r} is not allowed; expected at most {MAX_SEED_COUNT:,} seeds in all (each seed is a run)")
            chosen += range(ends[0], ends[1] + 1)
    return chosen


def seed_list(seed: Optional[List[str]], num_seeds: Optional[int], *, flag: str = "--num-seeds") -> list[int]:
    """The seeds of a command: `--seed` (explicit) or `--num-seeds N` (seeds 0..N-1); seed 0 by default."""
    if seed and num_seeds is not None:
        fail(f"--seed and {flag} are not allowed together; expected one of them (--seed 3 runs seed 3, {flag} 3 runs seeds 0, 1, 2)")
    if num_seeds is not None:
        if num_seeds < 1:
            fail(f"{flag} = {num_seeds} is not allowed; expected an integer >= 1")
        return list(range(num_seeds))
    chosen = parse_seed_specs(seed) if seed else [0]
    for s in chosen:
        if not 0 <= s <= MAX_SEED:
            fail(f"--seed = {s} is not allowed; expected an integer in 0..{MAX_SEED}")
    if len(set(chosen)) != len(chosen):
        fail(f"--seed = {chosen} is not allowed; expected distinct seeds")
    return chosen


def flag_pairs(flag: str, values: Optional[List[str]]) -> list[str]:
    """A repeatable flag's values as argv again (["--set", "a=1", "--set", "b=2"]): for the command a bundle records."""
    return [x for v in values or [] for x in (flag, v)]


def seed_count(value: Any) -> int:
    """A count of seeds, digits only (the parser of --num-seeds): `--num-seeds 0-2`, meant as a range, would otherwise
    arrive as the integer -2."""
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        raise typer.BadParameter(f"{value!r} is not a count of seeds (N runs seeds 0..N-1); a list or range of seeds is --seed 3,5 or --seed 0-2")
    if len(text.lstrip("0")) > 6 or int(text) > MAX_SEED_COUNT:  # the length first: int() refuses 4,300 digits
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"
        raise typer.BadParameter(f"{shown} seeds is not allowed; expected at most {MAX_SEED_COUNT:,} (each seed is a run)")
    return int(text)


def num_seeds_option(help: str = "run seeds 0..N-1 (instead of --seed)", default: int | None = None) -> Any:
    return typer.Option(default, "--num-seeds", help=help, parser=seed_count)


def legacy_seeds_option() -> Any:
    """`--seeds N`, the old name of `--num-seeds` (hidden; kept for one release)."""
    return typer.Option(None, "--seeds", hidden=True, parser=seed_count)


def pick_num_seeds(num_seeds: Optional[int], legacy: Optional[int]) -> Optional[int]:
    if legacy is not None:
        if num_seeds is not None:
            fail("--seeds and --num-seeds are not allowed together; --seeds is the old name of --num-seeds")
        err.print("note: --seeds is now --num-seeds (the old name goes away in release 0.2)", highlight=False)
        return legacy
    return num_seeds


def fmt(x: Optional[float], digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def exit_on_failed_cells(status: dict) -> None:
    """List a sweep's failed cells (their errors are kept beside the results) and exit with 1 if any."""
    for cell, message in status["errors"].items():
        err.print(f"[red]failed[/] {escape(cell)}: {escape(message)}", highlight=False, soft_wrap=True)
    if status["failed"]:
        raise typer.Exit(1)


PLAIN_PROGRESS_EVERY_S = 30.0  # when stderr is not a terminal: one plain line at most this often (and the last one)


class PlainProgress:
    """Progress as plain lines on stderr for logs and pipes, where a live bar would print nothing readable:
    the first step, then at most one line every PLAIN_PROGRESS_EVERY_S seconds, and the last step."""

    def __init__(self, what: str, total: int | None, every_s: float = PLAIN_PROGRESS_EVERY_S, clock: Callable[[], float] | None = None):
        import time

        self.what, self.total, self.every_s, self.clock = what, total, every_s, clock or time.monotonic
        self.start = self.clock()
        self.last = -float("inf")
        self.done = 0

    def __call__(self, label: str = "", completed: int | None = None) -> None:
        self.done = self.done + 1 if completed is None else completed
        now = self.clock()
        final = self.total is not None and self.done >= self.total
        if self.done > 1 and not final and now - self.last < self.every_s:
            return
        self.last = now
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        err.print(f"{self.what}: {count}{share}{' ' + label if label else ''}, {_clock(now - self.start)} elapsed", highlight=False, markup=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"
