"""The narrow channel between the engine and a scheduler that runs in another process: plain arrays, never objects.

The engine stays in the parent; the child holds only the scheduler and what crosses this channel, so nothing in
the child's process refers to the workload, the cost model, the random draws or the engine (a scheduler that
walks the stack, `gc` or module globals finds none of them). Each message is

    8 bytes: lengths of the header and the payloads (little-endian)  |  header: UTF-8 JSON  |  payloads: raw array bytes

where the header names each array's field, dtype (numbers and booleans only) and shape. Nothing is pickled in
either direction; the parent reads from the child only a header of bounded size and arrays of the dtypes and
sizes it expects.

Decision batches and their actions usually take the shared-memory lane instead (lane.py: a fixed binary layout, no
JSON), each message on either path announced there; the pipe carries the rest.

Parent side: `RemoteScheduler`, a `Scheduler` whose hooks forward to the child (with a wall limit per call).
Child side: `serve(scheduler, fd_in, fd_out, lane)`, the loop that answers them.
"""

from __future__ import annotations

import json
import math
import operator
import os
import select
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from functools import cached_property
from typing import Any

import numpy as np

from bench.core import cycle
from bench.core.arrays import read_only
from bench.core.config import finite_number
from bench.core.errors import BenchError, SchedulerError, one_line
from bench.experiments.sandbox.lane import ACTIONS, ANS_N, BATCH, PIPE, SPIN_S, Lane
from schedulers.interface import Batch, EnvInfo, Scheduler, SlotFeedback, encode_actions

MAX_HEADER = 1 << 20  # bytes of JSON the parent reads from the child at most
MAX_ARRAY = 1 << 31  # bytes of one array from the child at most (actions: 8 bytes a task)
NUMERIC = frozenset("biuf")  # dtype kinds allowed on the channel
PACKED = {  # per task or server, always sent: stacked by kind into one array each (fewer arrays to frame and check)
    "task_f": (np.float64, ("size_mbit", "work_gcycles", "result_mbit", "arrival_s", "deadline_s")),
    "task_i": (np.int64, ("origin", "index", "steps", "model", "task_class", "images")),
    "server_f": (np.float64, ("capacity_gcps", "rate_mbps", "backlog_s", "assigned_s")),
}
TABLES = {"costs": ("compute_s", "service_s"), "upload_s": ("upload_s",), "download_s": ("download_s",), "mask": ("mask",),
          "residency": ("resident", "load_s", "held", "free_memory_gb"), "queue": ("waiting", "running"),
          "serving": ("variant_ok", "default_variant", "request_images", "variant_service_s", "variant_load_s", "open_images", "open_since_s")}
# the per-(task, server) tables, computed by the parent only when the scheduler reads them: sent with the batch
# when it read them last time, else asked for (one more round trip) on first use
FIELDS = (*(name for _, names in PACKED.values() for name in names), "worker_free_s")  # a batch's own fields
FIELD_BIT = {name: 1 << i for i, name in enumerate(FIELDS)}
ALL_FIELDS = (1 << len(FIELDS)) - 1
_WORKER_BIT = FIELD_BIT["worker_free_s"]
# in the lane a batch carries the fields its scheduler read so far (all of them, the reads tracked, in its first
# batch); a field it reads for the first time later is asked for, as a table is
LANE_NAMES = ("worker_free_s", "free_at_s", *(name for names in TABLES.values() for name in names))  # the lane's named arrays
_LANE_CODE = {name: i for i, name in enumerate(LANE_NAMES)}
_TABLE_BIT = {table: 1 << i for i, table in enumerate(TABLES)}
_ALL_BITS = (1 << len(TABLES)) - 1
_TABLES_OF = [tuple(t for t, bit in _TABLE_BIT.items() if bits & bit) for bits in range(_ALL_BITS + 1)]  # used bits -> tables


class ChannelError(BenchError):
    """The other side broke the channel's protocol or went away (one line)."""


class Timeout(ChannelError):
    """The child did not answer within the wall limit of one call."""


class Closed(ChannelError):
    """The other side closed the channel (its process ended)."""


# SPIN_S (lane.py): a reader polls this long before it sleeps (waking a sleeping process costs ~50 µs on the machines
# measured, a poll ~3 µs; the other side usually answers within it); one CPU: no polling.


def pipe(size: int = 1 << 20) -> tuple[int, int]:
    """A pipe (read end, write end), both non-blocking (reads and writes wait in select, within their deadline),
    whose buffer holds a whole batch message where the kernel allows (Linux: F_SETPIPE_SZ up to
    /proc/sys/fs/pipe-max-size), so a write does not wait for the reader to drain it."""
    import fcntl

    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size)
    except (OSError, AttributeError):  # not Linux, or above the allowed maximum: the default buffer
        pass
    return r, w


# ---- framing ------------------------------------------------------------------------------------------------------
def send(fd: int, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None, timeout_s: float | None = None) -> None:
    """Write one message: the header gets each array's dtype and shape, the arrays follow as raw bytes. On a
    non-blocking pipe whose reader does not drain it, Timeout after `timeout_s`."""
    write(fd, frame(header, arrays), timeout_s)


def write(fd: int, parts: list, timeout_s: float | None = None) -> None:
    """Write a framed message (`frame`), within `timeout_s` on a non-blocking pipe."""
    _write_all(fd, parts, None if timeout_s is None else time.monotonic() + timeout_s)


