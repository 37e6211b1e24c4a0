"""Request traces: the suite's canonical format, converters from public traces, episode windows and time scaling.

Canonical format (docs/workloads.md), Parquet or CSV, one row per request:

    arrival_s   float  required  seconds from the trace start, finite, >= 0
    origin      int    optional  base station that received the request, >= 0
    model       str    optional  model id as the source names it (e.g. an anonymised checkpoint id)
    steps       int    optional  denoising steps, >= 1
    images      int    optional  images per request, >= 1
    width       int    optional  image width in px, >= 1
    height      int    optional  image height in px, >= 1
    deadline_s  float  optional  delay objective in seconds, > 0 (blank: none)

Reading validates every row and stops at the first bad one with one line naming the data row (1-based) and the
column; rows are then sorted stably by arrival time (ties keep file order). Converters turn the user's copy of a
public trace into this format (`bench trace import`); every rule they apply is stated in docs/workloads.md and
their report counts what each rule dropped. Files are written atomically, never over an existing file unless asked.

Replay helpers: `episode_windows` cuts a trace into fixed-length training and evaluation windows from disjoint time
ranges (evaluation strictly later); `speed_up` and `rescale_to_rate` change the time scale (load);
`model_ranks` and `map_by_rank` map the trace's model ids onto the zoo's architectures by popularity.
`TraceConfig` states all of this in a scenario, and `replay_windows` applies it.
"""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from bench.core.arrays import read_only
from bench.core.config import option
from bench.core.errors import MISSING, ConfigError, one_line
from bench.core.io import staged, write_parquet

__all__ = [
    "COLUMNS",
    "FORMAT_VERSION",
    "SOURCE_FORMATS",
    "SHIPPED_TRACES",
    "TraceError",
    "Trace",
    "TraceConfig",
    "ImportReport",
    "Window",
    "Windows",
    "read_trace",
    "write_trace",
    "trace_sha256",
    "import_trace",
    "convert_trace",
    "shipped_trace",
    "resolve_trace",
    "episode_windows",
    "window_trace",
    "replay_windows",
    "request_rate",
    "speed_up",
    "rescale_to_rate",
    "model_ranks",
    "map_by_rank",
    "model_rank_index",
]

FORMAT_VERSION = "1"

# column -> (kind, what is allowed)
COLUMNS: dict[str, tuple[str, str]] = {
    "arrival_s": ("time", "a finite number of seconds >= 0"),
    "origin": ("int0", "an integer >= 0"),
    "model": ("str", "a non-empty model id"),
    "steps": ("int1", "an integer >= 1"),
    "images": ("int1", "an integer >= 1"),
    "width": ("int1", "an integer >= 1 (px)"),
    "height": ("int1", "an integer >= 1 (px)"),
    "deadline_s": ("deadline", "a number of seconds > 0, or blank for none"),
}
REQUIRED = ("arrival_s",)

SOURCE_FORMATS = ("gentd26", "azure-llm-2023")

SHIPPED_TRACES: dict[str, str] = {
    "azure-llm-2023-code": "azure_llm_2023_code.parquet",
    "azure-llm-2023-conv": "azure_llm_2023_conv.parquet",
}

GENTD26_TYPES = ("TXT_2_IMG", "IMG_2_IMG", "INPAINTING")
GENTD26_STATUSES = ("SUCCEED", "FAILED", "PENDING", "PROCESSING")
GENTD26_TIME = "%Y-%m-%d %H:%M:%S"
GENTD26_COLUMNS = ("gmt_create", "predict_type", "predict_status", "num_images_per_prompt", "num_inference_steps", "checkpoint_model_version_id")
AZURE_COLUMNS = ("TIMESTAMP",)
AZURE_TIME = "%Y-%m-%d %H:%M:%S%.f"


class TraceError(ConfigError):
    """A trace file (or a value in it) is not allowed: one line naming the file, the data row (1-based) and the column.

    `row` and `column` are None where the problem is not in one row or one column (then `field` names it)."""

    def __init__(self, source: str | Path, column: str | None, value, allowed: str, *, row: int | None = None, field: str = "file"):
        self.row = row
        self.column = column
        parts = ([f"row {row}"] if row is not None else []) + ([f"column {column}"] if column is not None else [])
        super().__init__(", ".join(parts) or field, value, allowed, source=str(source))


