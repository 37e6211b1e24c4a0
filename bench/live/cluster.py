"""Ray for live mode: start (or join) a cluster, start the model servers as actors, and stop everything.

`LiveCluster` is a context manager. Entering it starts a local Ray instance (`address=None`; stopped again on
exit), joins an existing cluster (`address="host:port"` or `"auto"`: only this run's actors are stopped), or
uses the Ray instance this process already runs (a test's shared cluster). Exiting, normally, on an error or on
Ctrl-C (KeyboardInterrupt; SIGTERM is turned into one while the cluster is up): every server actor is asked to
remove its work directory and is killed, the Ray instance it started is shut down, and the processes it started
(the driver's descendants recorded while it ran) are waited for and, if any is still alive after a grace
period, killed by pid. Nothing is left running and no port stays bound (tests/test_live.py lists both).

Each server is one actor in its own worker process: `num_cpus=1` (one thread), `num_gpus=1` on CUDA hardware,
no restarts (a dead server stays dead; the gateway re-dispatches its requests).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from bench.core.errors import BenchError, one_line
from bench.live.server import ModelServer, ServerSpec

START_TIMEOUT_S = 600.0  # starting a server: importing torch and diffusers, writing and loading its models
GRACE_S = 10.0  # after shutdown, how long the processes Ray started get to exit before they are killed
KILL_WAIT_S = 5.0  # then how long a killed one may take to be gone
THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


class LiveError(BenchError):
    """Live mode could not run (Ray missing, a server that would not start, a cluster that cannot be joined)."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise LiveError("live mode needs Ray: pip install 'aigc-edge-bench[ray]'") from None
    return ray


# ---- processes and ports (what a clean stop is checked against) ------------------------------------------------

def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[1]), rest[0], int(rest[19])


def descendants(*roots: int) -> dict[int, int]:
    """{pid: start time} of every living descendant of `roots` (default: this process), from one read of /proc (Linux)."""
    roots = roots or (os.getpid(),)
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is None or st[1] == "Z":
            continue
        children.setdefault(st[0], []).append(int(entry))
        starts[int(entry)] = st[2]
    out, stack = {}, list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in out:
                out[child] = starts[child]
                stack.append(child)
    return out


def alive(processes: dict[int, int]) -> list[int]:
    """The processes of `processes` ({pid: start time}) still running (same pid and start time, not a zombie)."""
    left = []
    for pid, start in processes.items():
        st = _stat(pid)
        if st is not None and st[1] != "Z" and st[2] == start:
            left.append(pid)
    return left


def listening_ports(pids: Iterable[int] | None = None) -> set[int]:
    """TCP ports in LISTEN state, all of them or those of sockets held by `pids` (from /proc, Linux)."""
    listening: dict[int, int] = {}  # socket inode -> port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A":
                listening[int(f[9])] = int(f[1].rsplit(":", 1)[1], 16)
    if pids is None:
        return set(listening.values())
    ports = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in listening:
                    ports.add(listening[inode])
    return ports


# ---- the cluster ----------------------------------------------------------------------------------------------

