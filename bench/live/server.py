"""One edge server of live mode: a Ray actor (its own process) that holds its models and serves its queue FIFO.

`ModelServer` is a plain class; `bench.live.cluster` makes it a Ray actor (`ray.remote(ModelServer)`), so the
module imports without Ray. The actor is asynchronous: `generate` puts a request in the queue and returns when
its image is ready, `status` answers at once, even while a request runs (the observation the gateway builds
before each decision). One worker thread runs the requests one at a time in arrival order (a one-thread
executor: its queue is the server's FIFO queue), with torch and BLAS on one thread.

Memory (the rule of bench.engine.profiled_costs, so that live and simulated servers agree): the server keeps
the models it has run. Before a request of model m runs, resident models other than m are evicted (least
recently used first, or first loaded with "fifo") until their weights plus the request's peak memory fit in
the server's memory; if m is not resident it is loaded from the server's local copy of its weights (the
request pays the load, timed and returned). At start the server writes each model it may run to its work
directory once and loads the ones it keeps resident from there (the start-up loads are timed: they are the
cold starts of a profile measured here). Weights are random, seeded by the model's name, so every server
holds the same networks and the same request seed gives the same image everywhere.

Clock: the server stamps with `time.time()`; the gateway estimates each server's clock offset at start (a
multi-node cluster's clocks differ by NTP's error) and converts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECENT_S = 30.0  # how long a finished request stays in `status` (the gateway may not have its result yet)


@dataclass(frozen=True)
class ServerSpec:
    """What one server is: its place in the scenario, where it runs, what it may hold."""

    index: int
    hardware: str  # the scenario's hardware id
    device: str  # "cpu" or "cuda"
    dtype: str
    memory_bytes: float
    models: tuple[str, ...]  # every model the server may run (its hardware has a profile of it and it fits)
    preload: tuple[str, ...]  # resident at start, in load order (bench.live.session.initial_resident)
    weights_bytes: dict[str, float]  # per model, from the scenario's profiles (the accounting of the memory rule)
    lru: bool = True
    threads: int = 1
    run_id: str = "live"


def one_thread(threads: int = 1) -> None:
    """torch (intra- and inter-op) and the BLAS libraries on `threads` threads."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work has started: it stays as it is
        pass