@dataclass(frozen=True, eq=False)
class Trace:
    """Requests in arrival order: one array per canonical column (None where the trace lacks the column)."""

    arrival_s: np.ndarray  # float64, ascending
    origin: np.ndarray | None = None  # int64
    model: np.ndarray | None = None  # str
    steps: np.ndarray | None = None  # int64
    images: np.ndarray | None = None  # int64
    width: np.ndarray | None = None  # int64
    height: np.ndarray | None = None  # int64
    deadline_s: np.ndarray | None = None  # float64, inf where there is none
    metadata: Mapping[str, str] = field(default_factory=dict)  # provenance (source file, its SHA-256, import rules)

    @property
    def n_requests(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in COLUMNS if getattr(self, c) is not None)

    @property
    def span_s(self) -> float:
        """Time from the first to the last arrival."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if self.n_requests else 0.0

    def take(self, index) -> "Trace":
        """The requests at `index` (a slice, a boolean mask or ascending row numbers), in order."""
        return replace(self, **{c: getattr(self, c)[index] for c in self.columns})

    def to_frame(self) -> pl.DataFrame:
        data = {}
        for c in self.columns:
            values = getattr(self, c)
            if c == "deadline_s":
                data[c] = pl.Series(c, values, dtype=pl.Float64).replace(float("inf"), None)
            elif c == "model":
                data[c] = pl.Series(c, values.astype(str), dtype=pl.String)
            else:
                data[c] = pl.Series(c, values, dtype=pl.Float64 if c == "arrival_s" else pl.Int64)
        return pl.DataFrame(data)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, *, source: str | Path = "<trace>", metadata: Mapping[str, str] | None = None) -> "Trace":
        """Validate a table in the canonical format (see the module docstring) and sort it stably by arrival time."""
        unknown = [c for c in frame.columns if c not in COLUMNS]
        if unknown:
            raise TraceError(source, None, unknown[0], f"one of the known columns: {', '.join(COLUMNS)}", field="column")
        for c in REQUIRED:
            if c not in frame.columns:
                raise TraceError(source, c, MISSING, f"a column {c} ({COLUMNS[c][1]}; it is required)")
        if frame.height == 0:
            raise TraceError(source, None, 0, "at least one request (the file has a header but no rows)", field="rows")
        arrays = {c: _parse_column(frame[c], COLUMNS[c][0], COLUMNS[c][1], source) for c in COLUMNS if c in frame.columns}
        order = np.argsort(arrays["arrival_s"], kind="stable")
        if np.any(order[1:] < order[:-1]):
            arrays = {c: a[order] for c, a in arrays.items()}
        return cls(**{c: read_only(a) for c, a in arrays.items()}, metadata=dict(metadata or {}))


# --- reading and writing ----------------------------------------------------------------------------------

def read_trace(path: str | Path) -> Trace:
    """Read and validate a canonical trace (.parquet or .csv); see the module docstring."""
    path = Path(path)
    data = _read_bytes(path)
    kind = _kind(path)
    metadata: dict[str, str] = {}
    if kind == "csv":
        frame = _read_csv(data, path)
    else:
        try:
            frame = pl.read_parquet(data)
            metadata = {k: v for k, v in pl.read_parquet_metadata(data).items() if not k.startswith("ARROW:")}
        except pl.exceptions.PolarsError as exc:
            raise TraceError(path, None, one_line(exc, line="first"), "a readable Parquet file") from None
    return Trace.from_frame(frame, source=path, metadata=metadata)


def write_trace(trace: Trace, path: str | Path, *, force: bool = False, metadata: Mapping[str, str] | None = None) -> Path:
    """Write a trace atomically (temporary file + rename) as Parquet (zstd, with key-value metadata) or CSV.

    An existing file is replaced only with force; nothing is left behind on error. CSV carries no metadata."""
    path = Path(path)
    kind = _kind(path)
    check_out_path(path, force)
    frame = trace.to_frame()
    meta = {"trace_format_version": FORMAT_VERSION, **trace.metadata, **(metadata or {})}
    try:
        with staged(path) as tmp:
            if kind == "parquet":
                write_parquet(frame, tmp, compression="zstd", compression_level=19, statistics=False, metadata=meta)
            else:
                frame.write_csv(tmp)
    except OSError as exc:
        raise ConfigError("out", str(path), f"a file that can be written (writing failed: {exc.strerror or one_line(exc, line='first')})") from None
    return path


def check_out_path(path: str | Path, force: bool) -> None:
    """Refuse an output path that exists (unless force) or whose directory does not."""
    path = Path(path)
    _kind(path)
    if path.exists() and (not force or not path.is_file()):
        raise ConfigError("out", str(path), "a path that does not exist yet (use --force to replace a file)" if not force else "a file path (it is a directory)")
    if not path.parent.is_dir():
        raise ConfigError("out", str(path), "a path in an existing directory")


def trace_sha256(path: str | Path) -> str:
    """SHA-256 of a trace file's bytes (for manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_trace(name: str) -> Path:
    """Path of a trace shipped with the suite (SHIPPED_TRACES; attribution in tasks/data/AZURE_LLM_2023_NOTICE.md)."""
    if name not in SHIPPED_TRACES:
        raise ConfigError("trace", name, f"one of the shipped traces: {', '.join(SHIPPED_TRACES)}")
    return Path(str(resources.files("tasks").joinpath("data", SHIPPED_TRACES[name])))


