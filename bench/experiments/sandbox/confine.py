"""Linux confinement of one child process: limits, namespaces, a memory cgroup, a tmpfs for its output, and a
supervisor that watches it and kills its whole tree (docs/sandbox.md). It knows nothing of schedulers or runs:
`session(task, limits, ...)` starts `python -m bench.experiments.sandbox.worker` on a task file and hands back how
it ended and where its output lies; bench.experiments.sandbox.run decides what the output means.

- Limits: wall time (the parent kills the child's whole process group, and its pid namespace goes with it), CPU
  time (RLIMIT_CPU in the child), resident memory (a cgroup v2 `memory.max` where this process may create one,
  and always a watch of the child's process tree), output size and file count (its writable directory is a tmpfs
  of exactly that size where it has a mount namespace, so the kernel refuses the excess; watched otherwise),
  number of processes.
- Isolation where Linux allows it (`unshare`): own user, network, mount and pid namespaces; an unprivileged uid
  inside; a root of its own that holds only its inputs, read-only, and its fresh work directory; no capabilities;
  a minimal environment. The report says what worked.
- Nothing outlives the caller: a watchdog process (bench.experiments.sandbox.worker.watchdog), started first, is
  the child's parent; when the caller ends, by any signal, SIGKILL included, it kills the child's whole tree and
  removes the work directory. SIGTERM and SIGHUP of the caller run the normal cleanup first (`_Signals`).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError, ConfigError, one_line
from bench.experiments.sandbox.worker import remove_tree

Progress = Callable[[str], None]


GiB = 2**30
MiB = 2**20
POLL_S = 0.05  # how often the parent checks the child's memory and wall time
END_GRACE_S = 10.0  # how long an interactive child may take to exit once the parent closed its channel
FAILED_GRACE_S = 1.0  # the same after the interaction failed (the run has failed already: no reason to wait 10 s)
OUTPUT_POLL_S = 0.5  # how often it measures the work directory (a report where the tmpfs enforces the limit)
_FORWARD_ENV = ("LANG", "LC_ALL", "TZ", "PYTHONPATH", "PYTHONHASHSEED", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_DISABLE_JIT", "NUMBA_THREADING_LAYER")
_ROOT = Path(__file__).resolve().parents[3]  # the suite's source tree (the child's imports come from here)
_PACKAGES = ("bench", "schedulers", "tasks", "profiles")  # what the child imports of it (the rest stays unseen)
_WORKER = Path(__file__).resolve().with_name("worker.py")  # the watchdog runs it by path: standard library only
# what the child sees of the system besides the Python installation: programs, shared libraries and their cache
_SYSTEM_VIEW = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use. `cpu_s=None`: no CPU-time limit beyond the wall time."""

    wall_s: float = 3600.0
    cpu_s: float | None = None
    memory_bytes: int = 4 * GiB
    output_bytes: int = GiB
    max_files: int = 100_000
    max_processes: int = 64

    def __post_init__(self) -> None:
        for key in ("wall_s", "memory_bytes", "output_bytes", "max_files", "max_processes"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"sandbox limit {key}", value, "a number > 0")
        if self.cpu_s is not None and not self.cpu_s > 0:
            raise ConfigError("sandbox limit cpu_s", self.cpu_s, "a number > 0, or None")

    def describe(self) -> str:
        cpu = f"{self.cpu_s:g} s" if self.cpu_s else "no limit"
        return (f"wall {self.wall_s:g} s, CPU {cpu}, memory {size_text(self.memory_bytes)}, output {size_text(self.output_bytes)} "
                f"in at most {self.max_files:,} files, {self.max_processes} processes")


@dataclass(frozen=True)
class Isolation:
    """What confined the child, one phrase per mechanism: "isolated (...)" or "not isolated (why)"."""

    network: str
    processes: str
    filesystem: str
    privileges: str
    memory: str
    output: str

    def lines(self) -> list[str]:
        return [f"{k}: {v}" for k, v in asdict(self).items()]


@dataclass
class Usage:
    """What the child used, measured by the parent (the kernel's accounting and the parent's own watch)."""

    wall_s: float = 0.0
    cpu_s: float | None = None
    peak_memory_bytes: int = 0
    output_bytes: int = 0
    processes: int = 0


class OutputRefused(Exception):
    """The child's output is not what the protocol allows (one line)."""


@dataclass
class Finished:
    """How a confined child ended: `reason` is "" when its worker finished, else why it failed (one line)."""

    reason: str
    limits: Limits
    isolation: Isolation
    usage: Usage
    log_tail: str  # the last lines the child printed (for the user; never parsed)
    answer: Any = None  # what an interactive session's `interact` returned
    failure: BaseException | None = None  # what it raised (the reason says it in one line)