def frame(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> list:
    """One message as the parts to write: whatever cannot cross (a dtype, a NaN) fails here, before anything is sent."""
    arrays = arrays or {}
    specs, chunks, size = [], [], 0
    for name, a in arrays.items():
        if not (isinstance(a, np.ndarray) and a.flags.c_contiguous):
            a = np.ascontiguousarray(a).reshape(np.shape(a))  # ascontiguousarray makes a 0-d array 1-d
        if a.dtype.kind not in NUMERIC:
            raise ChannelError(f"{name}: an array of {a.dtype} cannot cross the channel; numbers and booleans only")
        specs.append([name, a.dtype.str, list(a.shape)])
        chunks.append(memoryview(a).cast("B") if a.nbytes else b"")  # memoryview cannot cast a view with a zero in its shape
        size += a.nbytes
    head = json.dumps({**header, "arrays": specs}, allow_nan=False, separators=(",", ":")).encode()
    return [struct.pack("<II", len(head), size), head, *chunks]


def receive(fd: int, timeout_s: float | None = None, *, max_header: int = MAX_HEADER, max_array: int = MAX_ARRAY) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read one message; arrays come back read-only, built from raw bytes of a checked dtype and shape."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    n, size = struct.unpack("<II", _read_exact(fd, 8, deadline))
    if n > max_header:
        raise ChannelError(f"a header of {n:,} bytes; at most {max_header:,} are read")
    if size > max_array:
        raise ChannelError(f"arrays of {size:,} bytes; at most {max_array:,} are read")
    data = memoryview(_read_exact(fd, n + size, deadline)).toreadonly()
    try:
        header = json.loads(bytes(data[:n]), parse_constant=_refuse_constant)
    except RecursionError:
        raise ChannelError("the header is nested too deeply") from None
    except ValueError as exc:
        raise ChannelError(f"the header is not JSON ({one_line(exc, 120)})") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
        raise ChannelError("the header is not an object with a list of arrays")
    arrays, at = {}, n
    for spec in header.pop("arrays", []):
        name, dtype, shape = _spec(spec)
        nbytes = dtype.itemsize * math.prod(shape)
        if at + nbytes > n + size:
            raise ChannelError(f"{name}: its {nbytes:,} bytes are not in the message")
        arrays[name] = np.frombuffer(data[at:at + nbytes], dtype=dtype).reshape(shape)
        at += nbytes
    if at != n + size:
        raise ChannelError(f"the message holds {n + size - at:,} bytes that no array claims")
    return header, arrays


def _refuse_constant(name: str) -> Any:
    raise ChannelError(f"the header holds {name}; only finite numbers are allowed")


_DTYPES: dict[str, np.dtype] = {}  # dtype strings already checked


def _spec(spec: Any) -> tuple[str, np.dtype, tuple[int, ...]]:
    if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[1], str) and isinstance(spec[2], list)):
        raise ChannelError("an array is not [name, dtype, shape]")
    name, dtype, shape = spec
    dt = _DTYPES.get(dtype)
    if dt is None:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise ChannelError(f"{name[:40]}: dtype {dtype[:20]!r} is not a dtype") from None
        if dt.kind not in NUMERIC or dt.hasobject or dt.fields is not None or dt.subdtype is not None:
            raise ChannelError(f"{name[:40]}: dtype {dtype[:20]!r} is not a plain number or boolean")
        if len(_DTYPES) < 64:
            _DTYPES[dtype] = dt
    if len(shape) > 4 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape):
        raise ChannelError(f"{name[:40]}: shape {str(shape)[:60]} is not a short list of sizes")
    return name[:64], dt, tuple(shape)


def _write_all(fd: int, parts: list, deadline: float | None = None) -> None:
    parts = [memoryview(p) for p in parts]
    while parts:
        try:
            n = os.writev(fd, parts)
        except BrokenPipeError:
            raise Closed("the other side closed the channel") from None
        except BlockingIOError:  # the pipe is full: wait until the reader drains it, within the deadline
            _wait(fd, deadline, write=True)
            continue
        while parts and n >= len(parts[0]):
            n -= len(parts.pop(0))
        if n:
            parts[0] = parts[0][n:]


def _wait(fd: int, deadline: float | None, write: bool = False) -> None:
    wait = None if deadline is None else deadline - time.monotonic()
    what = "the other side did not read in time" if write else "no answer in time"
    if wait is not None and wait <= 0:
        raise Timeout(what)
    ready = select.select([], [fd], [], wait)[1] if write else select.select([fd], [], [], wait)[0]
    if not ready:
        raise Timeout(what)


