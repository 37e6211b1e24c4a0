"""The gateway: replays an episode's requests in real time, asks the scheduler, emulates the links, records.

Time. The run's clock starts at t0 (absolute, `time.time()`); request i of the episode is sent at
t0 + arrival_i / time_scale: `time_scale` is the replay's speed (1: real time; 0.1: ten times slower, so
requests are ten times sparser; 2: twice as dense). Only arrivals are scaled: compute and transfers take what
they take. Requests with the same arrival time form one instant and are decided together.

Observation (what the simulator gives, bench/engine/events.py, built from the servers' actual state). Before
each instant the gateway asks every live server for its queue (`ModelServer.status`). Server a's backlog is
the predicted compute time of its requests that have not started (queued there, or still crossing the link)
plus, for the running one, its predicted compute minus the time it has run (never below 0): the wait a request
placed now would have, as `max(min_w F[a, w] - t, 0)` is in the simulator. Predictions are the cost model's
(the scenario's profiles). The resident models a Batch's tables use are the server's reported ones, updated
with the requests not yet started (in their order, by the cost model's memory rule). `assigned_s` is the
compute placed earlier at the same instant. Dead servers are masked out.

Links. A request placed on a server other than its base station's crosses the link for size / rate of the
destination (seconds, the cost model's upload); every result crosses it back for result size / rate. The
gateway sleeps for those times: the request is submitted to its server after its upload, and its result counts
as returned a download time after it reached the gateway.

Records (absolute seconds from t0, converted from each server's clock with its estimated offset): arrival
(when the gateway took the request), dispatch (its placement was decided; the last one for a re-dispatched
request), enqueue (it reached its server's queue), start and end (its server ran it; the model load, if any,
is inside), return (its result was back at the base station). Delay = return - arrival.

Faults. A server whose process dies (Ray reports the actor dead) is masked out; each of its requests that had
not returned is decided again (the scheduler sees the same kind of batch, one request, without the dead
server) and sent elsewhere: counted in `redispatches`. A request no live server can run, or whose server raised
an error, or whose image fails the check, is recorded failed with its reason. `kills` injects faults: server
a's process is killed (SIGKILL by pid on this host; `ray.kill` elsewhere) at time t of the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bench.core.arrays import read_only, read_only_copy
from bench.core.errors import BenchError, SchedulerError
from bench.engine.costs import CostModel
from bench.engine.trace import check_actions
from bench.live.cluster import import_ray, remote_error
from schedulers.interface import Batch, Scheduler
from tasks.workload import Workload

Progress = Callable[[str], None]
DONE, FAILED = "done", "failed"


class AliveCosts:
    """The cost model a Batch sees during a live run: the scenario's, with dead servers masked out."""

    has_mask = True

    def __init__(self, base: CostModel, alive: np.ndarray):
        self.base = base
        self.alive = alive  # (B,) bool, shared with the gateway (updated in place)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def mask(self, wl: Workload, lo: int, hi: int) -> np.ndarray:
        m = self.base.mask(wl, lo, hi)
        m = np.ones((hi - lo, self.base.n_servers), dtype=bool) if m is None else np.array(m, dtype=bool)
        return m & self.alive[None, :]


@dataclass
class Records:
    """Per request of the episode (decision order): what happened to it."""

    n: int
    arrival_s: np.ndarray = field(init=False)
    dispatch_s: np.ndarray = field(init=False)
    first_dispatch_s: np.ndarray = field(init=False)
    enqueue_s: np.ndarray = field(init=False)
    start_s: np.ndarray = field(init=False)
    end_s: np.ndarray = field(init=False)
    return_s: np.ndarray = field(init=False)
    load_s: np.ndarray = field(init=False)
    predicted_compute_s: np.ndarray = field(init=False)
    text_s: np.ndarray = field(init=False)  # the server's timing of the request's parts (inside start..end)
    denoise_s: np.ndarray = field(init=False)
    vae_s: np.ndarray = field(init=False)
    action: np.ndarray = field(init=False)
    first_action: np.ndarray = field(init=False)
    redispatches: np.ndarray = field(init=False)
    evictions: np.ndarray = field(init=False)
    decide_ns: np.ndarray = field(init=False)
    status: list[str] = field(init=False)
    failure: list[str] = field(init=False)
    image_sha256: list[str] = field(init=False)
    image_shape: list[str] = field(init=False)

    def __post_init__(self) -> None:
        nan = lambda: np.full(self.n, np.nan)  # noqa: E731
        for name in ("arrival_s", "dispatch_s", "first_dispatch_s", "enqueue_s", "start_s", "end_s", "return_s", "predicted_compute_s",
                     "text_s", "denoise_s", "vae_s"):
            setattr(self, name, nan())
        self.load_s = np.zeros(self.n)
        self.action = np.full(self.n, -1, dtype=np.int64)
        self.first_action = np.full(self.n, -1, dtype=np.int64)
        self.redispatches = np.zeros(self.n, dtype=np.int64)
        self.evictions = np.zeros(self.n, dtype=np.int64)
        self.decide_ns = np.zeros(self.n, dtype=np.int64)
        self.status = ["pending"] * self.n
        self.failure = [""] * self.n
        self.image_sha256 = [""] * self.n
        self.image_shape = [""] * self.n


