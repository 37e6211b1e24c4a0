"""Ray for live mode: start (or join) a cluster, start the model servers as actors, and stop everything.

`LiveCluster` is a context manager. Entering it starts a local Ray instance (`address=None`; stopped again on
exit), joins an existing cluster (`address="host:port"` or `"auto"`: only this run's actors are stopped), or
uses the Ray instance this process already runs (a test's shared cluster). Exiting, normally, on an error or on
Ctrl-C (KeyboardInterrupt; SIGTERM is turned into one while the cluster is up): every server actor is asked to
remove its work directory and is killed, the Ray instance it started is shut down, and the processes it started
are given a moment to exit, then SIGTERM, then (after a grace period) SIGKILL, by pid. Nothing is left running
and no port stays bound (tests/test_live.py lists both).

A local instance is this machine's only: every process of it listens on 127.0.0.1 (Ray binds its gRPC servers to
all interfaces, and its runtime-env agent to the machine's address, unless the node's address is the loopback
one, which Ray itself replaces by the machine's address on Linux: `_loopback_only`). Its files live in a
temporary directory of its own (`aigc-ray-*`, Ray's `_temp_dir`), removed at the end; every process of the
cluster names it on its command line or holds its log files there, which is how they are all found
(`processes_under`), whatever their parent is by then.

A driver killed by a signal it cannot catch (SIGKILL) runs no clean-up, and Ray's services notice late: the
kernel kills the driver's direct children (Ray starts them with PR_SET_PDEATHSIG), the workers follow their raylet
within seconds, but the dashboard and runtime-env agents live on for about a minute. So a local cluster starts a
watchdog first (`python -c ... watchdog_main`, in its own session so that the terminal's Ctrl-C does not reach
it): it reads a pipe whose write end only the driver holds; at end of file (the driver closed it after its own
clean stop, or died of any signal) it kills every process still under the cluster's directory and removes that
directory and the servers' work directories.

Each server is one actor in its own worker process: `num_cpus=1` (one thread), `num_gpus=1` on CUDA hardware,
no restarts (a dead server stays dead; the gateway re-dispatches its requests).
"""

from __future__ import annotations

import glob
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench.core.errors import BenchError, one_line
from bench.live.server import ModelServer, ServerSpec

START_TIMEOUT_S = 600.0  # starting a server: importing torch and diffusers, writing and loading its models
SETTLE_S = 1.0  # after shutdown, how long the processes Ray started get to exit by themselves before SIGTERM
GRACE_S = 10.0  # then how long they get after SIGTERM before SIGKILL
KILL_WAIT_S = 5.0  # then how long a killed one may take to be gone
SWEEP_S = 30.0  # how long the watchdog goes on killing what it finds under the cluster's directory
LOOPBACK = "127.0.0.1"
RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is the loopback one (as on macOS)
TEMP_PREFIX = "aigc-ray-"
# Ray's longest socket path is <temp dir>/session_<26-character time>_<pid>/sockets/plasma_store (about 66
# characters below the temp dir) and an AF_UNIX path holds 107 bytes
MAX_TEMP_ROOT = 40
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