@contextmanager
def session(task: dict, limits: Limits, isolate: bool, progress: Progress | None, prepare: Callable[[Path], None] | None,
            *, extra_fds: Sequence[int] = (), interact: Callable[[], Any] | None = None):
    """Run the child on `task` in a fresh work directory; yield (how it finished, its output directory), then
    remove everything. `finished.reason` is "" when the worker finished (its output still to be checked).

    With `interact`, the parent talks to the running child: `interact()` runs in this thread while the supervisor
    watches the child in another, and the child's end is `interact`'s business (it closes the channel, whose
    descriptors for the child are `extra_fds`); `finished.answer` is what it returned. A breach of a limit kills
    the child and is the reason, whatever `interact` saw of it (a closed channel)."""
    if not sys.platform.startswith("linux"):
        raise BenchError(f"the sandbox needs Linux (/proc, namespaces); this is {sys.platform}")
    signals = _Signals()
    pipes = work = cgroup = supervisor = watchdog = None
    try:
        pipes = _Pipes(extra_fds)
        watchdog = _Watchdog(pipes)  # first: from here on, whatever ends this process, the watchdog cleans up
        pipes.close(*pipes.child_ends(), pipes.log_w)  # the watchdog holds them for the child
        work = Path(tempfile.mkdtemp(prefix="aigc-sandbox-"))
        watchdog.guard(work=str(work))
        (work / "rw").mkdir()
        ns = namespaces() if isolate else Namespaces(reason="isolation turned off")
        if prepare is not None:
            prepare(work)
        cgroup, cgroup_note = _MemoryCgroup.create(limits.memory_bytes)
        if cgroup is not None:
            watchdog.guard(cgroup=str(cgroup.path))
        task = {**task, "status_fd": pipes.status_w, "progress_fd": pipes.progress_w, "ack_fd": pipes.ack_r,
                "limits": {"wall_s": limits.wall_s, "cpu_s": limits.cpu_s, "output_bytes": int(limits.output_bytes),
                           "max_files": int(limits.max_files)},
                "mount_namespace": ns.mount, "probe_dirs": _probe_dirs(work), "host_netns": _netns_inode(),
                "view": _view(task), "cgroup": str(cgroup.path) if cgroup else None,
                "sys_path": [*task.get("sys_path", []), os.getcwd()]}
        (work / "task.json").write_text(json.dumps(task), encoding="utf-8")
        command = [*ns.prefix, sys.executable, "-P", "-B", "-m", "bench.experiments.sandbox.worker", str(work)]
        supervisor = _Supervisor(command, work, _child_env(work), limits, pipes, cgroup, watchdog)
        answer, failure = None, None
        if interact is None:
            ended = supervisor.run(progress)
        else:
            ended, answer, failure = _alongside(supervisor, progress, interact)
        out = supervisor.output_root() / "out"
        isolation = _isolation(ns, ended.status.get("isolation"), cgroup, cgroup_note, limits, supervisor.pin is not None)
        if interact is None:
            reason = ended.kill_reason or _exit_reason(ended, limits, cgroup, out, "checks.json" if task["kind"] == "check" else "result.json")
        elif failure is None:
            reason = ended.kill_reason or ""
        else:  # the channel saw the failure; a limit behind it is the cause
            reason = ended.kill_reason or _limit_reason(ended, limits, cgroup) or _worker_error(out, str(failure)) or one_line(str(failure))
        yield Finished(reason or "", limits, isolation, ended.usage, ended.log_tail, answer, failure), out
    finally:
        if supervisor is not None:
            supervisor.release()
        if cgroup is not None:
            cgroup.remove()
        if work is not None:
            _remove_tree(work)
        if watchdog is not None:
            watchdog.close()  # it ends: nothing of the child is left, and it removes nothing more
        if pipes is not None:
            pipes.close()
        signals.end()  # a SIGTERM or SIGHUP that came meanwhile now ends this process, as its sender meant


def _alongside(supervisor: _Supervisor, progress: Progress | None, interact: Callable[[], Any]) -> tuple[_Ended, Any, BaseException | None]:
    """`interact()` here while the supervisor runs the child in a thread; once it is done, the child has
    END_GRACE_S to exit before it is killed (FAILED_GRACE_S when interact failed). Returns how the child ended, and
    interact's answer or failure."""
    import threading

    box: dict[str, Any] = {}

    def watch() -> None:
        try:
            box["ended"] = supervisor.run(progress)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            box["error"] = exc

    thread = threading.Thread(target=watch, name="sandbox-supervisor", daemon=True)
    thread.start()
    answer, failure = None, None
    try:
        answer = interact()
    except BaseException as exc:  # noqa: BLE001 - the child's failure, a limit, or the caller's interrupt
        failure = exc
    if isinstance(failure, (KeyboardInterrupt, SystemExit)):  # interrupted (SIGTERM too, `_Signals`): no grace
        supervisor.ended_by_parent = True
    thread.join(END_GRACE_S if failure is None else FAILED_GRACE_S)
    if thread.is_alive():  # it did not exit after the channel closed: end it (not a failure of the run)
        supervisor.ended_by_parent = True
        thread.join()
    if "error" in box:
        raise box["error"]
    if isinstance(failure, (KeyboardInterrupt, SystemExit)):
        raise failure
    return box["ended"], answer, failure


# ---- namespaces and cgroups -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Namespaces:
    """The `unshare` command line that worked here, and what it gives; `reason` says why there is none."""

    prefix: tuple[str, ...] = ()
    pid: bool = False
    own_proc: bool = False
    mount: bool = False
    net: bool = False
    reason: str = ""
    uid: int | None = None  # the child's uid inside its user namespace