def request_seed(seed: int, episode: int, index: int) -> int:
    """The seed of request `index` of (run seed, episode): its token ids and initial latents (the same image
    wherever and whenever it runs)."""
    return int(np.random.SeedSequence([int(seed), int(episode), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class Gateway:
    """Replays one episode's requests on the live servers (module docstring); `run` returns the records."""

    def __init__(self, *, workload: Workload, costs: CostModel, scheduler: Scheduler, who: str, servers: list[Any],
                 infos: list[dict[str, Any]], offsets: np.ndarray, mix: tuple[Any, ...], seed: int, episode: int,
                 time_scale: float = 1.0, kills: list[tuple[int, float]] = (), progress: Progress | None = None):
        self.wl = workload
        self.costs = costs
        self.scheduler = scheduler
        self.who = who
        self.servers = servers
        self.infos = infos
        self.offsets = np.asarray(offsets, dtype=np.float64)
        self.mix = mix
        self.seed, self.episode = seed, episode
        self.time_scale = float(time_scale)
        self.kills = list(kills)
        self.say = progress or (lambda _m: None)
        b = costs.n_servers
        self.alive = np.ones(b, dtype=bool)
        self.view = AliveCosts(costs, self.alive)
        self.records = Records(workload.n_tasks)
        self.outstanding: list[dict[int, None]] = [dict() for _ in range(b)]  # dispatched to a, result not back (ordered)
        self.died: dict[int, dict[str, Any]] = {}
        self.killed: list[dict[str, Any]] = []
        self.lost: list[dict[str, Any]] = []  # one entry per request lost on a dead server
        self.t0 = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._error: BaseException | None = None  # the first error of a request's task (ends the run)
        self._ray = import_ray()

    # ---- clock -----------------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() - self.t0

    def server_time(self, a: int, t: float) -> float:
        """A server's `time.time()` stamp on the run's clock."""
        return float(t) - self.offsets[a] - self.t0

    # ---- the run -------------------------------------------------------------------------------------------
    async def prewarm(self, probe: Scheduler) -> None:
        """One observation and one decision of the first instant by `probe` (a throwaway copy of the scheduler),
        before the clock starts: compiled kernels loaded, Ray's first calls made, so the first request's decision
        costs what the others do."""
        backlog, state = await self.observe()
        hi = int(np.searchsorted(self.wl.arrival_s, self.wl.arrival_s[0], side="right"))
        batch = Batch(slot=int(self.wl.slot[0]), workload=self.wl, lo=0, hi=hi, costs=self.view, backlog_s=read_only_copy(backlog),
                      assigned_s=read_only(np.zeros(self.costs.n_servers)), state=self.costs.copy_state(state))
        try:
            actions = check_actions(probe.decide(batch), 0, hi, self.wl, self.view, self.who, expected=hi)
        except BenchError:
            raise
        except (Exception, SystemExit) as exc:
            raise SchedulerError(f"{self.who}: decide() raised {type(exc).__name__}: {exc}") from None
        self.costs.compute_s_chosen(self.wl, 0, hi, actions, self.costs.copy_state(state))

    async def run(self, lead_s: float = 0.2, probe: Scheduler | None = None) -> Records:
        if probe is not None:
            await self.prewarm(probe)
        wl = self.wl
        self.t0 = time.time() + lead_s
        killers = [asyncio.ensure_future(self._kill_at(a, t)) for a, t in self.kills]
        try:
            bounds = np.flatnonzero(np.diff(wl.arrival_s)) + 1
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, wl.n_tasks]):
                lo, hi = int(lo), int(hi)
                if lo == hi:
                    continue
                await asyncio.sleep(max(0.0, self.t0 + float(wl.arrival_s[lo]) / self.time_scale - time.time()))
                if self._error is not None:
                    raise self._error
                self.records.arrival_s[lo:hi] = self.now()
                await self._instant(lo, hi)
            while self._tasks:
                await asyncio.gather(*list(self._tasks))
        finally:
            for k in killers:
                k.cancel()
            for t in list(self._tasks):
                t.cancel()
        return self.records

    async def _instant(self, lo: int, hi: int) -> None:
        """Decide the requests lo:hi (one arrival instant), per base station if the scheduler asks so."""
        backlog, state = await self.observe()
        if not self.alive.any():
            for i in range(lo, hi):
                self._fail(i, "no live server: every server's process died")
            return
        assigned = np.zeros(self.costs.n_servers)
        cuts = [lo, hi]
        if self.scheduler.batch_unit == "bs":
            origin = self.wl.origin[lo:hi]
            cuts = [lo, *(lo + np.flatnonzero(np.diff(origin)) + 1).tolist(), hi]
        for a_lo, a_hi in zip(cuts[:-1], cuts[1:]):
            actions, compute = self._decide(a_lo, a_hi, backlog, assigned, state)
            np.add.at(assigned, actions, compute)
            for k, i in enumerate(range(a_lo, a_hi)):
                self._spawn(self._deliver(i, int(actions[k]), float(compute[k])))

    def _decide(self, lo: int, hi: int, backlog: np.ndarray, assigned: np.ndarray, state: Any) -> tuple[np.ndarray, np.ndarray]:
        """The scheduler's placements for lo:hi and their predicted compute (the cost model's charge, updating
        `state` in decision order as the simulator does)."""
        batch = Batch(slot=int(self.wl.slot[lo]), workload=self.wl, lo=lo, hi=hi, costs=self.view, backlog_s=read_only_copy(backlog),
                      assigned_s=read_only_copy(assigned), state=self.costs.copy_state(state))
        t0 = time.perf_counter_ns()
        try:
            actions = self.scheduler.decide(batch)
        except BenchError:
            raise
        except (Exception, SystemExit) as exc:
            raise SchedulerError(f"{self.who}: decide() raised {type(exc).__name__}: {exc}") from None
        spent = time.perf_counter_ns() - t0
        a = check_actions(actions, lo, hi, self.wl, self.view, self.who, expected=hi - lo)
        self.records.decide_ns[lo:hi] += spent // (hi - lo)
        compute = np.asarray(self.costs.compute_s_chosen(self.wl, lo, hi, a, state), dtype=np.float64)
        return a, compute

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()

    # ---- observation -------------------------------------------------------------------------------------
    async def observe(self) -> tuple[np.ndarray, Any]:
        """(backlog_s per server, the resident state for the Batch's tables), from the servers' status."""
        live = [a for a in range(self.costs.n_servers) if self.alive[a]]
        replies = await asyncio.gather(*(self._status(a) for a in live), return_exceptions=True)
        now = time.time()
        backlog = np.zeros(self.costs.n_servers)
        state = self.costs.new_state()
        clock = 0
        pending: list[tuple[int, int]] = []  # (server, request) not started, in order, for the residency update
        for a, reply in zip(live, replies):
            if isinstance(reply, BaseException):
                self._dead(a, remote_error(reply))
                continue
            running = reply["running"]
            finished = set(reply["finished"])
            for m in reply["resident"]:  # least recently used first
                if state is not None and m in self.costs.models:
                    state.stamp[a, self.costs.models.index(m)] = clock
                    clock += 1
            for i in self.outstanding[a]:
                if i in finished:
                    continue
                if running is not None and int(running[0]) == i:
                    ran = now - (float(running[1]) - self.offsets[a])
                    backlog[a] += max(self.records.predicted_compute_s[i] - ran, 0.0)
                else:
                    backlog[a] += self.records.predicted_compute_s[i]
                    pending.append((a, i))
        if state is not None:
            state.clock[0] = clock
            for a, i in pending:  # what the queued requests will load, as the simulator's state already holds
                self.costs.compute_s_chosen(self.wl, i, i + 1, np.array([a]), state)
            state.load = None
        return backlog, state

    async def _status(self, a: int) -> dict[str, Any]:
        return await self.servers[a].status.remote()

    # ---- one request's journey ---------------------------------------------------------------------------
    def _payload(self, i: int, a: int) -> dict[str, Any]:
        c = int(self.wl.task_class[i])
        klass = self.mix[c]
        peak = getattr(self.costs, "peak_bytes", None)
        return {"model": klass.model, "resolution": int(klass.resolution), "batch": int(klass.batch), "steps": int(self.wl.steps[i]),
                "seed": request_seed(self.seed, self.episode, i), "peak_bytes": float(peak[c, a]) if peak is not None else 0.0}

    async def _deliver(self, i: int, a: int, predicted: float) -> None:
        r, wl = self.records, self.wl
        r.dispatch_s[i] = self.now()
        if r.action[i] < 0:
            r.first_action[i], r.first_dispatch_s[i] = a, r.dispatch_s[i]
        r.action[i] = a
        r.predicted_compute_s[i] = predicted
        inv = float(self.costs.inv_rate[a])
        upload = 0.0 if a == int(wl.origin[i]) else float(wl.size_mbit[i]) * inv
        download = float(wl.result_mbit[i]) * inv
        self.outstanding[a][i] = None
        try:
            await asyncio.sleep(upload)
            reply = await self.servers[a].generate.remote(i, self._payload(i, a))
        except self._ray.exceptions.RayActorError as exc:
            self.outstanding[a].pop(i, None)
            self._dead(a, remote_error(exc))
            await self._redispatch(i, a)
            return
        except self._ray.exceptions.RayError as exc:
            self.outstanding[a].pop(i, None)
            self._fail(i, f"server {a} raised {remote_error(exc)}")
            return
        self.outstanding[a].pop(i, None)
        await asyncio.sleep(download)
        r.return_s[i] = self.now()
        r.enqueue_s[i] = self.server_time(a, reply["enqueue"])
        r.start_s[i] = self.server_time(a, reply["start"])
        r.end_s[i] = self.server_time(a, reply["end"])
        r.load_s[i] = float(reply["load_s"])
        r.evictions[i] = int(reply["evicted"])
        r.text_s[i], r.denoise_s[i], r.vae_s[i] = float(reply["text_s"]), float(reply["denoise_s"]), float(reply["vae_s"])
        r.image_sha256[i] = str(reply["digest"])
        image = reply["image"]
        r.image_shape[i] = "x".join(map(str, image.shape))
        klass = self.mix[int(wl.task_class[i])]
        expected = (int(klass.batch), int(klass.resolution), int(klass.resolution), 3)
        if image.shape != expected or not np.isfinite(image).all():
            self._fail(i, f"image check failed: shape {image.shape} (expected {expected}), finite: {bool(np.isfinite(image).all())}")
            return
        r.status[i] = DONE

    async def _redispatch(self, i: int, dead: int) -> None:
        r = self.records
        r.redispatches[i] += 1
        self.lost.append({"request": i, "server": dead, "at_s": self.now()})
        backlog, state = await self.observe()
        if not self.view.mask(self.wl, i, i + 1)[0].any():
            self._fail(i, f"lost on server {dead} (its process died); no live server can run it")
            return
        actions, compute = self._decide(i, i + 1, backlog, np.zeros(self.costs.n_servers), state)
        self.say(f"request {i}: server {dead} died; re-dispatched to server {int(actions[0])}")
        await self._deliver(i, int(actions[0]), float(compute[0]))

    def _fail(self, i: int, reason: str) -> None:
        self.records.status[i] = FAILED
        self.records.failure[i] = reason
        self.say(f"request {i} failed: {reason}")

    def _dead(self, a: int, reason: str) -> None:
        if self.alive[a]:
            self.alive[a] = False
            self.died[a] = {"server": a, "detected_s": self.now(), "reason": reason}
            self.say(f"server {a} is dead ({reason})")

    # ---- faults --------------------------------------------------------------------------------------------
    async def _kill_at(self, a: int, at_s: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + at_s - time.time()))
        info = self.infos[a]
        if info.get("host") == socket.gethostname():
            how = f"SIGKILL to pid {info['pid']}"
            try:
                os.kill(int(info["pid"]), signal.SIGKILL)
            except OSError as exc:
                how += f" failed ({exc.strerror})"
        else:
            how = "ray.kill"
            self._ray.kill(self.servers[a], no_restart=True)
        self.killed.append({"server": a, "at_s": self.now(), "how": how})
        self.say(f"fault injected: server {a} killed ({how})")