def listening_sockets(pids: Iterable[int] | None = None) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets in LISTEN state, all of them or those held by `pids` (from /proc, Linux).
    The address is what the socket is bound to: "0.0.0.0" or "::" is every interface."""
    listening: dict[int, tuple[str, int]] = {}  # socket inode -> (address, port)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A":
                address, port = f[1].rsplit(":", 1)
                listening[int(f[9])] = (_proc_address(address), int(port, 16))
    if pids is None:
        return set(listening.values())
    found = set()
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
                    found.add(listening[inode])
    return found


def listening_ports(pids: Iterable[int] | None = None) -> set[int]:
    """TCP ports in LISTEN state, all of them or those of sockets held by `pids` (from /proc, Linux)."""
    return {port for _, port in listening_sockets(pids)}


def _proc_address(text: str) -> str:
    """An address as /proc/net/tcp{,6} print it (hex, each 32-bit word in the machine's byte order) as a string."""
    raw = bytes.fromhex(text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def is_loopback(address: str) -> bool:
    """Whether a bound address is reachable from this machine only (127.0.0.0/8, ::1, or 127.x mapped into IPv6)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def processes_under(root: str, exclude: Iterable[int] = ()) -> dict[int, int]:
    """{pid: start time} of this user's processes that name `root` on their command line or hold a file below it.

    For a local cluster's directory these are all its processes and only them, whatever their parent is by then:
    Ray's services name the directory in their arguments, and its agents and workers, which rename themselves
    (ray::IDLE, ray::DashboardAgent), keep their log files open in the session directory below it."""
    root = root.rstrip("/")
    prefix, name, uid = root + "/", root.encode(), os.getuid()
    skip = set(exclude)
    found: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) in skip:
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            named = name in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        st = _stat(pid)
        if st is None or st[1] == "Z":
            continue
        if named or _holds_file_under(pid, prefix):
            found[pid] = st[2]
    return found


def _holds_file_under(pid: int, prefix: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def kill_under(root: str, exclude: Iterable[int] = (), seconds: float = SWEEP_S) -> list[int]:
    """SIGKILL every process under `root` (`processes_under`), again until none is found or `seconds` passed (one
    may start another as it dies); returns the pids killed."""
    killed: list[int] = []
    deadline = time.monotonic() + seconds
    while True:
        found = processes_under(root, exclude)
        if not found or time.monotonic() > deadline:
            return killed
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        time.sleep(0.05)


# ---- the watchdog: a local cluster dies with its driver, whatever ends the driver ----------------------------------

class Watchdog:
    """A process that outlives the driver to stop its local cluster (module docstring). The driver holds the only
    write end of a pipe to it; `remove_later` tells it what else to remove; `close` (after the driver's own clean
    stop) ends it."""

    def __init__(self, root: str):
        self.root = root
        read, self._write = os.pipe()  # not inheritable: Ray's processes, started after this, do not hold it
        here = str(Path(__file__).resolve().parents[2])  # where `bench` is, for a checkout that is not installed
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from bench.live.cluster import watchdog_main; watchdog_main()", str(read), str(os.getpid()), root],
                pass_fds=(read,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, env=env)
        except BaseException:
            os.close(self._write)
            raise
        finally:
            os.close(read)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def remove_later(self, pattern: str) -> None:
        """Have the watchdog remove the directories matching `pattern` (a glob) once the cluster's processes are gone."""
        try:
            os.write(self._write, f"remove {pattern}\n".encode())
        except OSError:  # the watchdog is gone: the driver's own stop removes them
            pass

    def close(self, timeout_s: float = KILL_WAIT_S) -> None:
        """End of file for the watchdog: it sweeps (nothing is left after a clean stop) and exits; it is waited for."""
        if self._write < 0:
            return
        os.close(self._write)
        self._write = -1
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def watchdog_main(argv: list[str] | None = None) -> None:
    """The watchdog's process: read the pipe (FD) until end of file, then kill every process under ROOT but the
    driver (DRIVER_PID: exiting cleanly, or dead) and remove ROOT and the directories it was told of."""
    fd, driver, root = (argv if argv is not None else sys.argv[1:])[:3]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver (if a shell sends it here anyway)
    patterns = []
    with open(int(fd), "rb") as pipe:
        for line in pipe:
            kind, _, value = line.decode(errors="replace").rstrip("\n").partition(" ")
            if kind == "remove" and value:
                patterns.append(value)
    kill_under(root, exclude={os.getpid(), int(driver)})
    shutil.rmtree(root, ignore_errors=True)
    for pattern in patterns:
        for directory in glob.glob(pattern):
            shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """While a local Ray instance starts: make 127.0.0.1 its node address, so every process of it binds there.

    `ray.init(_node_ip_address="127.0.0.1")` alone is not enough on Linux: Ray replaces a loopback address by the
    machine's (`resolve_ip_for_localhost`), then binds its gRPC servers to every interface and its runtime-env
    agent to that address. With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 it keeps the loopback address, as it does on
    macOS and Windows, and its servers listen on 127.0.0.1 only. The variable is read when Ray is imported, so the
    constant is set too (Ray may be imported already); the processes started meanwhile inherit the variable."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    saved_env, saved = os.environ.get(RAY_CLUSTER_ENV), getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[RAY_CLUSTER_ENV] = "0"
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(RAY_CLUSTER_ENV, None)
        else:
            os.environ[RAY_CLUSTER_ENV] = saved_env
        if constants is not None and saved is not None:
            constants.ENABLE_RAY_CLUSTER = saved


def _temp_root() -> str:
    """A new directory for a local Ray instance's files (where Ray would put its own), short enough for its sockets."""
    root = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=os.environ.get("RAY_TMPDIR") or tempfile.gettempdir())
    if len(root.encode()) > MAX_TEMP_ROOT:
        shutil.rmtree(root, ignore_errors=True)
        raise LiveError(f"a local Ray instance's directory would be {root!r}, too long for its socket paths (at most {MAX_TEMP_ROOT} "
                        "characters); expected RAY_TMPDIR (or TMPDIR) set to a shorter directory")
    return root


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
        self.sockets: set[tuple[str, int]] = set()  # (address, port) they listened on
        self.temp_root: str | None = None  # the local instance's directory (Ray's _temp_dir), removed at the end
        self.watchdog: Watchdog | None = None
        self._previous_sigterm: Any = None

    # context manager
    def __enter__(self) -> "LiveCluster":
        ray = import_ray()
        self._catch_sigterm()
        try:
            if not ray.is_initialized() and self.address is None:
                self.temp_root = _temp_root()
                self.watchdog = Watchdog(self.temp_root)  # before anything it must stop exists
            before = descendants()
            if not ray.is_initialized():
                kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                              configure_logging=True, runtime_env={"env_vars": dict(THREAD_ENV)})
                if self.address is None:
                    kwargs.update(address="local", num_cpus=self.num_cpus, object_store_memory=self.object_store_mb * 2**20,
                                  _temp_dir=self.temp_root, _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK)
                    self.started_cluster = True
                else:
                    _reachable(self.address)
                    kwargs.update(address=self.address)
                try:
                    with _loopback_only(ray) if self.started_cluster else nullcontext():
                        ray.init(**kwargs)
                except Exception as exc:  # noqa: BLE001 - a cluster that cannot be started or joined: one line
                    where = "start a local Ray instance" if self.address is None else f"join the Ray cluster at {self.address!r}"
                    raise LiveError(f"could not {where}: {remote_error(exc)}") from None
                self.started_ray = True
                self._catch_sigterm(save=False)  # Ray's core worker put its own handler (it aborts the process)
            self.record_processes(exclude=before)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _catch_sigterm(self, save: bool = True) -> None:
        """SIGTERM becomes KeyboardInterrupt while the cluster is up, so `close` runs (main thread only). Set again
        after `ray.init`: Ray's driver replaces it by a handler of its own, in C++, that aborts the process
        (SIGABRT, no clean-up)."""
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        try:
            previous = signal.signal(signal.SIGTERM, interrupt)
        except ValueError:  # not the main thread
            previous = None
        if save:
            self._previous_sigterm = previous

    def record_processes(self, exclude: dict[int, int] | None = None) -> None:
        """Remember the processes this cluster started and their ports: at start, the driver's new children (Ray's
        services, less `exclude`, what ran before); later, those and their descendants (Ray's workers), never
        another child of this process (a test's subprocess, multiprocessing's resource tracker)."""
        if not self.started_cluster:
            return
        if not self.processes:
            watchdog = {self.watchdog.pid} if self.watchdog is not None else set()
            now = {p: s for p, s in descendants().items() if (not exclude or p not in exclude) and p not in watchdog}
        else:
            now = descendants(*alive(self.processes))
        self.processes.update(now)
        sockets = listening_sockets(now)
        self.sockets |= sockets
        self.ports |= {port for _, port in sockets}

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
        if self.watchdog is not None:  # a server killed with the driver cannot remove its model copies
            for run_id in {spec.run_id for spec in specs}:
                self.watchdog.remove_later(os.path.join(tempfile.gettempdir(), f"aigc-live-{run_id}-s*"))
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
            # a server still starting would answer only once started: killed at once (its directory removed below)
            for actor in self.actors if self.infos else []:
                try:
                    stops.append(actor.stop.remote())
                except Exception:  # noqa: BLE001 - a dead actor
                    pass
            try:
                if stops:
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
        if self.temp_root is not None:  # Ray's session (its logs and sockets): this instance's only
            shutil.rmtree(self.temp_root, ignore_errors=True)
            self.temp_root = None
        if self.watchdog is not None:
            self.watchdog.close()
            self.watchdog = None
        if self._previous_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            except ValueError:
                pass
            self._previous_sigterm = None

    def _reap(self) -> None:
        """Wait SETTLE_S for the processes this cluster started to exit, then SIGTERM those left, and SIGKILL any
        still alive after GRACE_S (by pid). `ray.shutdown` stops Ray's services; its dashboard and runtime-env
        agents would notice only about a minute later. The processes are those recorded while the cluster ran and
        those under its directory (`processes_under`: a worker started after the last record)."""
        def left() -> dict[int, int]:
            procs = dict(self.processes)
            if self.temp_root is not None:
                mine = {os.getpid()} | ({self.watchdog.pid} if self.watchdog is not None else set())
                procs.update(processes_under(self.temp_root, exclude=mine))
            return {p: procs[p] for p in alive(procs)}

        for signum, wait_s in ((signal.SIGTERM, SETTLE_S), (signal.SIGKILL, GRACE_S), (None, KILL_WAIT_S)):
            deadline = time.monotonic() + wait_s  # a signal is delivered, not instant (a process in a system call)
            while (procs := left()) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not procs or signum is None:
                return
            self.processes.update(procs)
            for pid in procs:
                try:
                    os.kill(pid, signum)
                except OSError:
                    pass

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