MAX_TRACE_BYTES = 2 * 2**30  # a trace file larger than this is refused before it is read


def resolve_trace(name_or_path: str | Path) -> Path:
    """A shipped trace's name, or a path to a canonical trace file: an existing regular .parquet or .csv file of at
    most MAX_TRACE_BYTES, outside /proc, /sys and /dev (a scenario in an untrusted bundle names this path)."""
    if isinstance(name_or_path, str) and name_or_path in SHIPPED_TRACES:
        return shipped_trace(name_or_path)
    path = Path(name_or_path)
    allowed = f"a shipped trace ({', '.join(SHIPPED_TRACES)}) or the path of a .parquet or .csv trace file"
    try:
        info = path.stat()
        real = path.resolve()
    except OSError:
        raise ConfigError("trace", str(name_or_path), allowed) from None
    if path.suffix.lower() not in (".parquet", ".csv") or not stat.S_ISREG(info.st_mode) or real.parts[1:2] in (("proc",), ("sys",), ("dev",)):
        raise ConfigError("trace", str(name_or_path), allowed)
    if info.st_size > MAX_TRACE_BYTES:
        raise ConfigError("trace", str(name_or_path), f"a trace file of at most {MAX_TRACE_BYTES:,} bytes (it has {info.st_size:,})")
    return path


# --- importing public traces ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportReport:
    """What an import read, kept and dropped (by reason, in rule order), and what it wrote."""

    source_format: str
    source: str  # file name only (no machine paths in metadata)
    source_sha256: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int]
    duplicates: int  # kept rows that repeat an earlier kept row field for field (kept unless drop_duplicates)
    span_s: float
    rules: str
    out: Path | None = None
    out_sha256: str | None = None


def import_trace(
    source_format: str,
    src: str | Path,
    out: str | Path,
    *,
    force: bool = False,
    keep_types: Sequence[str] | None = None,
    keep_statuses: Sequence[str] | None = None,
    drop_duplicates: bool = False,
) -> ImportReport:
    """Convert the user's copy of a public trace to the canonical Parquet format at `out` (atomically)."""
    out = Path(out)
    if _kind(out) != "parquet":
        raise ConfigError("out", str(out), "a .parquet path (the import records its source's SHA-256 in Parquet metadata)")
    check_out_path(out, force)
    trace, report = convert_trace(source_format, src, keep_types=keep_types, keep_statuses=keep_statuses, drop_duplicates=drop_duplicates)
    write_trace(trace, out, force=force)
    return replace(report, out=out, out_sha256=trace_sha256(out))


def convert_trace(
    source_format: str,
    src: str | Path,
    *,
    keep_types: Sequence[str] | None = None,
    keep_statuses: Sequence[str] | None = None,
    drop_duplicates: bool = False,
) -> tuple[Trace, ImportReport]:
    """Read a public trace in its raw format and return the canonical trace and the import report (nothing written)."""
    src = Path(src)
    if source_format not in SOURCE_FORMATS:
        raise ConfigError("format", source_format, f"one of {', '.join(SOURCE_FORMATS)}")
    if source_format != "gentd26" and (keep_types or keep_statuses):
        raise ConfigError("keep", list(keep_types or keep_statuses), "to be absent unless format = gentd26 (only GenTD26 has request types and statuses)")
    needed = GENTD26_COLUMNS if source_format == "gentd26" else AZURE_COLUMNS
    raw, header, sha = _scan_source(src, needed)
    if raw.height == 0:
        raise TraceError(src, None, 0, "at least one request (the file has a header but no rows)", field="rows")
    if source_format == "gentd26":
        _require_columns(header, GENTD26_COLUMNS, src, "GenTD26 lora_request_trace.csv")
        return _convert_gentd26(raw, src, sha, keep_types, keep_statuses, drop_duplicates)
    _require_columns(header, AZURE_COLUMNS, src, "Azure LLM inference trace 2023 (TIMESTAMP, ContextTokens, GeneratedTokens)")
    return _convert_azure(raw, src, sha, drop_duplicates)