def _read_exact(fd: int, n: int, deadline: float | None = None) -> bytearray:
    """Exactly n bytes, or Timeout when `deadline` (time.monotonic) passes first. A non-blocking fd is polled for
    SPIN_S before the reader sleeps in select."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    spin_until = time.perf_counter() + SPIN_S
    wait_first = deadline is not None and os.get_blocking(fd)  # a blocking fd keeps its deadline by waiting in select first
    while got < n:
        if wait_first:
            _wait(fd, deadline)
        try:
            k = os.readv(fd, [view[got:]])
        except BlockingIOError:
            if time.perf_counter() < spin_until:
                os.sched_yield()  # a process that shares this CPU runs first
                continue
            _wait(fd, deadline)
            continue
        if not k:
            raise Closed("the other side closed the channel")
        got += k
    return buf


# ---- what crosses: plain forms of the interface's objects ---------------------------------------------------------
def info_message(info: EnvInfo) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    scalars, arrays = {}, {}
    for f in fields(info):
        value = getattr(info, f.name)
        (arrays if isinstance(value, np.ndarray) else scalars)[f.name] = value
    return {"info": scalars}, arrays


def info_from(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> EnvInfo:
    scalars = dict(header["info"])
    scalars["models"] = tuple(scalars.get("models") or ())
    scalars["variant_names"] = tuple(scalars.get("variant_names") or ())
    return EnvInfo(**scalars, **arrays)


def batch_message(batch: Batch, tables: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What a batch shows, computed here (in the parent) from the engine's objects: the per-task and per-server
    fields, and the per-(task, server) `tables` named (see TABLES)."""
    arrays = {block: np.stack([getattr(batch, name) for name in names]).astype(dtype, copy=False) for block, (dtype, names) in PACKED.items()}
    arrays.update(_unpacked(batch, tables))
    lo, hi = batch.task_range
    return {"slot": int(batch.slot), "lo": int(lo), "hi": int(hi), "physical": bool(batch.physical), "has_mask": bool(batch.has_mask),
            "n_servers": batch.n_servers}, arrays


def _unpacked(batch: Batch, tables: Iterable[str], fields: int = ALL_FIELDS) -> dict[str, np.ndarray]:
    """What a batch sends beside its PACKED blocks."""
    arrays = {"worker_free_s": batch.worker_free_s} if fields & _WORKER_BIT else {}
    if batch.free_at_s is not None:
        arrays["free_at_s"] = batch.free_at_s
    if tables:
        arrays.update(table_arrays(batch, tables))
    return arrays


class _Rows:
    """The PACKED fields among a set, per block in FIELDS order: the per-task floats, the per-task integers, the
    per-server floats. On the pipe each block is a stacked array (`kept`); in the lane they lie back to back in one
    area, all 8 bytes an item (integers as their bits)."""

    def __init__(self, fields: int):
        self.kept = tuple(tuple(n for n in names if fields & FIELD_BIT[n]) for _, names in PACKED.values())
        self.task_f, self.task_i, self.server_f = self.kept
        names = (*self.task_f, *self.task_i, *self.server_f)
        self.ints = range(len(self.task_f), len(self.task_f) + len(self.task_i))
        self.k_task, self.k_server = len(self.task_f) + len(self.task_i), len(self.server_f)
        self._get = operator.attrgetter(*names) if len(names) > 1 else (lambda batch: (getattr(batch, names[0]),)) if names else (lambda batch: ())

    def rows(self, batch: Batch) -> list[np.ndarray]:
        """The parent's side: the batch's rows, integers as int64 bits in float64 clothing."""
        rows = list(self._get(batch))
        for i in self.ints:
            rows[i] = np.asarray(rows[i], dtype=np.int64).view(np.float64)
        return rows

    def size(self, n_tasks: int, n_servers: int) -> int:
        return self.k_task * n_tasks + self.k_server * n_servers

    def split(self, data: bytes, n: int, b: int) -> dict[str, np.ndarray]:
        """The child's side: the rows out of the area `data` (bytes: the arrays are read-only), one array per kind."""
        rows: dict[str, np.ndarray] = {}
        kf, ki = len(self.task_f), len(self.task_i)
        if kf:
            rows.update(zip(self.task_f, np.frombuffer(data, np.float64, kf * n).reshape(kf, n)))
        if ki:
            rows.update(zip(self.task_i, np.frombuffer(data, np.int64, ki * n, 8 * kf * n).reshape(ki, n)))
        if self.k_server:
            rows.update(zip(self.server_f, np.frombuffer(data, np.float64, self.k_server * b, 8 * (kf + ki) * n).reshape(self.k_server, b)))
        return rows


def _rows_of(fields: int) -> _Rows:
    rows = _ROWS.get(fields)
    if rows is None:
        rows = _Rows(fields)
        if len(_ROWS) < 256:  # the child chooses the sets (by what it reads): the cache stays small whatever it does
            _ROWS[fields] = rows
    return rows


_ROWS: dict[int, _Rows] = {}


def lane_batch(lane: Lane, batch: Batch, tables: Iterable[str], fields: int | None) -> bool:
    """The message of `batch_message`, written into the lane's region (the rows back to back, see _Rows), with
    only the `fields` named (None: all, the child tracking which its scheduler reads); False when it does not fit."""
    lo, hi = batch.task_range
    sent = ALL_FIELDS if fields is None else fields
    plan = _rows_of(sent)
    b = batch.n_servers
    scalars = (int(batch.slot), int(lo), int(hi), int(bool(batch.physical)), int(bool(batch.has_mask)), b, sent, fields is None)
    return lane.write_batch(scalars, hi - lo, plan.rows(batch), plan.size(hi - lo, b), list(_unpacked(batch, tables, sent).items()), _LANE_CODE)


