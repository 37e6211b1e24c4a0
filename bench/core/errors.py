"""Errors that reach the user as one line (the command line prints them without a traceback)."""

from __future__ import annotations

from typing import Any


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
