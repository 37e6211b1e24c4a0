"""Errors that reach the user as one line (the command line prints them without a traceback)."""

from __future__ import annotations

from typing import Any, Literal


class BenchError(Exception):
    """Base class: its message is complete and fit to print on one line."""


class ConfigError(BenchError):
    """A configuration value is missing or not allowed.

    The message names the field (a dotted path), the bad value and what is allowed.
    """

    def __init__(self, field: str, value: Any, allowed: str, *, source: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field} = {_show(value)} is not allowed; expected {allowed}")


class SchedulerError(BenchError):
    """A scheduler broke the interface contract (bad output, unknown name, failing hook)."""


class BundleError(BenchError):
    """A result bundle cannot be written, read or replayed."""


def _show(value: Any) -> str:
    if value is _MISSING:
        return "<missing>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
MISSING = _MISSING


def one_line(what: str | BaseException, width: int | None = None, *, line: Literal["all", "first", "last"] = "all",
             typed: bool = False) -> str:
    """`what` (a text, or an exception's message) as one line fit to print after "error:", for messages that come
    from libraries, Ray or a child process, whose text the suite does not control.

    Runs of whitespace (newlines included) become one space and characters that are not printable become spaces, so
    no message can break the line or move the terminal's cursor. `line`: "all" keeps the whole message; "first" or
    "last" keeps only that non-empty line (polars and json say what is wrong first; Ray puts the cause last, after a
    traceback). `typed` puts the exception's type in front ("OSError: ..."); an exception without a message reads as
    its type's name. `width` cuts the message to that many characters, after a whole sentence where one ends in
    reach (Ray's long explanations), else with "...".
    """
    text = str(what)
    if line != "all":
        lines = [ln for ln in text.splitlines() if ln.strip()]
        text = (lines[0] if line == "first" else lines[-1]) if lines else ""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if width is not None and len(text) > width:
        end = text.rfind(". ", 20, width)
        text = text[: end + 1] if end > 0 else text[: max(width - 3, 0)] + "..."
    if isinstance(what, BaseException) and (typed or not text):
        text = f"{type(what).__name__}: {text}" if text else type(what).__name__
    return text


def first_line(exc: BaseException, width: int = 300) -> str:
    """An exception from a library as one line of at most `width` characters (`one_line` of its whole message)."""
    return one_line(exc, width)
