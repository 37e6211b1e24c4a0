"""Typed configuration: frozen dataclasses whose fields carry help text and limits.

One small loader turns a plain dict (from TOML, JSON or `--set key=value` overrides) into those
dataclasses, rejecting unknown keys, wrong types and out-of-range values with a `ConfigError` that
names the dotted field, the bad value and what is allowed. The same field metadata documents the
TOML files and the command line, so there is one source of truth for every option.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from bench.core.errors import MISSING, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["option", "from_dict", "to_dict", "canonical_hash", "apply_overrides", "parse_override", "tomllib"]


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    interval: Literal["half-open", "closed"] | None = None,
) -> Any:
    """A dataclass field with help text and limits.

    `ge`/`gt`/`le` bound every number in the value (each element of a list or range).
    `interval` marks a two-element range: "half-open" is [low, high) and needs low < high,
    "closed" is [low, high] and needs low <= high.
    """
    metadata = {"help": help, "ge": ge, "gt": gt, "le": le, "interval": interval}
    return dataclasses.field(default=default, metadata=metadata)


def from_dict(cls: type, data: Any, path: str = "", *, source: str | None = None) -> Any:
    """Build the dataclass `cls` from `data`, validating every field; see the module docstring."""
    return _convert_dataclass(cls, data, path, source)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert_dataclass(cls: type, data: Any, path: str, source: str | None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(path or "<root>", data, f"a table of {_field_list(cls)}", source=source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(_join(path, str(key)), data[key], f"a known key (unknown key; allowed keys: {', '.join(fields)})", source=source)
    kwargs = {}
    for name, f in fields.items():
        where = _join(path, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], where, f.metadata, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(where, MISSING, f"a value (required: {f.metadata.get('help', name)})", source=source)
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:
        # __post_init__ checks name fields relative to their own table; make them absolute.
        raise ConfigError(_join(path, exc.field), exc.value, exc.allowed, source=exc.source or source) from None
    return obj


def _field_list(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls) if f.init)


def describe(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    origin = get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer" + _bounds(meta)
    if tp is float:
        return "a number" + _bounds(meta)
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a, meta) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}{_bounds(meta)}"
        interval = meta.get("interval")
        if interval == "half-open":
            return f"[low, high], two {_plural(args[0])}{_bounds(meta)} with low < high (uniform in [low, high))"
        if interval == "closed":
            return f"[low, high], two {_plural(args[0])}{_bounds(meta)} with low <= high (both included)"
        return f"a list of {len(args)} values"
    if dataclasses.is_dataclass(tp):
        return f"a table of {_field_list(tp)}"
    return str(tp)


def _plural(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return f"tables of {_field_list(tp)}"
    return {int: "integers", float: "numbers", str: "strings"}.get(tp, str(tp))


def _bounds(meta: typing.Mapping[str, Any]) -> str:
    parts = []
    if meta.get("gt") is not None:
        parts.append(f"> {meta['gt']:g}")
    if meta.get("ge") is not None:
        parts.append(f">= {meta['ge']:g}")
    if meta.get("le") is not None:
        parts.append(f"<= {meta['le']:g}")
    return (" " + " and ".join(parts)) if parts else ""


def _check_bounds(value: float, where: str, meta: typing.Mapping[str, Any], tp: Any, source: str | None) -> None:
    gt, ge, le = meta.get("gt"), meta.get("ge"), meta.get("le")
    if (gt is not None and not value > gt) or (ge is not None and not value >= ge) or (le is not None and not value <= le):
        raise ConfigError(where, value, describe(tp, meta), source=source)


def _convert(tp: Any, value: Any, where: str, meta: typing.Mapping[str, Any], source: str | None) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        errors = []
        for option_type in options:
            try:
                return _convert(option_type, value, where, meta, source)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(where, value, describe(tp, meta), source=source)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(where, value, describe(tp, meta), source=source)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, value, describe(tp, meta), source=source)
        _check_bounds(value, where, meta, tp, source)
        return value
    if tp is float:
        if not finite_number(value):
            raise ConfigError(where, value, "a finite " + describe(tp, meta)[2:], source=source)
        _check_bounds(value, where, meta, tp, source)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(where, value, describe(tp, meta), source=source)
        return value
    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool):
            raise ConfigError(where, value, describe(tp, meta), source=source)
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(where, value, describe(tp, meta), source=source)
        if len(args) == 2 and args[1] is Ellipsis:
            if len(value) == 0:
                raise ConfigError(where, value, "a non-empty " + describe(tp, meta)[2:], source=source)
            elem_meta = {k: v for k, v in meta.items() if k != "interval"}
            return tuple(_convert(args[0], v, f"{where}[{i}]", elem_meta, source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(where, list(value), describe(tp, meta), source=source)
        elem_meta = {k: v for k, v in meta.items() if k != "interval"}
        try:
            out = tuple(_convert(a, v, f"{where}[{i}]", elem_meta, source) for i, (a, v) in enumerate(zip(args, value)))
        except ConfigError as exc:
            raise ConfigError(where, list(value), describe(tp, meta), source=source) from exc
        interval = meta.get("interval")
        if (interval == "half-open" and not out[0] < out[1]) or (interval == "closed" and not out[0] <= out[1]):
            raise ConfigError(where, list(value), describe(tp, meta) + " (this range is empty)", source=source)
        return out
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, where, source)
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug in the schema, not user input


def finite_number(x: Any) -> bool:
    """Whether `x` is a number a config or record may hold: an int or a float, not a bool (True is 1 to Python),
    neither NaN nor infinite, and within a float's range (JSON and TOML integers have no limit; float() of a larger
    one raises OverflowError, which is no one-line error)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def to_dict(obj: Any) -> Any:
    """The plain-data form of a config: tables, lists, numbers; fields set to None are left out."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    return obj


def canonical_hash(data: Any) -> str:
    """SHA-256 of the canonical JSON form (sorted keys, no whitespace): stable across formatting."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `a.b.c=value`; the value is read as a TOML value (`3`, `2.5`, `[1, 30]`, `true`) or else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", text, "KEY=VALUE with a dotted KEY such as servers.count=4")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    """Return a deep copy of `data` with each `key=value` override applied (validation happens later).

    A part `name[i]` selects element i of a list of tables: `tasks.mix[0].weight=2`."""
    out = json.loads(json.dumps(data))
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        for i, part in enumerate(parts):
            name, index = _split_index(part, text)
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if index is None:
                if last:
                    node[name] = value
                    break
                child = node.get(name)
                if child is None:
                    child = node[name] = {}
                elif not isinstance(child, dict):
                    raise ConfigError(where, child, "a table (it has no sub-keys to set)")
                node = child
                continue
            items = node.get(name)
            if not isinstance(items, list) or not 0 <= index < len(items):
                size = len(items) if isinstance(items, list) else 0
                raise ConfigError(where, index, f"an index of the list {name} (0..{size - 1})" if size else f"an index of an existing list ({name} has none)")
            if last:
                items[index] = value
                break
            if not isinstance(items[index], dict):
                raise ConfigError(where, items[index], "a table (it has no sub-keys to set)")
            node = items[index]
    return out


def _split_index(part: str, text: str) -> tuple[str, int | None]:
    if not part.endswith("]"):
        return part, None
    name, _, index = part[:-1].partition("[")
    if not name or not index.isdigit():
        raise ConfigError("--set", text, "KEY=VALUE where a list element is written name[i] with i >= 0")
    return name, int(index)