def _convert_gentd26(raw, src, sha, keep_types, keep_statuses, drop_duplicates):
    types = _keep_set(keep_types, ("TXT_2_IMG",), GENTD26_TYPES, raw["predict_type"], "keep_types")
    statuses = _keep_set(keep_statuses, ("SUCCEED",), GENTD26_STATUSES, raw["predict_status"], "keep_statuses")
    created = _parse_time(raw["gmt_create"], GENTD26_TIME, "YYYY-MM-DD HH:MM:SS", src)
    steps = _parse_number(raw["num_inference_steps"], src, "a number of denoising steps")
    images = _parse_number(raw["num_images_per_prompt"], src, "a number of images")
    model = raw["checkpoint_model_version_id"]

    n = raw.height
    keep = np.ones(n, dtype=bool)
    dropped: dict[str, int] = {}
    drop = _dropper(keep, dropped)
    for column, allowed in (("predict_type", types), ("predict_status", statuses)):
        values = raw[column].fill_null("")  # compared in polars: no Python string per row
        for value in values.filter(~values.is_in(sorted(allowed))).unique().sort().to_list():
            drop((values == value).to_numpy(), f"{column} = {value or '<blank>'}")
    for column, values in (("gmt_create", created), ("num_inference_steps", steps), ("num_images_per_prompt", images), ("checkpoint_model_version_id", model)):
        drop(values.is_null().to_numpy(), f"blank {column}")
    duplicates = _drop_duplicates(raw, keep, drop_duplicates, drop)
    if not keep.any():
        raise TraceError(src, None, 0, f"at least one kept request (read {n}; dropped {_reasons(dropped)})", field="rows kept")

    rows = np.flatnonzero(keep)
    steps_np = _whole(steps.to_numpy()[rows], rows, src, "num_inference_steps", "an integer >= 1")
    images_np = _whole(images.to_numpy()[rows], rows, src, "num_images_per_prompt", "an integer >= 1")
    t = created.to_numpy()[rows]
    start = t.min()
    arrival = (t - start).astype("timedelta64[ns]").astype(np.int64) / 1e9
    trace = _sorted_trace(arrival, model=_strings(model.gather(rows)), steps=steps_np, images=images_np)
    rules = (f"predict_type in {{{', '.join(sorted(types))}}}; predict_status in {{{', '.join(sorted(statuses))}}}; "
             f"rows with a blank gmt_create, num_inference_steps, num_images_per_prompt or checkpoint_model_version_id dropped; "
             f"exact duplicates {'dropped' if drop_duplicates else 'kept'}; arrival_s = gmt_create - first kept gmt_create")
    report = ImportReport("gentd26", src.name, sha, n, int(keep.sum()), dropped, duplicates, trace.span_s, rules)
    meta = _import_metadata(report, first_time=str(np.datetime_as_string(start, unit="s")).replace("T", " "))
    return replace(trace, metadata=meta), report


def _convert_azure(raw, src, sha, drop_duplicates):
    stamp = _parse_time(raw["TIMESTAMP"], AZURE_TIME, "YYYY-MM-DD HH:MM:SS.fffffff", src)
    n = raw.height
    keep = np.ones(n, dtype=bool)
    dropped: dict[str, int] = {}
    drop = _dropper(keep, dropped)
    drop(stamp.is_null().to_numpy(), "blank TIMESTAMP")
    duplicates = _drop_duplicates(raw, keep, drop_duplicates, drop)
    if not keep.any():
        raise TraceError(src, None, 0, f"at least one kept request (read {n}; dropped {_reasons(dropped)})", field="rows kept")
    t = stamp.to_numpy()[keep]
    start = t.min()
    trace = _sorted_trace((t - start).astype("timedelta64[ns]").astype(np.int64) / 1e9)
    rules = (f"rows with a blank TIMESTAMP dropped; exact duplicates {'dropped' if drop_duplicates else 'kept'}; "
             "arrival_s = TIMESTAMP - first TIMESTAMP; token counts not kept")
    report = ImportReport("azure-llm-2023", src.name, sha, n, int(keep.sum()), dropped, duplicates, trace.span_s, rules)
    meta = _import_metadata(report, first_time=str(np.datetime_as_string(start, unit="us")).replace("T", " "))
    return replace(trace, metadata=meta), report


def _strings(series: pl.Series) -> np.ndarray:
    """A string column as a numpy str array, through its distinct values (a Python object per distinct value, not
    per row: millions of rows of a few thousand model ids)."""
    distinct = np.unique(series.unique().to_numpy().astype(str))
    codes = series.replace_strict(list(distinct), list(range(len(distinct))), return_dtype=pl.UInt32).to_numpy()
    return distinct[codes]


def _dropper(keep: np.ndarray, dropped: dict[str, int]):
    """drop(mask, reason): un-keep the rows of mask still kept and count them under reason (first reason wins)."""

    def drop(mask: np.ndarray, reason: str) -> None:
        hit = mask & keep
        if hit.any():
            dropped[reason] = dropped.get(reason, 0) + int(hit.sum())
            keep[hit] = False

    return drop


def _drop_duplicates(raw: pl.DataFrame, keep: np.ndarray, drop_them: bool, drop) -> int:
    """Kept rows equal, field for field, to an earlier kept row: counted, and dropped if asked."""
    kept = np.flatnonzero(keep)
    repeat = np.zeros(keep.size, dtype=bool)
    h0, h1 = (raw[h].to_numpy()[kept] for h in ROW_HASH)
    order = np.lexsort((h1, h0))  # stable: the first of equal rows keeps its place
    same = (h0[order[1:]] == h0[order[:-1]]) & (h1[order[1:]] == h1[order[:-1]])
    repeat[kept[order[1:][same]]] = True
    if drop_them:
        drop(repeat, "exact duplicate of an earlier kept row")
    return int(repeat.sum())


