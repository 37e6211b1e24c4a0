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
    try:
        return fn()
    except BenchError as exc:
        fail(str(exc))


def seed_list(seed: Optional[List[int]], seeds: Optional[int]) -> list[int]:
    if seed and seeds is not None:
        fail("--seed and --seeds are not allowed together; expected one of them")
    if seeds is not None:
        if seeds < 1:
            fail(f"--seeds = {seeds} is not allowed; expected an integer >= 1")
        return list(range(seeds))
    chosen = list(seed) if seed else [0]
    for s in chosen:
        if s < 0:
            fail(f"--seed = {s} is not allowed; expected a non-negative integer")
    if len(set(chosen)) != len(chosen):
        fail(f"--seed = {chosen} is not allowed; expected distinct seeds")
    return chosen


def fmt(x: Optional[float], digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def exit_on_failed_cells(status: dict) -> None:
    """List a sweep's failed cells (their errors are kept beside the results) and exit with 1 if any."""
    for cell, message in status["errors"].items():
        err.print(f"[red]failed[/] {escape(cell)}: {escape(message)}", highlight=False, soft_wrap=True)
    if status["failed"]:
        raise typer.Exit(1)