NOBODY = 65534  # the uid and gid the child has inside its user namespace where unshare can map them
_UNPRIVILEGED = ("--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}", "--keep-caps")  # util-linux >= 2.38
_UNSHARE_VARIANTS = (  # strongest first; the user namespace drops the host's privileges for the rest
    # uid 65534 inside; --keep-caps leaves the init the namespace's capabilities (ambient) to build its root first
    ((*_UNPRIVILEGED, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"), True, True, NOBODY),
    (("--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"), True, True, 0),
    (("--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child"), True, False, 0),
    (("--user", "--map-root-user", "--net", "--mount"), False, False, 0),
)


@lru_cache(maxsize=1)
def namespaces() -> Namespaces:
    """Probe once per process which namespaces an unprivileged child can get (`unshare ... true`)."""
    if not sys.platform.startswith("linux"):
        return Namespaces(reason=f"namespaces need Linux; this is {sys.platform}")
    exe = shutil.which("unshare") or next((p for p in ("/usr/bin/unshare", "/bin/unshare") if os.access(p, os.X_OK)), None)
    if exe is None:
        return Namespaces(reason="the unshare command (util-linux) is not installed")
    last = ""
    for flags, pid, own_proc, uid in _UNSHARE_VARIANTS:
        probe = ["true"] if uid == 0 else ["cat", "/proc/self/status"]  # as uid 65534 it needs its capabilities kept
        try:
            r = subprocess.run([exe, *flags, *probe], check=False, capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.SubprocessError) as exc:
            last = str(exc)
            continue
        if r.returncode == 0 and (uid == 0 or _ambient_capabilities(r.stdout)):
            return Namespaces((exe, *flags), pid=pid, own_proc=own_proc, mount=True, net=True, uid=uid)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
    return Namespaces(reason=f"unprivileged user namespaces are not available here: {one_line(last)}")


def _ambient_capabilities(proc_status: str) -> bool:
    """Whether a /proc/PID/status text shows capabilities that survived exec (CAP_SYS_ADMIN is bit 21)."""
    for line in proc_status.splitlines():
        key, _, value = line.partition(":")
        if key == "CapAmb":
            try:
                return bool(int(value.strip(), 16) >> 21 & 1)
            except ValueError:
                return False
    return False


def _netns_inode() -> int | None:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None


class _MemoryCgroup:
    """A cgroup v2 group with memory.max for one child, beside this process's own group (delegated hierarchies)."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, limit: int) -> tuple[_MemoryCgroup | None, str]:
        base, why = cgroup_base(_read("/proc/self/mountinfo"), _read("/proc/self/cgroup"))
        if base is None:
            return None, why
        path = base / f"aigc-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except OSError as exc:
            return None, f"cannot create a group in {base} ({exc.strerror})"
        group = cls(path)
        try:
            (path / "memory.max").write_text(str(int(limit)))
            for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                if (path / name).exists():
                    (path / name).write_text(value)
        except OSError as exc:
            group.remove()
            return None, f"cannot set memory.max in {base} ({exc.strerror})"
        return group, ""

    def oom_kills(self) -> int:
        for line in _read(self.path / "memory.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def peak(self) -> int:
        text = _read(self.path / "memory.peak").strip()
        return int(text) if text.isdigit() else 0

    def remove(self) -> None:
        try:
            if (self.path / "cgroup.kill").exists():
                (self.path / "cgroup.kill").write_text("1")
            for _ in range(100):
                if not _read(self.path / "cgroup.procs").strip():
                    break
                time.sleep(0.01)
            self.path.rmdir()
        except OSError:
            pass


def cgroup_base(mountinfo: str, cgroup: str) -> tuple[Path | None, str]:
    """Where this process could create a memory-limited group: the parent of its own cgroup v2 group (a group that
    holds processes cannot enable controllers for its children), or its own group when that is the root."""
    mount = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            mount = left.split()[4]
            break
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted"
    rel = next((line[3:] for line in cgroup.splitlines() if line.startswith("0::")), None)
    if rel is None:
        return None, "this process is in no cgroup v2 group"
    own = Path(mount) / rel.strip("/")
    base = own if rel.strip("/") == "" else own.parent
    if "memory" not in _read(base / "cgroup.subtree_control").split():
        return None, f"the cgroup v2 memory controller is not enabled for groups under {base}"
    if not (os.access(base, os.W_OK) and os.access(base / "cgroup.procs", os.W_OK)):
        return None, f"{base} is not writable by this user"
    return base, ""


# ---- the child process ------------------------------------------------------------------------------------------
def _child_env(work: Path) -> dict[str, str]:
    """A minimal environment: no secrets, nothing of the user's but thread counts and library paths."""
    env = {k: os.environ[k] for k in _FORWARD_ENV if k in os.environ}
    rw = work / "rw"
    env.update({"PATH": "/usr/bin:/bin", "HOME": str(rw), "TMPDIR": str(rw / "tmp"), "PYTHONNOUSERSITE": "1",
                "NUMBA_CACHE_DIR": str(rw / ".numba-cache"), "LANG": env.get("LANG", "C.UTF-8")})
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def _probe_dirs(work: Path) -> list[str]:
    """Directories the child must not be able to write in (it checks after making the file system read-only)."""
    dirs = {str(_ROOT), str(work.parent), os.getcwd(), os.path.expanduser("~")}
    return sorted(d for d in dirs if os.path.isdir(d) and not d.startswith(str(work)))


def _view(task: dict) -> dict:
    """What the child's own root holds besides its work directory, all read-only: the system's programs and shared
    libraries (not /etc: only the loader's cache), the Python installation and every directory on this process's
    import path, the suite's packages, the directories of PYTHONPATH and LD_LIBRARY_PATH, the task's `sys_path` and the scheduler's own files; devices that hold no data
    (and the GPU's, where there are any); its own /proc. A directory that holds the temporary folder or the home
    directory (or is /) is never shown whole: that is where other submissions and the user's secrets are. /proc is
    its own where it has a pid namespace with its own /proc (else the host's, and the report says so)."""
    sys_path = [str(d) for d in task.get("sys_path", [])]
    paths = [*_SYSTEM_VIEW, sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *(str(_ROOT / p) for p in _PACKAGES)]
    paths += [d for d in sys.path if d and os.path.isdir(d)]  # site directories a .pth added (a venv on top of another)
    for var in ("PYTHONPATH", "LD_LIBRARY_PATH"):
        paths += [d for d in os.environ.get(var, "").split(os.pathsep) if d]
    paths += [*sys_path, *_scheduler_files(str(task.get("scheduler", "")), sys_path)]
    shown = sorted({os.path.abspath(p) for p in paths if os.path.lexists(p) and not _too_wide(os.path.abspath(p))})
    devices = [*_DEVICES, *sorted(str(p) for p in Path("/dev").glob("nvidia*"))]
    return {"read_only": shown, "devices": [d for d in devices if os.path.exists(d)], "proc": True}


def _too_wide(path: str) -> bool:
    """/, or a directory that holds a temporary folder or the home directory."""
    held = [os.path.realpath(p) for p in (tempfile.gettempdir(), "/tmp", "/var/tmp", os.path.expanduser("~"))]
    real = os.path.realpath(path)
    return real == "/" or any(h == real or h.startswith(real.rstrip("/") + "/") for h in held)


def _scheduler_files(ref: str, sys_path: Sequence[str]) -> list[str]:
    """Where the scheduler's code lies, found without running any of it: the directory of a `path/to/file.py:Class`
    (the file alone where that directory is too wide), else the top-level package or module of `module:Class`
    or of a plugin's entry point (only a top-level name is looked up: that imports nothing)."""
    import importlib.machinery
    import importlib.util

    module, sep, _ = ref.rpartition(":")
    if sep and (module.endswith(".py") or "/" in module or os.sep in module):
        path = os.path.abspath(module)
        return [path if _too_wide(os.path.dirname(path)) else os.path.dirname(path)]
    if not sep:
        from importlib.metadata import entry_points

        from schedulers.registry import BUILTINS, ENTRY_POINT_GROUP

        target = BUILTINS.get(ref) or next((ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == ref), "")
        module = target.partition(":")[0]
    top = module.split(".")[0].strip()
    if not top.isidentifier():
        return []
    try:
        spec = importlib.util.find_spec(top) or importlib.machinery.PathFinder.find_spec(top, [*sys_path, os.getcwd()])
    except Exception:  # noqa: BLE001 - an installed finder that fails: the child then fails to import, in one line
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [str(p) for p in spec.submodule_search_locations]
    return [spec.origin] if spec.origin and os.path.isabs(spec.origin) else []


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived while a sandbox session ran (an interrupt, like Ctrl-C: the session cleans up)."""


class _Signals:
    """SIGTERM and SIGHUP during a session. Their default action ends the process at once, skipping every `finally`
    (the child would be left to the watchdog); instead the first one raises `Terminated` so that the session
    cleans up as after Ctrl-C, and `end()` raises it again with its default action, so that the process still ends
    as its sender meant (`timeout` sees SIGTERM). Only in the main thread and where the action is the default:
    a caller's own handler stays in charge, and elsewhere the watchdog cleans up."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.caught: int | None = None
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) == signal.SIG_DFL:
                    self.previous[sig] = signal.signal(sig, self._catch)

    def _catch(self, sig: int, _frame: Any) -> None:
        if self.caught is None:  # a second one while cleaning up is the same request
            self.caught = sig
            raise Terminated(f"ended by {_signal_name(sig)}")

    def end(self) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)
        if self.caught is not None:
            signal.raise_signal(self.caught)