def _import_metadata(report: ImportReport, first_time: str) -> dict[str, str]:
    return {
        "source_format": report.source_format,
        "source_file": report.source,
        "source_sha256": report.source_sha256,
        "source_first_time": first_time,
        "import_rules": report.rules,
        "rows_read": str(report.rows_read),
        "rows_kept": str(report.rows_kept),
        "rows_dropped": _reasons(report.dropped),
    }


def _reasons(dropped: Mapping[str, int]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in dropped.items()) or "none"


def _keep_set(chosen, default, known, column: pl.Series, name: str) -> frozenset[str]:
    present = set(column.drop_nulls().unique().to_list())
    if not chosen:
        return frozenset(default)
    if "all" in chosen:
        return frozenset(present | set(known))
    allowed = sorted(set(known) | present)
    for value in chosen:
        if value not in allowed:
            raise ConfigError(name, value, f"one of {', '.join(allowed)} or all")
    return frozenset(chosen)


def _require_columns(header: Sequence[str], required: Iterable[str], src, what: str) -> None:
    for c in required:
        if c not in header:
            raise TraceError(src, c, MISSING, f"a column of the {what} (the header has: {', '.join(header)})")


NS_RANGE = "between 1677-09-22 and 2262-04-11 (nanosecond timestamps)"