def read_lane_batch(lane: Lane) -> tuple[tuple[int, ...], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The child's side of `lane_batch`: the header scalars, the batch's own fields (those sent) and its other arrays."""
    scalars, data, arrays = lane.read_batch(LANE_NAMES)
    _, lo, hi, _, _, n_servers, fields, _ = scalars
    return scalars, _rows_of(fields & ALL_FIELDS).split(data, hi - lo, n_servers), arrays


def field_arrays(batch: Batch, name: str) -> dict[str, np.ndarray]:
    """One of a batch's own fields, as the batch message carries it."""
    for dtype, names in PACKED.values():
        if name in names:
            return {name: np.asarray(getattr(batch, name)).astype(dtype, copy=False)}
    return {name: getattr(batch, name)}


def table_arrays(batch: Batch, tables: Iterable[str]) -> dict[str, np.ndarray]:
    return {name: getattr(batch, name) for table in tables for name in TABLES[table]}


FORMULA_TABLES = ("costs", "upload_s", "download_s", "mask")  # what the child computes itself in a cycle-cost scenario


def formula_tables(batch: Batch, table: str) -> dict[str, np.ndarray]:
    """A table of the paper's cost formulas from the batch's own fields (EnvInfo.cost_formula == "cycle"): the
    same functions the engine's cost model calls, on the same numbers, so the same bits, and nothing to ship."""
    inv_rate = 1.0 / batch.rate_mbps
    if table == "costs":
        compute, service = cycle.compute_and_service(batch.size_mbit, batch.work_gcycles, batch.result_mbit, batch.origin,
                                                     1.0 / batch.capacity_gcps, inv_rate)
        return {"compute_s": read_only(compute), "service_s": read_only(service)}
    if table == "upload_s":
        return {"upload_s": read_only(cycle.upload_table(batch.size_mbit, batch.origin, inv_rate))}
    if table == "download_s":
        return {"download_s": read_only(cycle.download_table(batch.result_mbit, inv_rate))}
    return {"mask": read_only(np.ones((len(batch), batch.n_servers), dtype=bool))}


class ReceivedBatch(Batch):
    """A batch rebuilt from plain arrays in the scheduler's process: every field a scheduler may read, and no
    workload, cost model or engine behind it. A per-(task, server) table that did not come with it is computed
    here where the scenario's tables are the paper's formulas (`formula`), else asked of the parent on first use
    (`fetch`), as an in-process batch computes it on first use."""

    def __init__(self, scalars: tuple[int, ...], rows: dict[str, np.ndarray], arrays: dict[str, np.ndarray],
                 fetch: Callable[[str], dict[str, np.ndarray]], formula: bool = False):  # noqa: D107
        # scalars: (slot, lo, hi, physical, has_mask, n_servers, fields, track): `fields` the batch's own fields that
        # came in `rows` (the others are asked for on first use); `track`: note which are read (they stay out of the
        # instance until then, where the class's _Field finds them)
        self.slot, self._lo, self._hi, physical, has_mask, self._n_servers, fields, track = scalars
        self.physical, self.has_mask = bool(physical), bool(has_mask)
        if fields & _WORKER_BIT:
            if "worker_free_s" not in arrays:
                raise ChannelError("a batch without 'worker_free_s'")
            rows["worker_free_s"] = arrays["worker_free_s"]
        if track:
            self._rows = rows  # (not the instance's own dict: no reference cycle)
        else:
            self._rows = None
            self.__dict__.update(rows)
        self.fields_read = 0
        self._wl = self._costs = self._state = self._queue = None
        self.free_at_s = arrays.get("free_at_s")
        self._arrays, self._fetch, self.used, self._formula = arrays, fetch, set(), formula
        self.closed = False

    @classmethod
    def from_message(cls, header: dict[str, Any], arrays: dict[str, np.ndarray], fetch: Callable[[str], dict[str, np.ndarray]],
                     formula: bool = False) -> ReceivedBatch:
        """A batch from the pipe's message (`batch_message`: every field, in PACKED blocks)."""
        try:
            fields = int(header.get("fields", ALL_FIELDS)) & ALL_FIELDS
            scalars = (int(header["slot"]), int(header["lo"]), int(header["hi"]), bool(header["physical"]), bool(header["has_mask"]),
                       int(header["n_servers"]), fields, bool(header.get("track")))
            rows = {}
            for block, names in zip(PACKED, _rows_of(fields).kept):
                if names:
                    rows.update(zip(names, arrays[block]))  # rows of a C-ordered stack: contiguous, read-only views
        except KeyError as exc:
            raise ChannelError(f"a batch without {exc}") from None
        return cls(scalars, rows, arrays, fetch, formula)

    @property
    def n_servers(self) -> int:
        return self._n_servers

    def _field(self, name: str) -> np.ndarray:
        """A field not yet in the instance: tracked (it came) or asked for (it did not), and remembered as read."""
        self.fields_read |= FIELD_BIT[name]
        value = None if self._rows is None else self._rows.get(name)
        if value is None:
            if self.closed:
                raise RuntimeError(f"batch {self.slot}: its field {name} was read after its decide returned, for the first time; in a sandbox "
                                   "a batch's fields and tables are sent only while its decide runs (read what you need there)")
            got = self._fetch(name)
            if name not in got:
                raise ChannelError(f"the parent did not send the field {name}")
            value = got[name]
        self.__dict__[name] = value
        return value

    def _table(self, table: str) -> dict[str, np.ndarray]:
        if all(name in self._arrays for name in TABLES[table]):
            self.used.add(table)
            return self._arrays
        if self._formula and table in FORMULA_TABLES and not (table == "mask" and self.has_mask):  # a mask is never a formula
            got = formula_tables(self, table)
            self._arrays.update(got)
            return got
        if self.closed:
            raise RuntimeError(f"batch {self.slot}: its {table} table was read after its decide returned; in a sandbox a batch's tables "
                               "are sent only while its decide runs (read what you need there)")
        self.used.add(table)
        got = self._fetch(table)
        self._arrays.update(got)
        return got

    @cached_property
    def _compute_and_service(self) -> tuple[np.ndarray, np.ndarray]:
        got = self._table("costs")
        return got["compute_s"], got["service_s"]

    @cached_property
    def upload_s(self) -> np.ndarray:
        return self._table("upload_s")["upload_s"]

    @cached_property
    def download_s(self) -> np.ndarray:
        return self._table("download_s")["download_s"]

    @cached_property
    def mask(self) -> np.ndarray:
        return self._table("mask")["mask"]

    @cached_property
    def _residency(self) -> dict[str, np.ndarray]:
        return {name: self._table("residency")[name] for name in TABLES["residency"]}

    @cached_property
    def _queue_counts(self) -> tuple[np.ndarray, np.ndarray]:
        got = self._table("queue")
        return got["waiting"], got["running"]

    @cached_property
    def _serving(self) -> dict[str, np.ndarray]:
        return {name: self._table("serving")[name] for name in TABLES["serving"]}


class _Field:
    """A batch's own field on ReceivedBatch: found in the instance once read; its first read goes to `_field`."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, batch: ReceivedBatch | None, owner: type) -> Any:
        return self if batch is None else batch._field(self.name)


for _name in FIELDS:
    setattr(ReceivedBatch, _name, _Field(_name))


def feedback_message(fb: SlotFeedback) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    scalars, arrays = {}, {}
    for f in fields(fb):
        value = getattr(fb, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        else:
            scalars[f.name] = list(value) if isinstance(value, tuple) else value
    return {"feedback": scalars}, arrays


def feedback_from(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> SlotFeedback:
    scalars = dict(header["feedback"])
    scalars["task_range"] = tuple(scalars["task_range"])
    return SlotFeedback(**scalars, **arrays)


def state_message(state: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A learner's state (nested dicts and lists of tensors, arrays and plain values) as a JSON tree whose tensor
    leaves name arrays that travel beside it."""
    arrays: dict[str, np.ndarray] = {}

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {"$dict": [[plain(k), plain(v)] for k, v in x.items()]}
        if isinstance(x, (list, tuple)):
            return {"$list" if isinstance(x, list) else "$tuple": [plain(v) for v in x]}
        if type(x).__module__ == "torch" and type(x).__name__ == "Tensor":
            name = f"t{len(arrays)}"
            arrays[name] = x.detach().cpu().numpy()
            return {"$tensor": name}
        if isinstance(x, np.ndarray):
            name = f"t{len(arrays)}"
            arrays[name] = x
            return {"$array": name}
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"a state holds a {type(x).__name__}; only tensors, arrays, numbers, text, lists and dicts cross")

    return {"state": plain(state)}, arrays