@dataclass
class _Ended:
    kill_reason: str | None
    status: dict[str, Any]
    usage: Usage
    log_tail: str
    returncode: int
    output_full: str | None = None  # the tmpfs refused more: why, in the words of the limit


class _Pipes:
    """The child's channels: status (init -> parent, the worker never holds it), progress (worker -> parent),
    ack (parent -> init: the parent holds the work file system open; the worker may start)."""

    def __init__(self, extra: Sequence[int] = ()) -> None:
        self.status_r, self.status_w = os.pipe()
        self.progress_r, self.progress_w = os.pipe()
        self.ack_r, self.ack_w = os.pipe()
        self.log_r, self.log_w = os.pipe()  # the child's stdout and stderr
        self.extra = tuple(extra)  # the caller's own descriptors for the child (closed here once it has them)
        self.open = {self.status_r, self.status_w, self.progress_r, self.progress_w, self.ack_r, self.ack_w, self.log_r, self.log_w, *self.extra}

    def child_ends(self) -> tuple[int, ...]:
        return (self.status_w, self.progress_w, self.ack_r, *self.extra)

    def close(self, *fds: int) -> None:
        """Close these descriptors (all that are still open when none is named), each once."""
        for fd in fds or sorted(self.open):
            if fd in self.open:
                self.open.discard(fd)
                os.close(fd)