def _parse_time(values: pl.Series, fmt: str, shown: str, src) -> pl.Series:
    parsed = values.str.to_datetime(fmt, time_unit="ns", strict=False)
    bad = (values.is_not_null() & parsed.is_null()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TraceError(src, values.name, values[row], f"a timestamp {shown}", row=row + 1)
    # a date outside the nanosecond range wraps around silently (9999-12-31 became 1.94e9 s after 0001-01-01):
    # the same text read in microseconds, which reach every year, must agree
    wide = values.str.to_datetime(fmt, time_unit="us", strict=False)
    wrapped = (parsed.dt.cast_time_unit("us") != wide).fill_null(False).to_numpy()
    if wrapped.any():
        row = int(np.flatnonzero(wrapped)[0])
        raise TraceError(src, values.name, values[row], f"a timestamp {NS_RANGE}", row=row + 1)
    return parsed


def _parse_number(values: pl.Series, src, what: str) -> pl.Series:
    parsed = values.cast(pl.Float64, strict=False)
    bad = (values.is_not_null() & (parsed.is_null() | parsed.is_nan())).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TraceError(src, values.name, values[row], what, row=row + 1)
    return parsed


def _whole(x: np.ndarray, rows: np.ndarray, src, column: str, allowed: str) -> np.ndarray:
    bad = ~(np.isfinite(x) & (x >= 1) & (x == np.floor(x)) & (x < 2**53))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(src, column, _plain(x[i]), allowed, row=int(rows[i]) + 1)
    return x.astype(np.int64)


def _sorted_trace(arrival: np.ndarray, **columns) -> Trace:
    order = np.argsort(arrival, kind="stable")
    return Trace(arrival_s=read_only(arrival[order]), **{k: read_only(v[order]) for k, v in columns.items()})


# --- episode windows and time scaling ---------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """One episode: the requests with start_s <= arrival_s < end_s, rows [first, stop) of the trace."""

    start_s: float
    end_s: float
    first: int
    stop: int

    @property
    def count(self) -> int:
        return self.stop - self.first


@dataclass(frozen=True)
class Windows:
    """Training windows tile [first arrival, split_s); evaluation windows tile [split_s, last arrival]."""

    train: tuple[Window, ...]
    eval: tuple[Window, ...]
    split_s: float
    window_s: float
    skipped: int  # whole windows left out for holding fewer than min_requests requests


@dataclass(frozen=True, kw_only=True)
class TraceConfig:
    """A replayed trace as a scenario states it: which trace, its time scale, and how it is cut into episodes."""

    source: str = option(
        help="a shipped trace (azure-llm-2023-code, azure-llm-2023-conv) or the path of a canonical trace file "
        "(.parquet or .csv; bench trace import makes one from a public trace)"
    )
    window_s: float = option(help="episode length in seconds, after time scaling: the trace is cut into windows this long", gt=0)
    train_fraction: float = option(
        0.8, help="share of the trace's time span whose windows are for training; evaluation windows come from the rest, "
        "strictly later (>= 0 and < 1)", ge=0
    )
    min_requests: int = option(1, help="leave out windows with fewer requests than this", ge=0)
    time_scale: float | None = option(None, help="speed the trace up by this factor (2 = twice the rate); absent = as recorded", gt=0)
    rate_per_s: float | None = option(
        None, help="instead of time_scale: rescale time so that the trace's mean arrival rate is this many requests/s", gt=0
    )
    utilisation: float | None = option(
        None, help="instead of time_scale or rate_per_s: rescale time so that the work arriving is this share of the servers' "
        "capacity (the offered load; the engine computes the rate from the scenario's costs)", gt=0
    )
    origin_weights: tuple[float, ...] | None = option(
        None, help="for traces without an origin column: relative share of requests at each base station; absent = uniform", ge=0
    )

    def __post_init__(self) -> None:
        if not self.train_fraction < 1:
            raise ConfigError("train_fraction", self.train_fraction, "a number >= 0 and < 1 (evaluation needs the rest of the trace)")
        scalings = [name for name in ("time_scale", "rate_per_s", "utilisation") if getattr(self, name) is not None]
        if len(scalings) > 1:
            raise ConfigError(scalings[1], getattr(self, scalings[1]), f"to be absent when {scalings[0]} is set (one way to scale time)")
        if self.origin_weights is not None and not (min(self.origin_weights) >= 0 and sum(self.origin_weights) > 0):
            raise ConfigError("origin_weights", list(self.origin_weights), "weights >= 0, at least one of them > 0")


def replay_windows(cfg: TraceConfig, *, rate_per_s: float | None = None) -> tuple[Trace, Windows]:
    """Read the configured trace, scale its time, and cut it into episode windows.

    `rate_per_s` (e.g. computed by the engine from a utilisation and the servers' capacity) overrides the config's
    scaling. Scaling applies to the whole trace before cutting, so windows keep their relative load."""
    trace = read_trace(resolve_trace(cfg.source))
    rate = rate_per_s if rate_per_s is not None else cfg.rate_per_s
    if rate is not None:
        trace = rescale_to_rate(trace, rate)
    elif cfg.time_scale is not None:
        trace = speed_up(trace, cfg.time_scale)
    return trace, episode_windows(trace, cfg.window_s, train_fraction=cfg.train_fraction, min_requests=cfg.min_requests)


def episode_windows(trace: Trace, window_s: float, *, train_fraction: float = 0.8, min_requests: int = 1) -> Windows:
    """Cut a trace into whole windows of window_s seconds for training and evaluation.

    The time from the first to the last arrival is split at split_s = first + train_fraction · span. Training windows
    start at the first arrival and end by split_s; evaluation windows start at split_s and end by the last arrival.
    Windows are half-open, so no request is in two windows, and every evaluation request arrives after every training
    request. A partial window at the end of either range is left out, and so are windows with fewer than
    `min_requests` requests (counted in `skipped`)."""
    if not (np.isfinite(window_s) and window_s > 0):
        raise ConfigError("window_s", window_s, "a finite number of seconds > 0")
    if not 0 <= train_fraction < 1:
        raise ConfigError("train_fraction", train_fraction, "a number >= 0 and < 1 (the share of the trace's time used for training)")
    if isinstance(min_requests, bool) or not isinstance(min_requests, (int, np.integer)) or min_requests < 0:
        raise ConfigError("min_requests", min_requests, "an integer >= 0")
    t = trace.arrival_s
    first, last = float(t[0]), float(t[-1])
    split = first + train_fraction * (last - first)
    skipped = 0

    def tile(lo: float, hi: float) -> tuple[Window, ...]:
        nonlocal skipped
        count = int(np.floor((hi - lo) / window_s + 1e-9))
        starts = lo + window_s * np.arange(count + 1)
        while count and starts[count] > hi:  # floating-point guard: every window ends by hi
            count -= 1
        bounds = np.searchsorted(t, starts[: count + 1], side="left")
        out = []
        for i in range(count):
            if bounds[i + 1] - bounds[i] < min_requests:
                skipped += 1
                continue
            out.append(Window(float(starts[i]), float(starts[i + 1]), int(bounds[i]), int(bounds[i + 1])))
        return tuple(out)

    train = tile(first, split) if train_fraction > 0 else ()
    return Windows(train, tile(split, last), split, float(window_s), skipped)


def window_trace(trace: Trace, window: Window) -> Trace:
    """The requests of one window, with arrival times measured from the window's start."""
    part = trace.take(slice(window.first, window.stop))
    return replace(part, arrival_s=read_only(part.arrival_s - window.start_s))


def request_rate(trace: Trace, duration_s: float | None = None) -> float:
    """Mean arrival rate (requests/s): n / duration_s if given, else (n - 1) / span (one over the mean gap)."""
    if duration_s is not None:
        if not duration_s > 0:
            raise ConfigError("duration_s", duration_s, "a number of seconds > 0")
        return trace.n_requests / duration_s
    if trace.n_requests < 2 or trace.span_s <= 0:
        raise ConfigError("trace", trace.n_requests, "at least two requests at different times to measure a rate")
    return (trace.n_requests - 1) / trace.span_s


def speed_up(trace: Trace, factor: float) -> Trace:
    """Divide every arrival time by factor (> 1: faster, a higher rate; < 1: slower)."""
    if not (np.isfinite(factor) and factor > 0):
        raise ConfigError("time_scale", factor, "a finite number > 0")
    return replace(trace, arrival_s=read_only(trace.arrival_s / factor))


def rescale_to_rate(trace: Trace, rate_per_s: float, duration_s: float | None = None) -> Trace:
    """Scale time so that the mean arrival rate (request_rate) becomes rate_per_s; the order and the relative
    gaps stay. Scale the whole trace once, then cut windows, so windows keep their relative load."""
    if not (np.isfinite(rate_per_s) and rate_per_s > 0):
        raise ConfigError("rate_per_s", rate_per_s, "a finite number > 0")
    return speed_up(trace, rate_per_s / request_rate(trace, duration_s))


def model_ranks(trace: Trace) -> tuple[str, ...]:
    """The trace's model ids, most requested first; equal counts in ascending id order."""
    if trace.model is None:
        raise ConfigError("trace", "no model column", "a trace with a model column to rank models")
    ids, counts = np.unique(trace.model, return_counts=True)  # ids ascending
    order = np.argsort(-counts, kind="stable")
    return tuple(str(i) for i in ids[order])


def model_rank_index(model: np.ndarray, ids_ranked: Sequence[str]) -> np.ndarray:
    """The rank of each request's model in ids_ranked (int64, vectorised); the architecture index is rank % count."""
    ranked = np.asarray(ids_ranked, dtype=str)
    order = np.argsort(ranked, kind="stable")
    pos = np.searchsorted(ranked[order], model)
    pos = np.minimum(pos, ranked.size - 1)
    found = ranked[order][pos] == model
    if not found.all():
        missing = str(np.asarray(model)[~found][0])
        raise ConfigError("model", missing, "a model id among the ranked ids (rank the same trace the requests come from)")
    return order[pos].astype(np.int64)


def map_by_rank(ids_ranked: Sequence[str], architectures: Sequence[str]) -> dict[str, str]:
    """Model id of rank r (0 = most requested) -> architectures[r % len(architectures)]."""
    if not architectures:
        raise ConfigError("architectures", list(architectures), "at least one zoo architecture")
    return {m: architectures[r % len(architectures)] for r, m in enumerate(ids_ranked)}


# --- private helpers --------------------------------------------------------------------------------------

def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise TraceError(path, None, suffix or path.name, "a .parquet or .csv file", field="format")


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ConfigError("path", str(path), "an existing trace file")
    data = path.read_bytes()
    if not data.strip():
        raise TraceError(path, None, "<empty>", "a header line and at least one request")
    return data


def _read_csv(data: bytes, path: Path) -> pl.DataFrame:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    _check_field_counts(data, path)
    try:
        frame = pl.read_csv(data, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise TraceError(path, None, one_line(exc, line="first"), "CSV with a header line and one request per line") from None
    return _clean(frame)


FIELD_CHECK_CHUNK = 32 * 2**20  # bytes per piece of a raw trace read for import: the memory used does not grow with the file
ROW_HASH = ("__row_hash_0", "__row_hash_1")  # two 64-bit hashes of a whole row: duplicates without keeping every column


def _scan_source(path: Path, needed: Sequence[str]) -> tuple[pl.DataFrame, list[str], str]:
    """A raw trace read for import a chunk of lines at a time, never whole: its SHA-256, its field counts, and of
    each chunk only the columns the import uses (stripped, blank as null) and a 128-bit hash of each whole row (for
    exact duplicates). A 490 MB GenTD26 file took 8.8 GiB read whole. A file with quoted fields (which may hold a
    newline) is read whole by polars instead, as before."""
    if not path.is_file():
        raise ConfigError("path", str(path), "an existing trace file")
    digest = hashlib.sha256()
    quoted, blank = False, True
    with open(path, "rb") as f:
        while block := f.read(FIELD_CHECK_CHUNK):
            digest.update(block)
            blank = blank and not block.strip()
            quoted = quoted or b'"' in block
    if blank:
        raise TraceError(path, None, "<empty>", "a header line and at least one request")
    if quoted:
        frame = _read_csv(_read_bytes(path), path)
        return _select(frame, needed), list(frame.columns), digest.hexdigest()
    header, parts, line = None, [], 1  # line: the file's row number of the chunk's first line (the header is row 0)
    for lines in _line_chunks(path):
        if header is None:
            first, _, lines = lines.partition(b"\n")
            header = _header(first, path)
        if not lines.strip(b"\r\n"):
            continue
        _check_field_counts(lines, path, first_row=line, expected=len(header))
        line += lines.count(b"\n") + (not lines.endswith(b"\n"))
        try:
            chunk = pl.read_csv(lines, has_header=False, new_columns=header, infer_schema=False)
        except pl.exceptions.PolarsError as exc:
            raise TraceError(path, None, one_line(exc, line="first"), "CSV with a header line and one request per line") from None
        parts.append(_select(_clean(chunk), needed))
    if header is None:
        raise TraceError(path, None, "<empty>", "a header line and at least one request")
    frame = pl.concat(parts) if parts else _select(_clean(pl.DataFrame(schema={c: pl.String for c in header})), needed)
    return frame, header, digest.hexdigest()


def _line_chunks(path: Path, size: int = FIELD_CHECK_CHUNK):
    """The file's bytes in pieces of whole lines (about `size` bytes each), the UTF-8 byte-order mark dropped."""
    with open(path, "rb") as f:
        rest = f.read(3)
        if rest == b"\xef\xbb\xbf":
            rest = b""
        while True:
            block = f.read(size)
            if not block:
                if rest:
                    yield rest
                return
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield data[: cut + 1]
            rest = data[cut + 1:]


def _header(line: bytes, path: Path) -> list[str]:
    try:
        text = line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        raise TraceError(path, None, "invalid utf-8 sequence", "CSV with a header line and one request per line") from None
    return [c.strip() for c in text.split(",")]


def _clean(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.rename({c: c.strip() for c in frame.columns})
    return frame.with_columns(pl.col(c).str.strip_chars().replace("", None) for c in frame.columns)


def _select(frame: pl.DataFrame, needed: Sequence[str]) -> pl.DataFrame:
    """The columns the import uses and the whole-row hashes (a duplicate row has both equal)."""
    hashes = [pl.struct(pl.all()).hash(seed).alias(name) for seed, name in enumerate(ROW_HASH)]
    return frame.select(*[c for c in frame.columns if c in needed], *hashes)


def _check_field_counts(data: bytes, path: Path, *, first_row: int = 0, expected: int | None = None) -> None:
    """Every line has as many fields as the header (vectorised; skipped when fields are quoted). `data` is the whole
    file (its first line the header) or, with `expected`, a chunk of lines whose first is row `first_row`.
    A blank line is a row of blanks, as polars reads it."""
    if b'"' in data or not data:
        return
    buf = np.frombuffer(data, dtype=np.uint8)
    newline = np.flatnonzero(buf == 10)
    ends = newline if buf[-1] == 10 else np.append(newline, buf.size)
    starts = np.concatenate(([0], ends[:-1] + 1))
    fields = np.add.reduceat((buf == 44).astype(np.int32), starts) + 1 if starts.size else np.zeros(0, np.int64)
    fields[starts == ends] = 1  # reduceat gives the next byte for an empty span
    length = ends - starts - (buf[np.maximum(ends - 1, 0)] == 13)
    header = int(fields[0]) if expected is None else expected
    fields[length <= 0] = header  # blank lines are rows of blanks
    bad = np.flatnonzero(fields != header)
    if bad.size:
        row = first_row + int(bad[0])
        raise TraceError(path, None, f"{int(fields[bad[0]])} fields", f"{header} comma-separated fields, as in the header", row=row)


def _parse_column(series: pl.Series, kind: str, allowed: str, source) -> np.ndarray:
    """One canonical column as a numpy array, or TraceError at its first bad row."""
    name = series.name
    dtype = series.dtype
    if kind == "str":
        if dtype != pl.String:
            raise TraceError(source, name, str(dtype), "strings (model ids)")
        blank = (series.is_null() | (series.str.strip_chars() == "")).fill_null(True)
        _raise_first(blank.to_numpy(), series, source, allowed, shown="")
        return series.to_numpy().astype(str)
    if dtype == pl.String:
        text = series.str.strip_chars()
        blank = (text.is_null() | (text == "")).fill_null(True).to_numpy()
        values = text.cast(pl.Float64, strict=False)
        _raise_first(~blank & values.is_null().to_numpy(), series, source, allowed)
    elif dtype.is_numeric():
        blank = series.is_null().to_numpy()
        values = series.cast(pl.Float64)
    else:
        raise TraceError(source, name, str(dtype), f"numbers ({allowed})")
    values = values.fill_null(np.nan).to_numpy().astype(np.float64)
    if kind == "deadline":
        values = np.where(blank, np.inf, values)
        _raise_first(np.isnan(values) | ~(values > 0), series, source, allowed)
        return values
    _raise_first(blank, series, source, allowed, shown="")
    if kind == "time":
        _raise_first(~(np.isfinite(values) & (values >= 0)), series, source, allowed)
        return values
    low = 1 if kind == "int1" else 0
    _raise_first(~(np.isfinite(values) & (values >= low) & (values == np.floor(values)) & (values < 2**53)), series, source, allowed)
    return values.astype(np.int64)


def _raise_first(bad: np.ndarray, series: pl.Series, source, allowed: str, shown=None) -> None:
    """TraceError at the first bad row, showing its value (or `shown`, e.g. '' for a blank cell)."""
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = _plain(series[row]) if shown is None else shown
        raise TraceError(source, series.name, value, allowed, row=row + 1)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