def peak_rss_bytes() -> int:
    """The process's peak resident set (VmHWM) on Linux, else 0."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ModelServer:
    """One edge server (module docstring). Every public method is a Ray actor method."""

    def __init__(self, spec: ServerSpec):
        one_thread(spec.threads)
        from bench.live import pipelines
        from profiles.zoo import get_model

        self.spec = spec
        self._pipelines = pipelines
        self._specs = {m: get_model(m) for m in spec.models}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"server{spec.index}")
        self._lock = threading.Lock()
        self._queued: OrderedDict[int, float] = OrderedDict()  # request id -> when it arrived (FIFO)
        self._running: tuple[int, float] | None = None
        self._finished: deque[tuple[float, int]] = deque()
        self._resident: OrderedDict[str, Any] = OrderedDict()  # model -> Pipeline, least recently used first
        self._evictions = 0
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"aigc-live-{spec.run_id}-s{spec.index}-"))
        self.start_load_s: dict[str, float] = {}
        # every model written once (random weights, seeded by name), then the preloaded ones loaded from disk
        for m in spec.models:
            components = pipelines.build_components(self._specs[m], spec.device, spec.dtype)
            pipelines.save_components(components, self.work_dir / m)
            del components
        for m in spec.preload:
            t0 = time.perf_counter()
            self._resident[m] = self._load(m)
            self.start_load_s[m] = time.perf_counter() - t0

    # ---- what the gateway asks ----------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        import ray
        import torch

        return {
            "index": self.spec.index, "pid": os.getpid(), "host": socket.gethostname(),
            "node_id": ray.get_runtime_context().get_node_id(), "work_dir": str(self.work_dir),
            "threads": torch.get_num_threads(), "device": self.spec.device, "resident": list(self._resident),
            "start_load_s": dict(self.start_load_s), "peak_rss_bytes": peak_rss_bytes(), "time": time.time(),
            "hardware": self._hardware(),
        }

    def _hardware(self) -> dict[str, Any]:
        """What this server runs on, as a profile records it (kind, name, memory, driver)."""
        import dataclasses

        from profiles.profiler import Device

        return dataclasses.asdict(Device(self.spec.device).hardware(self.spec.threads))

    async def clock(self) -> float:
        return time.time()

    async def status(self) -> dict[str, Any]:
        """The server's queue now: requests waiting (FIFO order), the running one and when it started, the
        requests finished in the last RECENT_S seconds, the resident models."""
        now = time.time()
        with self._lock:
            while self._finished and self._finished[0][0] < now - RECENT_S:
                self._finished.popleft()
            return {"time": now, "queued": list(self._queued), "running": self._running,
                    "finished": [i for _, i in self._finished], "resident": list(self._resident), "evictions": self._evictions}

    async def generate(self, request_id: int, request: dict[str, Any]) -> dict[str, Any]:
        """Queue one request; return its image and its timestamps when it is done."""
        arrived = time.time()
        with self._lock:
            self._queued[request_id] = arrived
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(self._executor, self._serve, request_id, request)
        finally:
            with self._lock:
                self._queued.pop(request_id, None)
        out["enqueue"] = arrived
        return out

    async def stop(self) -> None:
        """Remove the work directory (the gateway also removes it when the process died)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # ---- the worker thread ---------------------------------------------------------------------------------
    def _serve(self, request_id: int, request: dict[str, Any]) -> dict[str, Any]:
        start = time.time()
        with self._lock:
            self._queued.pop(request_id, None)
            self._running = (request_id, start)
        try:
            load_s, evicted = self._ensure(request["model"], float(request.get("peak_bytes", 0.0)))
            g = self._resident[request["model"]].run(self._request(request))
            end = time.time()
        finally:
            with self._lock:
                self._running = None
                self._finished.append((time.time(), request_id))
        return {"server": self.spec.index, "pid": os.getpid(), "start": start, "end": end, "load_s": load_s, "evicted": evicted,
                "model": request["model"], "resolution": int(request["resolution"]), "batch": int(request["batch"]),
                "steps": int(request["steps"]), "text_s": g.text_s, "denoise_s": g.denoise_s, "vae_s": g.vae_s,
                "first_step_s": g.first_step_s, "peak_rss_bytes": peak_rss_bytes(), "image": g.image, "digest": g.digest}

    def _request(self, r: dict[str, Any]):
        return self._pipelines.Request(model=r["model"], resolution=int(r["resolution"]), batch=int(r["batch"]),
                                       steps=int(r["steps"]), seed=int(r["seed"]))

    def _load(self, model: str):
        spec = self._specs[model]
        components = self._pipelines.load_components(spec, self.work_dir / model, self.spec.device, self.spec.dtype)
        return self._pipelines.Pipeline(spec, components, self.spec.device)

    def _ensure(self, model: str, peak_bytes: float) -> tuple[float, int]:
        """Make `model` resident under the memory rule (module docstring); return the load time paid and the
        number of models evicted."""
        if model not in self._specs:
            raise ValueError(f"server {self.spec.index} ({self.spec.hardware}) does not run model {model!r}")
        evicted = 0
        weights = self.spec.weights_bytes
        used = sum(weights.get(m, 0.0) for m in self._resident if m != model)
        while used + peak_bytes > self.spec.memory_bytes:
            victims = [m for m in self._resident if m != model]
            if not victims:
                break
            victim = victims[0]
            del self._resident[victim]
            used -= weights.get(victim, 0.0)
            evicted += 1
        load_s = 0.0
        if model not in self._resident:
            t0 = time.perf_counter()
            self._resident[model] = self._load(model)
            load_s = time.perf_counter() - t0
        elif self.spec.lru:
            self._resident.move_to_end(model)
        with self._lock:
            self._evictions += evicted
        if evicted:
            import gc

            gc.collect()
        return load_s, evicted