_CONTROLS: set[int] = set()  # the write ends of live watchdogs' control pipes


def _forget_controls() -> None:
    """In a child forked without exec (multiprocessing's fork start method): let go of the control pipes, so that
    a watchdog still sees its pipe end when this process, its only holder, ends."""
    for fd in list(_CONTROLS):
        try:
            os.close(fd)
        except OSError:
            pass
    _CONTROLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_controls)


class _Watchdog:
    """The process that guards one session from outside (bench.experiments.sandbox.worker.watchdog). Started before
    the work directory exists, in a session of its own (a signal to this process's group does not reach it); it
    starts the child as its own child and reports how it ended. When its control pipe closes, after this process's
    cleanup or because this process died (by any signal, even SIGKILL), it kills the child's whole tree, removes
    the cgroup and the work directory it was told about, and exits."""

    def __init__(self, pipes: _Pipes):
        control_r, self.control_w = os.pipe()
        self.report_r, report_w = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", str(_WORKER), "--watchdog", str(control_r), str(report_w)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                                         env={"PATH": "/usr/bin:/bin"}, pass_fds=(control_r, report_w, *pipes.child_ends(), pipes.log_w),
                                         start_new_session=True)
        except BaseException:
            os.close(self.control_w)
            os.close(self.report_r)
            raise
        finally:
            os.close(control_r)
            os.close(report_w)
        _CONTROLS.add(self.control_w)
        self.buffer = bytearray()
        self.child: int | None = None
        self.exit: dict[str, Any] | None = None  # {"exit": wait status, "cpu_s", "maxrss_kb"} once the child ended
        self.lost = False  # its report pipe closed before the child's end was reported

    def send(self, **message: Any) -> None:
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.control_w, data):]
        except OSError as exc:
            raise BenchError(f"the sandbox's watchdog is gone ({exc.strerror})") from None

    def guard(self, **paths: str) -> None:
        """What to remove when it ends: the work directory, the memory cgroup."""
        self.send(guard=paths)

    def start(self, command: Sequence[str], cwd: Path, env: dict[str, str], fds: Sequence[int], log_fd: int) -> int:
        """Start the child (the descriptors are the watchdog's copies, inherited at its start); its pid."""
        self.send(start={"argv": list(command), "cwd": str(cwd), "env": env, "fds": list(fds), "log_fd": log_fd})
        deadline = time.monotonic() + 60.0
        while self.child is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.report_r], [], [], left)[0]:
                raise BenchError("the sandbox's watchdog did not start the child within 60 s")
            chunk = os.read(self.report_r, 65536)
            if not chunk:
                raise BenchError(f"the sandbox's watchdog ended before starting the child (exit code {self.proc.poll()})")
            for message in self.feed(chunk):
                if "error" in message:
                    raise BenchError(f"the sandbox could not start its child: {one_line(str(message['error']))}")
        return self.child

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """Take what it reported; an empty chunk is the end of its reports."""
        if not chunk:
            self.lost = self.exit is None
            return []
        self.buffer += chunk
        *lines, rest = bytes(self.buffer).split(b"\n")
        self.buffer = bytearray(rest)
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                messages.append(message)
                if isinstance(message.get("pid"), int):
                    self.child = message["pid"]
                if isinstance(message.get("exit"), int):
                    self.exit = message
        return messages

    def close(self) -> None:
        """Let it go: it kills what is left of the child's tree, removes what it guards (already gone) and exits."""
        _CONTROLS.discard(self.control_w)
        os.close(self.control_w)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a process it killed is stuck in the kernel; it goes on without us
            pass
        os.close(self.report_r)


