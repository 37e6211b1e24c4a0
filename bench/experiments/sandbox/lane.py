"""The channel's fast lane: a decision batch and its actions in shared memory, in a fixed binary layout.

Through the pipe alone a batch costs two process wake-ups, a JSON header and framing both ways (about 140 µs on a
`paper` slot). Here the parent copies the batch's arrays into a memory region both processes map and bumps a
counter; the child, polling that counter, copies them out and answers the same way. A batch's own fields (all 8
bytes an item) go back to back in one area with one `concatenate`, with no directory (the child knows them from the
header's field bits and sizes); other arrays (tables) each get an entry of 7 integers. Every message in either
direction is announced by its sender's counter: a batch (parent) or its actions (child) lie in the region; any
other message, and a batch or answer that does not fit, follows on the pipe, whose framing and checks stay the
only way anything else crosses.

Waiting: a side polls its peer's counter for `SPIN_S`, then raises its sleeping flag and waits in select on its
doorbell (an eventfd the other side writes only when that flag is up) and on the pipe (whose end of file says
the peer is gone). A locked instruction separates each side's flag or counter store from its next load (the
handshake needs it); a missed wake-up would still end at the next timeout of the select (50 ms).

Trust: the parent never reads back what it wrote. From the region it reads only the child's counter, flag and
answer, copying the answer out before anything checks it. The region's size is sealed: a child can neither shrink
it under the parent (which would raise SIGBUS there) nor grow it. The child copies each batch out of the region
before its scheduler sees it (a scheduler may keep a batch's arrays; the next batch overwrites the region).

Linux on x86-64 only: its total store order makes a batch visible before the counter that announces it; elsewhere
`Lane.create` gives None and the channel uses the pipe alone.
"""

from __future__ import annotations

import math
import mmap
import os
import platform
import select
import struct
import sys
import threading
import time
from typing import Any

import numpy as np

SIZE = 64 << 20  # bytes of the region (pages are allocated only where a batch reaches)
SPIN_S = 500e-6 if len(os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)) > 1 else 0.0
# a waiting side polls this long before it sleeps: a wake-up costs ~50 µs on the machines measured, a poll well
# under one; one CPU: no polling (it would only delay the other side)
NAP_S = 0.05  # the longest a sleeping side waits before it looks at the counter again

BATCH, ACTIONS, PIPE = 1, 2, 3  # what a counter announces: a batch, the actions (both in the region), a pipe message

# control block: int64 words; the parent's and the child's on separate cache lines
REQ_SEQ, REQ_KIND, PARENT_SLEEPS = 0, 1, 2
ANS_SEQ, ANS_KIND, CHILD_SLEEPS, ANS_N, ANS_USED = 8, 9, 10, 11, 12
HEAD = 128  # the batch: its header (below), its directory of arrays, its rows, then the arrays
SCALARS = 8  # the batch's header: its scalars (the channel's), then the number of arrays, the answer's offset, the data's end
FIXED = struct.Struct(f"<{SCALARS + 3}q")
ENTRY = struct.Struct("<7q")  # name, dtype, ndim, three sizes, offset
DTYPES = tuple(np.dtype(d) for d in ("<f8", "<i8", "|b1", "<i4", "<f4", "|u1", "<i2", "|i1", "<u2", "<u4", "<u8"))
_DTYPE_CODE = {d: i for i, d in enumerate(DTYPES)}
F8, I8 = DTYPES[0], DTYPES[1]
ACTION_DTYPES = frozenset(np.dtype(d) for d in ("<i8", "<i4", "<i2", "|i1", "|u1", "<u2", "<u4"))  # fit int64 exactly

_LOCK = threading.Lock()


def _fence() -> None:
    """A full memory barrier on x86-64: a lock's acquire is a locked (atomic) instruction."""
    _LOCK.acquire()
    _LOCK.release()


def supported() -> bool:
    return sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64") and hasattr(os, "eventfd") and hasattr(os, "memfd_create")


def _align(n: int) -> int:
    return (n + 63) & ~63


_LAYOUTS: dict[int, struct.Struct] = {}


def _layout(count: int) -> struct.Struct:
    """The batch's header and its directory of `count` arrays, as one struct."""
    layout = _LAYOUTS.get(count)
    if layout is None:
        layout = _LAYOUTS[count] = struct.Struct(f"<{SCALARS + 3 + 7 * count}q")
    return layout