class LiveCluster:
    """Ray, the model servers, and their clean stop (module docstring)."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, object_store_mb: int = 256):
        self.address = address
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.started_ray = False  # this process called ray.init (and shuts it down)
        self.started_cluster = False  # ... and that started a local Ray instance
        self.actors: list[Any] = []
        self.infos: list[dict[str, Any]] = []
        self.run_ids: set[str] = set()  # of the servers started: their work directories are named after it
        self.processes: dict[int, int] = {}  # what was started, recorded while it ran
        self.ports: set[int] = set()
        self._previous_sigterm: Any = None

    # context manager
    def __enter__(self) -> "LiveCluster":
        ray = import_ray()
        self._catch_sigterm()
        try:
            before = descendants()
            if not ray.is_initialized():
                kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                              configure_logging=True, runtime_env={"env_vars": dict(THREAD_ENV)})
                if self.address is None:
                    kwargs.update(address="local", num_cpus=self.num_cpus, object_store_memory=self.object_store_mb * 2**20)
                    self.started_cluster = True
                else:
                    _reachable(self.address)
                    kwargs.update(address=self.address)
                try:
                    ray.init(**kwargs)
                except Exception as exc:  # noqa: BLE001 - a cluster that cannot be started or joined: one line
                    where = "start a local Ray instance" if self.address is None else f"join the Ray cluster at {self.address!r}"
                    raise LiveError(f"could not {where}: {remote_error(exc)}") from None
                self.started_ray = True
            self.record_processes(exclude=before)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _catch_sigterm(self) -> None:
        """SIGTERM becomes KeyboardInterrupt while the cluster is up, so `close` runs (main thread only)."""
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        try:
            self._previous_sigterm = signal.signal(signal.SIGTERM, interrupt)
        except ValueError:  # not the main thread
            self._previous_sigterm = None

    def record_processes(self, exclude: dict[int, int] | None = None) -> None:
        """Remember the processes this cluster started and their ports: at start, the driver's new children (Ray's
        services, less `exclude`, what ran before); later, those and their descendants (Ray's workers), never
        another child of this process (a test's subprocess, multiprocessing's resource tracker)."""
        if not self.started_cluster:
            return
        if not self.processes:
            now = {p: s for p, s in descendants().items() if not exclude or p not in exclude}
        else:
            now = descendants(*alive(self.processes))
        self.processes.update(now)
        self.ports |= listening_ports(now)

    # servers
    def start_servers(self, specs: list[ServerSpec], timeout_s: float = START_TIMEOUT_S) -> list[dict[str, Any]]:
        """One actor per spec, started together; returns each server's `info` once all are up."""
        ray = import_ray()
        free = ray.available_resources()
        cpus, gpus = sum(s.threads for s in specs), sum(s.device == "cuda" for s in specs)
        if free.get("CPU", 0) < cpus or free.get("GPU", 0) < gpus:
            raise LiveError(f"the Ray cluster has {free.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} GPUs free; {len(specs)} servers "
                            f"need {cpus} CPUs (one per server thread) and {gpus} GPUs")
        cls = ray.remote(ModelServer)
        self.run_ids |= {spec.run_id for spec in specs}
        for spec in specs:
            options: dict[str, Any] = dict(num_cpus=spec.threads, max_restarts=0, max_task_retries=0, max_concurrency=64,
                                           name=f"aigc-live-{spec.run_id}-server{spec.index}")
            if spec.device == "cuda":
                options["num_gpus"] = 1
            self.actors.append(cls.options(**options).remote(spec))
        try:
            self.infos = ray.get([a.info.remote() for a in self.actors], timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise LiveError(f"the model servers did not start within {timeout_s:g} s") from None
        except ray.exceptions.RayError as exc:
            raise LiveError(f"a model server failed to start: {remote_error(exc)}") from None
        self.record_processes()
        return self.infos

    def close(self) -> None:
        """Stop every actor and the Ray instance this cluster started; wait for (then kill) what it started."""
        try:
            ray = import_ray()
        except LiveError:
            return
        try:
            self.record_processes()
        except Exception:  # noqa: BLE001 - /proc unreadable: nothing more to record
            pass
        if ray.is_initialized():
            stops = []
            for actor in self.actors:
                try:
                    stops.append(actor.stop.remote())
                except Exception:  # noqa: BLE001 - a dead actor
                    pass
            try:
                ray.wait(stops, num_returns=len(stops), timeout=5.0)
            except Exception:  # noqa: BLE001 - dead actors raise here; they are killed below anyway
                pass
            for actor in self.actors:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
        self.actors = []
        if self.started_ray and ray.is_initialized():
            ray.shutdown()
        self.started_ray = False
        self._reap()
        host = socket.gethostname()
        servers = {int(i["pid"]): _stat(int(i["pid"])) for i in self.infos if i.get("host") == host}
        deadline = time.monotonic() + GRACE_S  # a killed server's process may take a moment to go
        while alive({p: st[2] for p, st in servers.items() if st is not None}) and time.monotonic() < deadline:
            time.sleep(0.05)
        for info in self.infos:  # a killed server could not remove its work directory
            if info.get("host") == host and info.get("work_dir"):
                shutil.rmtree(info["work_dir"], ignore_errors=True)
        for run_id in self.run_ids:  # nor could one interrupted while it started (this host's)
            for directory in Path(tempfile.gettempdir()).glob(f"aigc-live-{run_id}-s*"):
                shutil.rmtree(directory, ignore_errors=True)
        if self._previous_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            except ValueError:
                pass
            self._previous_sigterm = None

    def _reap(self) -> None:
        """Wait for the processes this cluster started to exit; kill (by pid) any still alive after GRACE_S."""
        deadline = time.monotonic() + GRACE_S
        while alive(self.processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        killed = alive(self.processes)
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + KILL_WAIT_S  # SIGKILL is delivered, not instant (a process in a system call)
        while killed and alive(self.processes) and time.monotonic() < deadline:
            time.sleep(0.05)

    def leftovers(self) -> tuple[list[int], set[int]]:
        """Processes started by this cluster still alive, and ports they held still listening (both empty after close)."""
        return alive(self.processes), self.ports & listening_ports()


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse at once a host:port nobody listens on (Ray itself retries for minutes); other forms go to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise LiveError(f"--address = {address!r} is not allowed; expected a Ray cluster's host:port ({exc.strerror or exc} there)") from None


def remote_error(exc: BaseException) -> str:
    """A failure reported by Ray as one line: its type and the last line of its message (Ray's carry the remote
    traceback first and the cause last), cut after a sentence when long."""
    return one_line(exc, 200, line="last", typed=True)