class _Supervisor:
    """Start the child, watch its limits, kill its whole tree on a breach, and collect what the init reported."""

    def __init__(self, command, work, env, limits, pipes: _Pipes, cgroup, watchdog: _Watchdog):
        self.command, self.work, self.env, self.limits, self.cgroup = command, work, env, limits, cgroup
        self.pipes, self.watchdog = pipes, watchdog
        self.status_r, self.progress_r = pipes.status_r, pipes.progress_r
        self.pin: int | None = None  # a descriptor of the child's own tmpfs, opened before its worker starts
        self.acked = False
        self.kill_reason: str | None = None
        self.seen: dict[int, int] = {}  # pid -> start time of every process seen in the child's tree
        self.cpu_ticks: dict[int, int] = {}  # pid -> CPU time last seen (what a killed tree never reports)
        self.usage = Usage()
        self.ended_by_parent = False  # set from another thread: the parent is done with the child; kill it quietly

    def run(self, progress: Progress | None) -> _Ended:
        log_r = self.pipes.log_r
        start = time.monotonic()
        try:
            child = self.watchdog.start(self.command, self.work, self.env, self.pipes.child_ends(), self.pipes.log_w)
        except BaseException:
            self.pipes.close(log_r, self.status_r, self.progress_r, self.pipes.ack_w)
            raise
        pipes = {self.status_r: bytearray(), self.progress_r: bytearray(), log_r: bytearray(), self.watchdog.report_r: bytearray()}
        status_lines: list[bytes] = []
        log = bytearray()
        labels: list[str] = []
        next_tree = next_output = start
        try:
            while True:
                self._read(pipes, status_lines, labels, log, log_r, timeout=POLL_S)
                if status_lines and not self.acked:
                    self._ack(child, status_lines[0])
                if labels and progress is not None:
                    for text in labels:
                        progress(text)
                labels.clear()
                if self.watchdog.exit is not None or self.watchdog.lost:
                    break
                now = time.monotonic()
                if self.kill_reason is not None or self.ended_by_parent:
                    self._kill(child)
                    continue
                if now - start > self.limits.wall_s:
                    self._stop(child, f"killed after {self.limits.wall_s:.1f} s wall time")
                    continue
                if now >= next_tree:
                    next_tree = now + POLL_S
                    rss, n = self._tree(self.watchdog.proc.pid, include_root=False)  # the child and its orphans
                    self.usage.peak_memory_bytes = max(self.usage.peak_memory_bytes, rss)
                    self.usage.processes = max(self.usage.processes, n)
                    if rss > self.limits.memory_bytes:
                        self._stop(child, f"exceeded {size_text(self.limits.memory_bytes)} resident memory")
                    elif n > self.limits.max_processes:
                        self._stop(child, f"started more than {self.limits.max_processes} processes")
                if now >= next_output and self.kill_reason is None:
                    next_output = now + OUTPUT_POLL_S
                    size, files = self._output_usage()
                    self.usage.output_bytes = max(self.usage.output_bytes, size)
                    if size > self.limits.output_bytes:
                        self._stop(child, f"wrote more than {size_text(self.limits.output_bytes)} into its work directory")
                    elif files > self.limits.max_files:
                        self._stop(child, f"created more than {self.limits.max_files:,} files in its work directory")
        finally:
            self._kill(child)  # also on an interrupt; what is left of its tree the watchdog kills at the end
            self._read(pipes, status_lines, labels, log, log_r, timeout=0.0)
            self.pipes.close(self.status_r, self.progress_r, log_r)
            if not self.acked:
                self.pipes.close(self.pipes.ack_w)
                self.acked = True
        ended = self.watchdog.exit or {}
        status = ended.get("exit")
        returncode = os.waitstatus_to_exitcode(status) if isinstance(status, int) else -1
        if self.watchdog.lost:
            self.kill_reason = self.kill_reason or f"the sandbox's watchdog ended unexpectedly (exit code {self.watchdog.proc.poll()})"
        self.usage.wall_s = time.monotonic() - start
        # the child and every descendant it or the watchdog reaped, or what the watch saw when the tree was killed unreaped
        self.usage.cpu_s = max(float(ended.get("cpu_s") or 0.0), sum(self.cpu_ticks.values()) / _CLK_TCK)
        maxrss = int(ended.get("maxrss_kb") or 0) * 1024
        self.usage.peak_memory_bytes = max(self.usage.peak_memory_bytes, maxrss, self.cgroup.peak() if self.cgroup else 0)
        self.usage.output_bytes = max(self.usage.output_bytes, self._output_usage()[0])
        status_info: dict[str, Any] = {}
        for line in status_lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                for key in ("isolation", "worker"):
                    if key in message and key not in status_info:
                        status_info[key] = message[key]
        tail = log[-8192:].decode("utf-8", "replace")
        return _Ended(self.kill_reason, status_info, self.usage, tail, returncode, self._full())

    def _ack(self, pid: int, first_status: bytes) -> None:
        """The init reported its isolation: hold its tmpfs open (when it made one), then let the worker start.

        The tmpfs lives in the child's mount namespace only; a descriptor opened through /proc/PID/root keeps it
        readable here after that namespace is gone, and the worker has not run yet, so it is the init's mount."""
        try:
            facts = json.loads(first_status).get("isolation") or {}
            tmpfs = bool((facts.get("output") or {}).get("tmpfs"))
        except (ValueError, AttributeError):
            tmpfs = False
        if tmpfs:
            try:
                self.pin = os.open(f"/proc/{pid}/root{self.work / 'rw'}", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                if os.fstat(self.pin).st_dev == os.stat(self.work).st_dev:  # not the tmpfs: read the host directory
                    os.close(self.pin)
                    self.pin = None
            except OSError:
                self.pin = None
        try:
            os.write(self.pipes.ack_w, b"1")
        except OSError:
            pass
        self.pipes.close(self.pipes.ack_w)
        self.acked = True

    def output_root(self) -> Path:
        """Where the child's writable directory is read from: its own tmpfs (held open), or the host directory."""
        return Path(f"/proc/self/fd/{self.pin}") if self.pin is not None else self.work / "rw"

    def _output_usage(self) -> tuple[int, int]:
        if self.pin is None:
            return _dir_usage(self.work / "rw", self.limits.max_files)
        st = os.fstatvfs(self.pin)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree - 1

    def _full(self) -> str | None:
        if self.pin is None:
            return None
        st = os.fstatvfs(self.pin)
        if st.f_bavail == 0:
            return f"wrote more than {size_text(self.limits.output_bytes)} into its work directory (its tmpfs is full)"
        if st.f_favail == 0:
            return f"created more than {self.limits.max_files:,} files in its work directory (its tmpfs is full)"
        return None

    def release(self) -> None:
        """Close the tmpfs: the kernel frees it (the namespace that mounted it is gone)."""
        if self.pin is not None:
            os.close(self.pin)
            self.pin = None

    def _read(self, pipes, status_lines, labels, log, log_r, timeout: float) -> None:
        """Read what the pipes hold (up to one wait of `timeout`); keep status lines, progress labels and a log tail."""
        open_fds = [fd for fd in pipes if pipes[fd] is not None]
        deadline = time.monotonic() + timeout
        while open_fds:
            ready, _, _ = select.select(open_fds, [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return
            for fd in ready:
                chunk = os.read(fd, 65536)
                if fd == self.watchdog.report_r:
                    self.watchdog.feed(chunk)
                if not chunk:
                    open_fds.remove(fd)
                    pipes[fd] = None
                    continue
                if fd == self.watchdog.report_r:
                    continue
                if fd == log_r:
                    log += chunk
                    del log[:-65536]
                    continue
                buf = pipes[fd]
                buf += chunk
                *lines, rest = bytes(buf).split(b"\n")
                pipes[fd] = bytearray(rest[-65536:])
                for line in lines:
                    if fd == self.status_r:
                        if len(status_lines) < 16:
                            status_lines.append(line)
                    elif len(labels) < 10_000:  # one per finished episode; a flood is cut, never buffered
                        labels.append(one_line(line.decode("utf-8", "replace"))[:200])
            if timeout == 0.0 or time.monotonic() >= deadline:
                return

    def _stop(self, pid: int, reason: str) -> None:
        self.kill_reason = self.kill_reason or reason
        self._kill(pid)

    def _kill(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)  # the session the child was started in; its pid namespace dies with it
        except (ProcessLookupError, PermissionError):
            pass
        for other, started in list(self.seen.items()):
            if _start_time(other) == started:  # not a recycled pid
                try:
                    os.kill(other, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def _tree(self, root: int, include_root: bool = True) -> tuple[int, int]:
        """Resident bytes and number of processes of the tree under `root` (one pass over /proc)."""
        children: dict[int, list[int]] = {}
        info: dict[int, tuple[int, int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rfind(b")") + 2:].split()
            pid = int(name)
            children.setdefault(int(fields[1]), []).append(pid)
            info[pid] = (int(fields[19]), int(fields[21]), int(fields[11]) + int(fields[12]))
        rss, count, stack = 0, 0, [root] if include_root else list(children.get(root, ()))
        while stack:
            pid = stack.pop()
            if pid not in info:
                continue
            count += 1
            started, pages, ticks = info[pid]
            self.seen[pid] = started
            self.cpu_ticks[pid] = ticks
            rss += pages * _PAGE
            stack.extend(children.get(pid, ()))
        return rss, count


_PAGE = os.sysconf("SC_PAGE_SIZE")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2:].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _dir_usage(root: Path, max_entries: int) -> tuple[int, int]:
    """Allocated bytes and entries under `root` (stops counting past `max_entries`); never follows links."""
    total, count, stack = 0, 0, [str(root)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                count += 1
                if count > max_entries:
                    return total, count
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return total, count


# ---- how it ended -----------------------------------------------------------------------------------------------
def _limit_reason(ended: _Ended, limits: Limits, cgroup: _MemoryCgroup | None) -> str | None:
    """A limit the kernel enforced (memory cgroup, full tmpfs, CPU or file-size signal), or a start that failed;
    None when neither happened. Comes before whatever the worker or the channel said: it is the cause."""
    if cgroup is not None and cgroup.oom_kills():
        return f"exceeded {size_text(limits.memory_bytes)} memory (cgroup memory.max)"
    if ended.output_full:
        return ended.output_full
    if "isolation" not in ended.status:
        detail = one_line(ended.log_tail, line="last")[:300]
        return f"the sandbox did not start (exit code {ended.returncode}{': ' + detail if detail else ''})"
    worker = ended.status.get("worker")
    sig = worker.get("signal") if isinstance(worker, dict) else None
    if isinstance(sig, int):
        cpu = worker.get("cpu_s")
        if limits.cpu_s and (sig == signal.SIGXCPU or (sig == signal.SIGKILL and isinstance(cpu, (int, float)) and cpu >= limits.cpu_s)):
            return f"exceeded {limits.cpu_s:g} s CPU time"
        if sig == signal.SIGXFSZ:
            return f"wrote a file larger than {size_text(limits.output_bytes)}"
    return None


def _worker_error(out: Path, failure: str) -> str | None:
    """Why the worker gave up, as it wrote it (error.json), where the channel only saw its process end."""
    try:
        data = json.loads(read_output(out, ["error.json"], 64 * 1024))
        return f"{one_line(failure)[:200]} ({one_line(str(data['reason']))[:400]})"
    except (OutputRefused, ValueError, KeyError, TypeError):
        return None


def _exit_reason(ended: _Ended, limits: Limits, cgroup: _MemoryCgroup | None, out: Path, done_file: str) -> str | None:
    """None when the worker finished; otherwise the one-line reason, from what the parent knows first."""
    limit = _limit_reason(ended, limits, cgroup)
    if limit is not None:
        return limit
    worker = ended.status.get("worker")
    if not isinstance(worker, dict):
        return f"the sandbox ended without reporting how its worker ended (exit code {ended.returncode})"
    sig = worker.get("signal")
    if isinstance(sig, int):
        return f"killed by signal {_signal_name(sig)}"
    code = worker.get("exit")
    if not isinstance(code, int):
        return "the sandbox lost track of its worker"
    if code == 2:
        try:
            data = json.loads(read_output(out, ["error.json"], 64 * 1024))
            return one_line(str(data["reason"]))[:500] or "the scheduler failed without a reason"
        except (OutputRefused, ValueError, KeyError, TypeError):
            return "exited with code 2 before finishing"
    if code == 0:
        try:
            os.lstat(out / done_file)
            return None
        except OSError:
            return "exited with code 0 before finishing (SystemExit or os._exit in the scheduler?)"
    return f"exited with code {code} before finishing"


def _isolation(ns: Namespaces, facts: Any, cgroup: _MemoryCgroup | None, cgroup_note: str, limits: Limits, tmpfs: bool) -> Isolation:
    facts = facts if isinstance(facts, dict) else {}
    started = bool(facts)
    net = facts.get("network") or {}
    if not ns.net:
        network = f"not isolated ({ns.reason})"
    elif not started:
        network = "unknown (the sandbox did not start)"
    elif net.get("own_namespace"):
        names = ", ".join(net.get("interfaces") or []) or "none"
        network = f"isolated (own network namespace; interfaces: {names}, no route out)"
    else:
        network = "not isolated (the child stayed in the host's network namespace)"
    if ns.pid and facts.get("pid1"):
        processes = "isolated (own pid namespace" + (" and /proc" if ns.own_proc else "; the host's /proc is visible") + "; everything it starts dies with it)"
    else:
        why = ns.reason or "no pid namespace"
        processes = f"not isolated ({why}); its watchdog (its parent and subreaper) kills every process of its tree at the end"
    fs = facts.get("filesystem")
    root = (fs.get("own_root") or {}) if isinstance(fs, dict) else {}
    if not ns.mount:
        filesystem = f"not isolated ({ns.reason})"
    elif not isinstance(fs, dict):
        filesystem = "unknown (the sandbox did not start)"
    elif fs.get("ok") and root.get("ok"):
        proc = "its own /proc" if ns.own_proc else "the host's /proc"
        filesystem = ("read-only, and it sees only its inputs (own root: the Python installation, the suite, the scheduler's own "
                      f"files, system libraries, null devices, {proc}; writable: its work directory only)")
    elif fs.get("ok"):
        why = one_line(str(root.get("reason") or "not built"))[:200]
        filesystem = f"read-only outside its work directory, but it can read whatever this user can (own mount namespace; no own root: {why})"
    else:
        problems = [*(fs.get("refused") or []), *(f"{p} writable" for p in fs.get("writable") or []), fs.get("reason", "")]
        filesystem = "partly isolated (" + "; ".join(p for p in problems if p)[:300] + ")"
    priv = facts.get("privileges") or {}
    if priv.get("ok"):
        uid = priv.get("uid")
        who = (f"uid {uid} in its user namespace, which is uid {os.getuid()} outside" if isinstance(uid, int) and ns.mount
               else f"uid {os.getuid()}")
        privileges = f"none ({who}; capabilities dropped; no new privileges)"
    else:
        privileges = "unknown (the sandbox did not start)" if not started else "not dropped"
    watch = f"resident-memory watch of its process tree every {POLL_S:g} s"
    if cgroup is not None and facts.get("cgroup") == "joined":
        memory = f"cgroup v2 memory.max and a {watch}"
    else:
        memory = f"{watch} (no cgroup: {cgroup_note or facts.get('cgroup', 'not joined')})"
    sizes = f"{size_text(limits.output_bytes)} in {limits.max_files:,} files"
    if tmpfs:
        output = f"hard (its work directory is its own tmpfs of {sizes}: the kernel refuses more)"
    else:
        why = (facts.get("output") or {}).get("reason") or (ns.reason if not ns.mount else "") or (
            "the file system is not isolated" if started else "the sandbox did not start")
        output = (f"watched only ({why}): the work directory is measured every {OUTPUT_POLL_S:g} s, "
                  f"a fast writer gets past {sizes} before it is seen; one file at most {size_text(limits.output_bytes)} (RLIMIT_FSIZE)")
    return Isolation(network, processes, filesystem, privileges, memory, output)


# ---- reading the child's output as plain data ----------------------------------------------------------------------
def read_output(root: Path, parts: Sequence[str], limit: int) -> bytes:
    """A regular file under `root`, without following links at any level, refused when larger than `limit`."""
    flags = os.O_RDONLY | os.O_NOFOLLOW
    try:
        fd = os.open(root, flags | os.O_DIRECTORY)
    except OSError as exc:
        raise OutputRefused(f"no output directory ({exc.strerror})") from None
    name = "/".join(parts)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        raise OutputRefused(f"{name}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        st = os.fstat(file_fd)
        if not stat.S_ISREG(st.st_mode):
            raise OutputRefused(f"{name} is not a regular file")
        if st.st_size > limit:
            raise OutputRefused(f"{name} holds {size_text(st.st_size)}; at most {size_text(limit)} is read")
        with os.fdopen(file_fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise OutputRefused(f"{name} holds more than {size_text(limit)}")
        return data
    finally:
        os.close(file_fd)


# ---- small helpers ------------------------------------------------------------------------------------------------
def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


_remove_tree = remove_tree  # the watchdog removes a work directory the same way (worker.py: standard library only)


def size_text(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