class Lane:
    """One region and two doorbells, shared by a parent (`create`) and its child (`attach`)."""

    def __init__(self, memfd: int, wake_parent: int, wake_child: int, parent: bool):
        self.fds = (memfd, wake_parent, wake_child)
        size = os.fstat(memfd).st_size
        self.map = mmap.mmap(memfd, size)
        self.size = size
        self.ctl = np.frombuffer(self.map, dtype=np.int64, count=16)
        # parent: sends on REQ_SEQ, reads ANS_SEQ; child: the other way round
        self.mine, self.theirs = (REQ_SEQ, ANS_SEQ) if parent else (ANS_SEQ, REQ_SEQ)
        self.my_kind, self.their_kind = (REQ_KIND, ANS_KIND) if parent else (ANS_KIND, REQ_KIND)
        self.my_flag, self.their_flag = (PARENT_SLEEPS, CHILD_SLEEPS) if parent else (CHILD_SLEEPS, PARENT_SLEEPS)
        self.my_bell, self.their_bell = (wake_parent, wake_child) if parent else (wake_child, wake_parent)
        self.sent = self.seen = 0  # a new region is zeros; the counters only grow
        self.answer_at = 0  # where the child writes the last batch's actions
        self._views: dict[np.dtype, np.ndarray] = {}
        self.words = self._view(I8)  # the region as int64 (the actions' view)

    @classmethod
    def create(cls, size: int = SIZE) -> Lane | None:
        """The parent's lane, or None where shared memory cannot serve as one (see the module's docstring)."""
        if not supported():
            return None
        import fcntl

        memfd = os.memfd_create("aigc-bench-lane", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(memfd, size)
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            wake_parent = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            wake_child = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            os.close(memfd)
            return None
        return cls(memfd, wake_parent, wake_child, parent=True)

    @classmethod
    def attach(cls, fds: tuple[int, int, int]) -> Lane:
        """The child's end, from the three descriptors the parent passed (`child_fds`)."""
        return cls(*fds, parent=False)

    def child_fds(self) -> tuple[int, int, int]:
        """Copies of the three descriptors for the child (the caller closes them once the child has them)."""
        return tuple(os.dup(fd) for fd in self.fds)

    def close(self) -> None:
        self._views.clear()
        self.ctl = self.words = None
        try:
            self.map.close()
        except BufferError:  # someone still holds a view of it: the mapping goes when they let go
            pass
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass

    # ---- announcing and waiting ---------------------------------------------------------------------------------
    def post(self, kind: int) -> None:
        """Announce a message of `kind` (its contents already in the region, or about to follow on the pipe)."""
        ctl = self.ctl
        ctl[self.my_kind] = kind
        self.sent += 1
        ctl[self.mine] = self.sent
        _fence()
        if ctl[self.their_flag]:
            try:
                os.eventfd_write(self.their_bell, 1)
            except BlockingIOError:  # the counter is full of unread wake-ups: the peer will look anyway
                pass

    def wait(self, fd: int, deadline: float | None) -> int:
        """The kind of the peer's next message (PIPE: read it from `fd`, which also means the pipe's end of file
        when the peer announced nothing), or TimeoutError when `deadline` (time.monotonic) passes first."""
        ctl, theirs, seen = self.ctl, self.theirs, self.seen
        if SPIN_S and ctl[theirs] == seen:
            until, polls = time.perf_counter() + SPIN_S, 0
            while ctl[theirs] == seen:
                polls += 1
                if not polls & 63:
                    if time.perf_counter() > until:
                        break
                    os.sched_yield()  # a process that shares this CPU runs first
        if ctl[theirs] == seen:
            ctl[self.my_flag] = 1
            _fence()
            try:
                while ctl[theirs] == seen:
                    nap = NAP_S if deadline is None else min(NAP_S, deadline - time.monotonic())
                    if nap <= 0:
                        raise TimeoutError
                    ready = select.select([self.my_bell, fd], [], [], nap)[0]
                    if self.my_bell in ready:
                        try:
                            os.eventfd_read(self.my_bell)
                        except BlockingIOError:
                            pass
                    if fd in ready and ctl[theirs] == seen:
                        return PIPE  # unannounced: the peer closed the pipe (or broke the protocol: the pipe's checks say)
            finally:
                ctl[self.my_flag] = 0
        self.seen += 1
        if int(ctl[theirs]) != self.seen:
            self.seen = int(ctl[theirs])  # a peer that skips counts (only a hostile child would): its last message counts
        return int(ctl[self.their_kind])

    # ---- the batch (parent writes, child reads) -----------------------------------------------------------------
    def _view(self, dtype: np.dtype) -> np.ndarray:
        """The whole region as one flat array of `dtype` (made once per dtype)."""
        view = self._views.get(dtype)
        if view is None:
            view = self._views[dtype] = np.frombuffer(self.map, dtype=dtype, count=self.size // dtype.itemsize)
        return view

    def write_batch(self, scalars: tuple[int, ...], n_tasks: int, rows: list[np.ndarray], size: int,
                    arrays: list[tuple[str, np.ndarray]], names: dict[str, int]) -> bool:
        """Write a batch: its header `scalars`, then `rows` (1-D arrays of 8-byte items, `size` in all) back to back in
        one float64 area (integers as their bits: the reader knows which rows are which from the scalars), then
        `arrays`, each with its entry in the directory; False (nothing announced) when it does not fit or holds a
        dtype or shape the layout lacks."""
        count = len(arrays)
        at = _align(HEAD + FIXED.size + ENTRY.size * count)
        limit = self.size - 8 * n_tasks  # the actions follow the batch
        end = at + 8 * size
        if end > limit:
            return False
        if rows:
            start = at >> 3
            try:
                np.concatenate(rows, out=self._view(F8)[start:start + size], casting="unsafe")
            except ValueError:  # rows of other lengths than `size` says: not for the lane
                return False
        at = _align(end)
        entries: list[int] = []
        for name, a in arrays:
            code = _DTYPE_CODE.get(a.dtype)
            shape = a.shape
            end = at + a.nbytes
            if code is None or len(shape) > 3 or end > limit:
                return False
            if end - at <= 4096:  # small: one bytes object is the cheapest copy
                self.map[at:end] = a.tobytes()
            else:
                start = at // a.dtype.itemsize
                self._view(a.dtype)[start:start + a.size] = a.reshape(-1)
            entries += (names[name], code, len(shape), *(shape + (0, 0, 0))[:3], at)
            at = _align(end)
        _layout(count).pack_into(self.map, HEAD, *scalars, count, at, at, *entries)
        self.answer_at = at
        return True

    def read_batch(self, names: tuple[str, ...]) -> tuple[tuple[int, ...], bytes, dict[str, np.ndarray]]:
        """The batch the parent announced: its header scalars, its rows' area as bytes (from its start: the caller,
        who knows the rows from the scalars, takes what it needs) and its named arrays, all in memory of their own
        (one copy: a scheduler's arrays outlive the region's next batch; arrays made on bytes are read-only)."""
        head = FIXED.unpack_from(self.map, HEAD)
        count, answer, end = head[SCALARS:]
        first = _align(HEAD + FIXED.size + ENTRY.size * count)
        data = self.map[first:end]
        arrays = {}
        if count:
            head = _layout(count).unpack_from(self.map, HEAD)
            for j in range(SCALARS + 3, SCALARS + 3 + 7 * count, 7):
                name, code, ndim, d0, d1, d2, at = head[j:j + 7]
                shape = (d0, d1, d2)[:ndim]
                arrays[names[name]] = np.frombuffer(data, dtype=DTYPES[code], count=math.prod(shape), offset=at - first).reshape(shape)
        self.answer_at = answer
        return head[:SCALARS], data, arrays

    # ---- the actions (child writes, parent reads) ---------------------------------------------------------------
    def write_actions(self, actions: Any, n: int, used: int) -> bool:
        """The child's answer in the region: False (nothing written) unless it is n integers that fit int64."""
        if type(actions) is not np.ndarray or actions.shape != (n,) or actions.dtype not in ACTION_DTYPES or self.answer_at + 8 * n > self.size:
            return False
        start = self.answer_at >> 3
        self.words[start:start + n] = actions
        ctl = self.ctl
        ctl[ANS_N] = n
        ctl[ANS_USED] = used
        return True

    def read_actions(self, n: int) -> tuple[np.ndarray | None, int]:
        """The child's actions for a batch of n tasks (a copy: the child cannot change them after they are
        checked) and its used-tables bits; None when it announced a number of actions other than n."""
        if int(self.ctl[ANS_N]) != n:
            return None, 0
        start = self.answer_at >> 3
        actions = self.words[start:start + n].copy()
        return actions, int(self.ctl[ANS_USED])