def state_from(header: dict[str, Any], arrays: dict[str, np.ndarray], depth: int = 0) -> Any:
    """The state a `state_message` carried: tensors as torch tensors (copies), nothing but plain data."""
    import torch

    def build(x: Any, d: int) -> Any:
        if d > 32:
            raise ChannelError("a state nested more than 32 levels deep")
        if isinstance(x, dict) and len(x) == 1:
            (kind, value), = x.items()
            if kind == "$dict" and isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
                out = {}
                for k, v in value:
                    key = build(k, d + 1)
                    if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                        raise ChannelError("a state's dict key is not plain")
                    out[key] = build(v, d + 1)
                return out
            if kind in ("$list", "$tuple") and isinstance(value, list):
                items = [build(v, d + 1) for v in value]
                return items if kind == "$list" else tuple(items)
            if kind in ("$tensor", "$array") and isinstance(value, str) and value in arrays:
                a = np.array(arrays[value])
                return torch.from_numpy(a) if kind == "$tensor" else a
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise ChannelError(f"a state leaf {str(x)[:60]} is not plain data")

    return build(header.get("state"), depth)


# ---- the parent's side --------------------------------------------------------------------------------------------
class RemoteScheduler(Scheduler):
    """A scheduler whose code runs in another process: each hook is one message there and one answer back, within
    `call_s` seconds of wall time (`decide_s` for `decide`). It learns what it is (its class attributes) from the
    child's first answer. A failure of the scheduler's code comes back as one line, as in this process. With a
    `lane` (shared memory, lane.py) batches and actions cross there, everything else on the pipe."""

    def __init__(self, fd_out: int, fd_in: int, who: str, facts: dict[str, Any], *, call_s: float = 600.0, decide_s: float = 60.0,
                 max_state_bytes: int = 1 << 30, lane: Lane | None = None):
        super().__init__(None)
        self.fd_out, self.fd_in, self.who, self.lane = fd_out, fd_in, who, lane
        self.call_s, self.decide_s, self.max_state_bytes = call_s, decide_s, max_state_bytes
        self.tables: tuple[str, ...] = ()  # the tables the child's scheduler read in its last batch
        self.fields: int | None = None  # the batch fields it read so far (None: none seen yet: all sent, reads tracked)
        self.stuck = False
        self.remote_name = facts["scheduler"]
        self.batch_unit = facts["batch_unit"]
        self.event_batches = facts["event_batches"]
        self.learns = facts["learns"]
        self.observes = facts["observes"]
        self.hooks = facts["hooks"]  # the episode hooks its class overrides: the others are no-ops, not worth a round trip

    def _ask(self, op: str, header: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None,
             max_array: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One call: its message, then the answer within the wall limit, at most `max_array` bytes of arrays."""
        deadline = time.monotonic() + self.call_s
        self._send(op, {"op": op, **(header or {})}, arrays, deadline)
        return self._answer(op, deadline - time.monotonic(), max_array)

    def _send(self, op: str, header: dict[str, Any], arrays: dict[str, np.ndarray] | None, deadline: float) -> None:
        """A message to the child, within the call's deadline (a child that stops reading cannot block this side)."""
        try:
            post_send(self.fd_out, self.lane, header, arrays, max(deadline - time.monotonic(), 0.0))
        except Timeout:
            self.stuck = True
            limit = self.decide_s if op == "decide" else self.call_s
            raise SchedulerError(f"{self.who}: {op}() did not return within {limit:g} s (it stopped reading its input)") from None
        except Closed:
            raise SchedulerError(f"{self.who}: {op}(): its process ended without answering") from None

    def _answer(self, op: str, timeout_s: float, max_array: int, n_actions: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The child's answer: a message on the pipe, or (`n_actions` given, after a batch that crossed in the lane)
        its actions in the lane, as the same pair."""
        limit = self.decide_s if op == "decide" else self.call_s
        try:
            if self.lane is not None:
                start = time.monotonic()
                kind = self.lane.wait(self.fd_in, start + max(timeout_s, 0.0))
                timeout_s -= time.monotonic() - start
                if kind == ACTIONS and n_actions is not None:
                    actions, used = self.lane.read_actions(n_actions)
                    if actions is None:
                        raise ChannelError(f"actions for {int(self.lane.ctl[ANS_N]):,} tasks announced for a batch of {n_actions:,}")
                    return {"ok": True, "used": used}, {"actions": actions}
                if kind != PIPE:
                    raise ChannelError(f"the child announced a message of kind {kind} where none such is expected")
            answer, out = receive(self.fd_in, max(timeout_s, 0.0), max_header=64 * 1024, max_array=max_array)
        except (Timeout, TimeoutError):
            self.stuck = True  # the child is still inside that call: nothing more can be asked of it
            raise SchedulerError(f"{self.who}: {op}() did not return within {limit:g} s") from None
        except Closed:
            raise SchedulerError(f"{self.who}: {op}(): its process ended without answering") from None
        except ChannelError as exc:
            raise SchedulerError(f"{self.who}: {op}(): {exc}") from None
        if "error" in answer:
            raise SchedulerError(f"{self.who}: {op}() raised {one_line(str(answer.get('error')), 500)}")
        return answer, out

    def reset(self, info: EnvInfo, rng: np.random.Generator) -> None:
        header, arrays = info_message(info)
        self._ask("reset", {**header, "rng": rng.bit_generator.state}, arrays)

    def begin_episode(self, episode: int, training: bool) -> None:
        if "begin_episode" in self.hooks:
            self._ask("begin_episode", {"episode": int(episode), "training": bool(training)})

    def decide(self, batch: Batch) -> np.ndarray:
        deadline = time.monotonic() + self.decide_s
        in_lane = self.lane is not None and lane_batch(self.lane, batch, self.tables, self.fields)
        if in_lane:
            self.lane.post(BATCH)
        else:
            header, arrays = batch_message(batch, self.tables)
            self._send("decide", {"op": "decide", **header}, arrays, deadline)
        while True:  # the child may ask for tables it did not get before it answers
            answer, out = self._answer("decide", deadline - time.monotonic(), 64 + 16 * len(batch), len(batch) if in_lane else None)
            need = answer.get("need")
            if need is None:
                break
            if need in TABLES:
                self._send("decide", {"table": need}, table_arrays(batch, [need]), deadline)
            elif need in FIELD_BIT:
                self._send("decide", {"field": need}, field_arrays(batch, need), deadline)
            else:
                raise SchedulerError(f"{self.who}: decide() asked for {str(need)[:40]!r}; the tables are {sorted(TABLES)}, the fields {list(FIELDS)}")
        used = answer.get("used")
        if isinstance(used, int) and not isinstance(used, bool) and in_lane:
            self._learn(used)
        elif isinstance(used, list) and all(u in TABLES for u in used):
            self.tables = tuple(used)  # sent with the next batch: schedulers read the same tables batch after batch
        if "actions" not in out:
            raise SchedulerError(f"{self.who}: decide() returned no actions")
        return out["actions"]

    def _learn(self, used: int) -> None:
        """What the child's scheduler read in a lane batch: the tables to send with the next batch (those it read
        in this one: schedulers read the same tables batch after batch) and the fields (all it ever read)."""
        self.tables = _TABLES_OF[used & _ALL_BITS]
        read = (used >> 8) & ALL_FIELDS
        self.fields = read if self.fields is None else self.fields | read

    def observe(self, feedback: SlotFeedback) -> None:
        if not self.observes:  # the child's scheduler reads no feedback: none crosses
            return
        header, arrays = feedback_message(feedback)
        self._ask("observe", header, arrays)

    def reads_feedback(self) -> bool:
        return self.observes  # the child's class overrides observe (its facts say): no feedback is built for one that does not

    def end_episode(self) -> None:
        if "end_episode" in self.hooks:
            self._ask("end_episode")

    def stats(self) -> dict[str, float]:
        answer, _ = self._ask("stats")
        stats = answer.get("stats")
        if not (isinstance(stats, dict) and len(stats) <= 32 and all(isinstance(k, str) and len(k) <= 64 and finite_number(v) for k, v in stats.items())):
            raise SchedulerError(f"{self.who}: stats() returned {str(stats)[:100]}; expected at most 32 named finite numbers")
        return stats

    def state_dict(self) -> dict[str, Any]:
        return state_from(*self._ask("state_dict", max_array=self.max_state_bytes))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        header, arrays = state_message(state)
        self._ask("load_state_dict", header, arrays)

    def rng_state(self) -> dict[str, Any]:
        """The child's scheduler's random stream state (numpy's plain dict), for the conformance checks."""
        answer, _ = self._ask("rng_state")
        state = answer.get("rng")
        if not isinstance(state, dict):
            raise SchedulerError(f"{self.who}: rng_state() returned {str(state)[:80]}; expected numpy's state dict")
        return state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        self._ask("set_rng_state", {"rng": state})

    def close(self) -> None:
        try:
            post_send(self.fd_out, self.lane, {"op": "close"})
        except ChannelError:
            pass


# ---- the child's side ---------------------------------------------------------------------------------------------
def facts_of(scheduler: Scheduler, name: str) -> dict[str, Any]:
    """What the parent needs to drive a scheduler: its name and how it wants batches (class attributes)."""
    cls = type(scheduler)
    return {"scheduler": name, "batch_unit": cls.batch_unit, "event_batches": cls.event_batches, "learns": bool(cls.learns),
            "observes": cls.observe is not Scheduler.observe, "requires_serving": bool(getattr(cls, "requires_serving", False)),
            "hooks": [hook for hook in ("begin_episode", "end_episode") if getattr(cls, hook) is not getattr(Scheduler, hook)]}


def post_send(fd: int, lane: Lane | None, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None,
              timeout_s: float | None = None) -> None:
    """Send one message on the pipe, announced in the lane where there is one (framed first: a message that cannot
    cross fails before it is announced)."""
    parts = frame(header, arrays)
    if lane is not None:
        lane.post(PIPE)
    write(fd, parts, timeout_s)


def wait_receive(fd: int, lane: Lane | None) -> tuple[dict[str, Any] | None, Any]:
    """The child's next message from the parent: (None, (scalars, rows, arrays)) for a batch in the lane, else the
    pipe's (header, arrays)."""
    if lane is not None and lane.wait(fd, None) == BATCH:
        return None, read_lane_batch(lane)
    return receive(fd)


def serve(scheduler: Scheduler, fd_in: int, fd_out: int, lane: Lane | None = None) -> str:
    """Answer the parent's messages until it says close or new (returned) or goes away ("gone"). A failing hook
    answers with its error (one line) and the loop goes on: the parent decides what a failure means. A batch that
    came in the lane is answered there (actions that cannot be, and errors, on the pipe)."""
    def fetch(table: str) -> dict[str, np.ndarray]:
        post_send(fd_out, lane, {"need": table})
        _, got = wait_receive(fd_in, lane)
        return got

    while True:
        try:
            header, arrays = wait_receive(fd_in, lane)
        except ChannelError:
            return "gone"
        if header is None:  # a batch in the lane: decided here, answered in the lane where the actions fit there
            scalars, rows, arrays = arrays
            try:
                used, actions = _decide(scheduler, ReceivedBatch(scalars, rows, arrays, fetch, _FORMULA[0]))
            except BaseException as exc:  # noqa: BLE001 - the scheduler's failure is data for the parent, SystemExit too
                answer, out = {"error": f"{type(exc).__name__}: {one_line(str(exc), 400)}"}, None
            else:
                if lane.write_actions(actions, scalars[2] - scalars[1], used):
                    lane.post(ACTIONS)
                    continue
                answer, out = {"ok": True, "used": used}, {"actions": actions}
        else:
            op = header.get("op")
            if op in ("close", "new"):
                return op
            try:
                answer, out = _handle(scheduler, op, header, arrays, fetch)
            except BaseException as exc:  # noqa: BLE001 - the scheduler's failure is data for the parent, SystemExit too
                answer, out = {"error": f"{type(exc).__name__}: {one_line(str(exc), 400)}"}, None
        if "used" in answer:
            answer["used"] = list(_TABLES_OF[answer["used"] & _ALL_BITS])
        try:
            post_send(fd_out, lane, answer, out)
        except Closed:  # the parent went away: nothing left to answer
            return "gone"
        except (ChannelError, TypeError, ValueError) as exc:  # an answer that cannot cross (a complex array, a NaN): its error instead
            post_send(fd_out, lane, {"error": f"{type(exc).__name__}: {one_line(str(exc), 400)}"})


_FORMULA = [False]  # the child's scenario has cycle-cost tables (set by reset): it computes them itself


def _decide(s: Scheduler, batch: ReceivedBatch) -> tuple[int, np.ndarray]:
    """The scheduler's actions for a batch, and what it read of it: table bits, then field bits from bit 8."""
    try:
        actions = np.asarray(encode_actions(s.decide(batch), batch.n_servers))
    finally:
        batch.closed = True  # its tables come from the parent only while the parent waits in this decide
    if actions.dtype.kind not in NUMERIC:
        raise TypeError(f"decide returned an array of {actions.dtype}; expected integers")
    used = batch.fields_read << 8
    for table in batch.used:
        used |= _TABLE_BIT[table]
    return used, actions


def _handle(s: Scheduler, op: Any, header: dict[str, Any], arrays: dict[str, np.ndarray],
            fetch: Callable[[str], dict[str, np.ndarray]]) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    if op == "reset":
        state = header["rng"]
        # the run's seed is not sent (a scheduler that knew it could rebuild the episodes); rng.spawn() children come
        # from a seed sequence made of the stream's state: reproducible, though not those of an in-process run
        entropy = int(state.get("state", {}).get("state", 0)) if isinstance(state, dict) and isinstance(state.get("state"), dict) else 0
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
        rng.bit_generator.state = state
        info = info_from(header, arrays)
        _FORMULA[0] = info.cost_formula == "cycle"
        s.reset(info, rng)
    elif op == "begin_episode":
        s.begin_episode(int(header["episode"]), bool(header["training"]))
    elif op == "decide":
        used, actions = _decide(s, ReceivedBatch.from_message(header, arrays, fetch, _FORMULA[0]))
        return {"ok": True, "used": used}, {"actions": actions}
    elif op == "observe":
        s.observe(feedback_from(header, arrays))
    elif op == "end_episode":
        s.end_episode()
    elif op == "state_dict":
        return state_message(s.state_dict())
    elif op == "load_state_dict":
        s.load_state_dict(state_from(header, arrays))
    elif op == "rng_state":
        return {"rng": s.rng.bit_generator.state}, None
    elif op == "set_rng_state":
        s.rng.bit_generator.state = header["rng"]
    elif op == "stats":
        stats = s.stats()
        return {"stats": {str(k): (v if isinstance(v, (int, float)) and not isinstance(v, bool) else float(v)) for k, v in stats.items()}}, None
    else:
        raise ValueError(f"unknown operation {str(op)[:40]!r}")
    return {"ok": True}, None


def serve_reference(ref: str, params: Any, fd_in: int, fd_out: int, lane_fds: Iterable[int] | None = None) -> None:
    """The child's whole life on the channel: build the scheduler named `ref` (its code runs from here on), tell
    the parent what it is, answer until closed; "new" builds a fresh one (the next seed). A scheduler that cannot
    be built answers with its error. `lane_fds`: the parent's lane (`Lane.child_fds`), attached before any code of
    the scheduler runs."""
    from schedulers.registry import config_dict, label, make, resolve

    lane = None if lane_fds is None else Lane.attach(tuple(int(fd) for fd in lane_fds))

    while True:
        try:
            scheduler = make(ref, params)
            cls = resolve(ref)
            facts = {**facts_of(scheduler, label(ref, cls)), "scheduler_class": f"{cls.__module__}:{cls.__qualname__}"[:300],
                     "scheduler_params": config_dict(scheduler)}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
            send(fd_out, {"error": f"{type(exc).__name__}: {one_line(str(exc), 400)}"})
            return
        send(fd_out, {"facts": facts})  # not announced: the parent waits for it on the pipe
        if serve(scheduler, fd_in, fd_out, lane) != "new":
            return


def connect(fd_out: int, fd_in: int, who: str, timeout_s: float = 120.0, *, fresh: bool = False, lane: Lane | None = None,
            **limits: float) -> RemoteScheduler:
    """The parent's end once the child runs `serve_reference` (`fresh`: ask it for a new scheduler first): the
    child's description of its scheduler, checked, then a scheduler that forwards to it (in `lane` too, the one
    whose descriptors the child got)."""
    if fresh:
        post_send(fd_out, lane, {"op": "new"})
    try:
        answer, _ = receive(fd_in, timeout_s, max_header=64 * 1024)
    except ChannelError as exc:
        raise SchedulerError(f"{who}: the scheduler's process did not start ({exc})") from None
    if "error" in answer:
        raise SchedulerError(f"{who}: building it raised {one_line(str(answer['error']), 500)}")
    facts = answer.get("facts")
    ok = (isinstance(facts, dict) and isinstance(facts.get("scheduler"), str) and 0 < len(facts["scheduler"]) <= 200
          and facts["scheduler"].isprintable() and isinstance(facts.get("scheduler_class"), str) and facts["scheduler_class"].isprintable()
          and facts.get("batch_unit") in ("bs", "slot") and facts.get("event_batches") in ("instant", "window", "window-if-stateless")
          and isinstance(facts.get("learns"), bool) and isinstance(facts.get("observes"), bool)
          and isinstance(facts.get("hooks"), list) and set(facts["hooks"]) <= {"begin_episode", "end_episode"}
          and isinstance(facts.get("scheduler_class"), str) and isinstance(facts.get("scheduler_params"), dict))
    if not ok:
        raise SchedulerError(f"{who}: its process described itself as {one_line(repr(facts), 200)}; expected its name (printable), class, parameters, "
                             "batch unit, event batches, learns, observes and hooks")
    remote = RemoteScheduler(fd_out, fd_in, who, facts, lane=lane, **limits)
    remote.facts = facts
    return remote


if __name__ == "__main__":  # python -m bench.experiments.sandbox.channel REF PARAMS_JSON FD_IN FD_OUT [LANE_FDS] (unconfined)
    import sys

    serve_reference(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                    sys.argv[5].split(",") if len(sys.argv) > 5 else None)
