"""The child side of the sandbox (bench.experiments.sandbox.run): one scheduler, answering batches over the channel.

Started by the sandbox, never by hand. Three roles, all in this file so that the trusted ones need nothing but the
standard library:

- the watchdog (`python -I -S worker.py --watchdog CONTROL_FD REPORT_FD`; trusted, outside every namespace):
  started by the parent before anything else exists, it starts the child on request and is its parent (and the
  subreaper of everything the child starts). When its control pipe closes, whether because the parent finished
  or because the parent died of any signal, SIGKILL included, it kills the child's whole tree, removes the
  memory cgroup and the work directory it was told about, and exits. So nothing outlives the command.
- the init (`python -P -B -m bench.experiments.sandbox.worker WORKDIR`; trusted code, standard library only,
  before any scheduler code exists in the process): reads WORKDIR/task.json; joins the memory cgroup it is given;
  inside its own mount namespace mounts a tmpfs of the output limit's size on WORKDIR/rw (the only writable
  place), builds a new root that holds only what the worker needs (the Python installation, the suite's
  packages, the scheduler's own files, a few devices, its own /proc and WORKDIR), read-only, and pivots into it;
  sets the CPU-time and file-size limits; drops every capability (it runs as an unprivileged uid of its user
  namespace where unshare allows) and forbids new privileges; reports what it achieved on the status pipe and
  waits until the parent has opened the tmpfs; then forks the worker and reports, on the same pipe, how the
  worker ended. In a pid namespace the init is process 1, so when it exits the kernel kills everything the
  scheduler started.
- the worker (holds no status pipe): imports the channel, then the scheduler (from here on the process is
  untrusted), and answers the parent's messages (bench.experiments.sandbox.channel): each batch arrives as plain
  arrays, each answer leaves as plain arrays. The engine, the workload and the draws are in the parent only. A
  failure before the channel is up is written to WORKDIR/rw/out/error.json as one line.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# mount(2) flags and their statvfs(3) counterparts (Linux)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
_KEPT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
               (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))
# kernel file systems: not data a scheduler could change, and often refuse a remount
_VIRTUAL_FS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs", "debugfs", "tracefs", "pstore", "bpf",
               "fusectl", "configfs", "binfmt_misc", "hugetlbfs", "autofs", "nsfs", "rpc_pipefs", "efivarfs"}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 28, 36, 38
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP and SECBIT_KEEP_CAPS_LOCKED, each locked: uid 0 never regains capabilities
_SECUREBITS = 0b101111
# pivot_root(2) has no libc wrapper; its number per architecture
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203, "s390x": 217, "i686": 217, "armv7l": 218}
EXIT_OK, EXIT_FAILED = 0, 2  # the worker's exit codes when it ends by itself
WALL_BACKSTOP_S = 30.0  # the init ends its namespace this long after the wall limit, should everything outside it be gone


def main(argv: list[str]) -> None:
    work = Path(argv[1]).resolve()
    task = json.loads((work / "task.json").read_text(encoding="utf-8"))
    status_fd, progress_fd, ack_fd = int(task["status_fd"]), int(task["progress_fd"]), int(task["ack_fd"])
    facts = _isolate(task, argv[1], work)
    _send(status_fd, {"isolation": facts})
    os.read(ack_fd, 1)  # the parent holds the work file system open before any scheduler code can write to it
    os.close(ack_fd)
    init = os.getpid()
    worker = os.fork()
    if worker == 0:
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # without a pid namespace: dies with the init
        if os.getppid() != init:
            os._exit(EXIT_FAILED)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        os.close(status_fd)
        code = _work(task, work, progress_fd)
        for stream in (sys.stdout, sys.stderr):  # what the scheduler printed belongs in the log tail
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - a closed or replaced stream loses its tail, nothing more
                pass
        os._exit(code)
    os.close(progress_fd)
    for key in ("channel_in", "channel_out"):  # the worker's ends: held here too, a dead worker would not close them
        if isinstance(task.get(key), int):
            try:
                os.close(task[key])
            except OSError:
                pass
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the worker cannot ptrace the init and write its status
    _backstop(float(task["limits"].get("wall_s") or 0), worker)
    while True:  # as process 1 of a pid namespace the init also reaps orphans
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            status, usage = None, None
            break
        if pid == worker:
            break
    end: dict = {"cpu_s": usage.ru_utime + usage.ru_stime if usage else None}
    if status is None:
        end["lost"] = True
    elif os.WIFSIGNALED(status):
        end["signal"] = os.WTERMSIG(status)
    else:
        end["exit"] = os.WEXITSTATUS(status)
    _send(status_fd, {"worker": end})
    os._exit(0)  # the kernel now kills what is left in the pid namespace


def _backstop(wall_s: float, worker: int) -> None:
    """End the worker and this init a while after the wall limit even if the parent and its watchdog are gone (the
    parent enforces the limit itself, to the 0.05 s; this only fires when nothing outside is left to)."""
    if wall_s <= 0:
        return

    def expire(_sig: int, _frame: Any) -> None:
        try:
            os.kill(worker, signal.SIGKILL)
        except OSError:
            pass
        os._exit(3)  # process 1 of a pid namespace: the kernel kills the rest

    signal.signal(signal.SIGALRM, expire)  # a handler: process 1 of a namespace ignores a signal left at its default
    signal.setitimer(signal.ITIMER_REAL, wall_s + WALL_BACKSTOP_S)


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# ---- the init: isolation -------------------------------------------------------------------------------
def _isolate(task: dict, work_arg: str, work: Path) -> dict:
    facts: dict = {}
    if task.get("cgroup"):
        facts["cgroup"] = _join_cgroup(task["cgroup"])
    rw = work / "rw"  # the only place the worker may write: its home, temporary and output directories
    if task.get("mount_namespace"):
        facts["filesystem"], facts["output"] = _confine_files(task, work_arg, work, rw)
    os.chdir(rw)  # (again, in a mount namespace: the current directory still pointed below the mounts just made)
    for sub in ("tmp", "out"):
        (rw / sub).mkdir(exist_ok=True)
    facts["network"] = _network_facts(task.get("host_netns"))
    facts["pid1"] = os.getpid() == 1
    _set_limits(task["limits"])
    facts["privileges"] = _drop_privileges()
    return facts


def _join_cgroup(path: str) -> str:
    try:
        with open(Path(path) / "cgroup.procs", "w") as f:
            f.write("0")
        return "joined"
    except OSError as exc:
        return f"not joined ({exc.strerror})"


def _mount(source: str | None, target: str | Path, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2), raising OSError with the target in its message."""
    enc = (lambda s: None if s is None else str(s).encode())
    if _libc().mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting {target} failed ({os.strerror(err)})")


def _mount_points() -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount this process sees."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        point = left.split()[4].encode().decode("unicode_escape")  # mountinfo escapes space, tab, newline, backslash
        out.append((point, right.split()[0] if right else ""))
    return out


def _confine_files(task: dict, work_arg: str, work: Path, rw: Path) -> tuple[dict, dict]:
    """In this (private) mount namespace: a tmpfs for the output, a root of only the worker's inputs, every mount
    but the output read-only; then check by writing. Returns (filesystem facts, output facts)."""
    _libc().mount(None, b"/", None, MS_REC | MS_PRIVATE, None)  # nothing done here propagates back (unshare's default too)
    output = _own_tmpfs(rw, int(task["limits"]["output_bytes"]), int(task["limits"]["max_files"]))
    if not output["tmpfs"]:
        try:  # a mount of its own, so that making everything else read-only leaves it writable
            _mount(str(rw), rw, None, MS_BIND | MS_REC)
        except OSError as exc:
            return {"ok": False, "reason": f"bind-mounting the work directory failed ({exc.strerror})"}, output
    root = _own_root(task.get("view") or {}, work_arg, work, rw)
    fs = _read_only_except(rw, [Path(p) for p in task.get("probe_dirs", [])])
    fs["own_root"] = root
    return fs, output


def _read_only_except(rw: Path, probes: list[Path]) -> dict:
    """Remount every mount read-only except `rw`; then check by writing."""
    refused = []
    seen = set()
    for point, fstype in _mount_points():
        if point in seen or point == str(rw) or point.startswith(str(rw) + "/"):
            continue
        seen.add(point)
        try:
            flags = os.statvfs(point).f_flag
        except OSError:
            continue
        if flags & os.ST_RDONLY:
            continue
        kept = sum(ms for st, ms in _KEPT_FLAGS if flags & st)  # a user namespace must keep locked flags
        try:
            _mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)
        except OSError as exc:
            if fstype not in _VIRTUAL_FS:
                refused.append(f"{point} ({os.strerror(exc.errno)})")
    writable = [str(p) for p in probes if _can_create(p)]
    return {"ok": not refused and not writable, "refused": refused[:5], "writable": writable}


def _own_tmpfs(rw: Path, size: int, files: int) -> dict:
    """A tmpfs of exactly the output limit on `rw`: the kernel refuses every byte and file past it (ENOSPC).

    It exists only in this mount namespace; the parent reads it through a descriptor it opens before the worker
    starts (bench.experiments.sandbox.run), which keeps it alive after the namespace is gone."""
    options = f"size={size},nr_inodes={files + 1},mode=0700".encode()  # +1: the root directory is an inode
    flags = MS_NOSUID | MS_NODEV
    if _libc().mount(b"tmpfs", str(rw).encode(), b"tmpfs", flags, options) != 0:
        return {"tmpfs": False, "reason": f"mounting a tmpfs failed ({os.strerror(ctypes.get_errno())})"}
    return {"tmpfs": True}


class _Root:
    """A new root file system in a small tmpfs: bind mounts of the paths to keep at their own places, the
    directories and symbolic links that lead to them, and nothing else."""

    def __init__(self, top: Path):
        self.top = str(top)
        self.bound: list[str] = []

    def covered(self, path: str) -> bool:
        return any(path == b or path.startswith(b.rstrip("/") + "/") for b in self.bound)

    def lead_to(self, path: str, depth: int = 0) -> str | None:
        """Create in the new root the directories and links on the way to `path`; its resolved host path, or None
        when it does not exist or lies in something already bound (visible as it is)."""
        parts = Path(path).parts
        cur = "/"
        for i, name in enumerate(parts[1:], start=1):
            nxt = os.path.join(cur, name)
            if self.covered(nxt):
                return None
            try:
                st = os.lstat(nxt)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                if depth > 40:
                    return None
                link = self.top + nxt
                if not os.path.lexists(link):
                    os.symlink(os.readlink(nxt), link)
                return self.lead_to(os.path.join(os.path.realpath(nxt), *parts[i + 1:]), depth + 1)
            if i < len(parts) - 1:
                os.makedirs(self.top + nxt, mode=0o755, exist_ok=True)
            cur = nxt
        return cur if cur != "/" else None

    def bind(self, path: str, recursive: bool = True) -> bool:
        real = self.lead_to(path)
        if real is None:
            return False
        target = self.top + real
        if os.path.isdir(real):
            os.makedirs(target, mode=0o755, exist_ok=True)
        elif not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))  # a mount point for a file or a device
        _mount(real, target, None, MS_BIND | (MS_REC if recursive else 0))
        self.bound.append(real)
        return True


def _own_root(view: dict, work_arg: str, work: Path, rw: Path) -> dict:
    """Pivot into a root that holds only `view` (read-only: the Python installation, the suite, the scheduler's
    files; devices; this namespace's /proc) and the work directory, its output tmpfs the one writable place.

    Everything else of the host (/etc, /root, other work directories in the temporary folder, the caller's
    files) is not there at all: the uid inside maps to the caller's uid outside, so hiding is what protects them."""
    if not view.get("read_only"):
        return {"ok": False, "reason": "no view was given"}
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        return {"ok": False, "reason": f"pivot_root's system call number is not known for {platform.machine()}"}
    top = work / "root"
    pivoted = False
    try:
        top.mkdir(mode=0o700, exist_ok=True)
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=65536,mode=0755")
        root = _Root(top)
        for path in sorted(view["read_only"], key=lambda p: len(os.path.realpath(p))):  # a directory before what lies in it
            root.bind(path)
        root.bind(work_arg, recursive=False)  # task.json and an input checkpoint; neither the tmpfs nor the new root
        _mount(str(rw), root.top + str(rw), None, MS_BIND)  # the output tmpfs, on the work directory's rw/ there
        for device in view.get("devices", []):
            root.bind(device, recursive=False)
        if view.get("proc"):
            root.bind("/proc")
        os.makedirs(root.top + "/dev", mode=0o755, exist_ok=True)
        if not os.path.lexists(root.top + "/dev/shm"):
            os.symlink(str(rw / "tmp"), root.top + "/dev/shm")  # POSIX shared memory counts as its output
        os.chdir(top)
        libc = _libc()
        if libc.syscall(number, b".", b".") != 0:
            raise OSError(ctypes.get_errno(), f"pivot_root failed ({os.strerror(ctypes.get_errno())})")
        pivoted = True
        if libc.umount2(b".", MNT_DETACH) != 0:  # the old root, stacked on the new one by pivot_root(".", ".")
            raise OSError(ctypes.get_errno(), f"detaching the old root failed ({os.strerror(ctypes.get_errno())})")
        os.chdir("/")
    except OSError as exc:
        if not pivoted:
            _libc().umount2(str(top).encode(), MNT_DETACH)
        os.chdir("/")
        return {"ok": False, "reason": one_reason(exc)}
    return {"ok": True, "paths": len(root.bound)}


def one_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).replace("\n", " ")[:200]


def _can_create(directory: Path) -> bool:
    probe = directory / f".aigc-sandbox-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def _network_facts(host_netns: int | None) -> dict:
    try:
        own = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        own = None
    interfaces = []
    try:
        for line in Path("/proc/self/net/dev").read_text().splitlines()[2:]:
            interfaces.append(line.split(":")[0].strip())
    except OSError:
        pass
    return {"own_namespace": own is not None and host_netns is not None and own != host_netns, "interfaces": interfaces[:8]}


def _set_limits(limits: dict) -> None:
    if limits.get("cpu_s"):
        soft = max(1, int(-(-limits["cpu_s"] // 1)))
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 2))  # SIGXCPU, then SIGKILL if it is caught
    if limits.get("output_bytes"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["output_bytes"], limits["output_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_privileges() -> dict:
    """No capabilities, none to regain (locked securebits, empty bounding set), no new privileges on exec; no
    supplementary groups where the user namespace allows dropping them."""
    libc = _libc()
    try:
        os.setgroups([])
    except OSError:
        pass  # "deny" in /proc/self/setgroups (an unprivileged user namespace): the caller's groups stay
    libc.prctl(PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0)  # needs CAP_SETPCAP; without it there is nothing to lock
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: past the last
            break
    data = (_CapData * 2)()
    libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data)  # also empties the ambient set (not in permitted)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    status = {k: v.strip() for k, _, v in (line.partition(":") for line in Path("/proc/self/status").read_text().splitlines())}
    ok = all(int(status.get(k, default), 16) == 0 for k, default in (("CapEff", "1"), ("CapPrm", "1"), ("CapAmb", "0")))
    ok = ok and status.get("NoNewPrivs") == "1"
    return {"ok": ok, "uid": os.getuid(), "gid": os.getgid()}


# ---- the worker ----------------------------------------------------------------------------------------
def _work(task: dict, work: Path, progress_fd: int) -> int:
    out = work / "rw" / "out"
    try:
        (out / "actions").mkdir(exist_ok=True)
        _warm_numba_cache(Path(os.environ.get("NUMBA_CACHE_DIR", work / "rw" / ".numba-cache")))
        if task.get("kind") != "serve":
            raise ValueError(f"task kind {str(task.get('kind'))[:20]!r}; the worker only serves a scheduler over the channel")
        _serve(task)
        return EXIT_OK
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a one-line reason for the parent
        try:
            _write_json(out / "error.json", {"reason": _reason(exc)})
        except BaseException:  # noqa: BLE001 - the parent reports the exit code instead
            pass
        return EXIT_FAILED


def _reason(exc: BaseException) -> str:
    from bench.core.errors import BenchError

    if isinstance(exc, BenchError):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def _warm_numba_cache(cache: Path) -> None:
    """Copy the suite's compiled-kernel cache into this run's NUMBA_CACHE_DIR (the source tree is read-only here).

    numba looks a function up in CACHE_DIR/<source dir name>_<sha1 of the source dir>; a miss only recompiles.
    """
    import hashlib

    root = Path(__file__).resolve().parents[3]  # the suite's source tree
    for package in ("bench", "schedulers", "tasks", "profiles"):
        for pycache in (root / package).rglob("__pycache__"):
            files = [f for f in pycache.iterdir() if f.suffix in (".nbi", ".nbc")]
            if not files:
                continue
            source = str(pycache.parent)
            target = cache / f"{pycache.parent.name}_{hashlib.sha1(source.encode()).hexdigest()}"
            target.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copyfile(f, target / f.name)


def _serve(task: dict) -> None:
    """The scheduler behind the channel (bench.experiments.sandbox.channel): the parent runs the engine and sends
    each batch; this process holds the scheduler's code and nothing of the engine, the workload or the draws."""
    from bench.experiments.sandbox.channel import serve_reference

    sys.path.extend(task.get("sys_path", []))
    serve_reference(task["scheduler"], task["params"], int(task["channel_in"]), int(task["channel_out"]), task.get("lane"))


def _write_json(path: Path, data: dict) -> None:
    from bench.core.io import staged

    with staged(path) as tmp:
        tmp.write_text(json.dumps(data), encoding="utf-8")


# ---- the watchdog ----------------------------------------------------------------------------------------
def watchdog(control_fd: int, report_fd: int) -> None:
    """Guard one sandboxed command from outside (trusted; standard library only).

    Reads JSON lines on `control_fd`: {"guard": {"work": DIR}} and {"guard": {"cgroup": DIR}} name what to remove
    at the end; {"start": {"argv", "cwd", "env", "fds", "log_fd"}} starts the child (its parent is this process, in
    a session of its own, with PR_SET_PDEATHSIG(SIGKILL) so that it dies with this process too) and answers
    {"pid": N} or {"error": "..."} on `report_fd`. When the child ends it kills what the child left (as a subreaper
    it inherits every orphan of the tree) and reports {"exit": wait status, "cpu_s", "maxrss_kb"}.

    When `control_fd` reaches its end (the parent closed it after its own cleanup, or the parent died, by any
    signal), or on SIGTERM: kill the child's whole tree, remove the cgroup and the work directory, exit."""
    libc = _libc()
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for sig in (signal.SIGINT, signal.SIGHUP):  # meant for the parent's terminal or process group, not for this
        signal.signal(sig, signal.SIG_IGN)
    stop: list[int] = []
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # (a handler, so that the wakeup descriptor hears of it)
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    guarded: dict[str, str] = {}
    child: subprocess.Popen | None = None
    cpu_s, maxrss = 0.0, 0
    buffer = b""

    def report(message: dict) -> None:
        try:
            _send(report_fd, message)
        except OSError:
            pass  # the parent is gone: the cleanup still follows

    try:
        while not stop:
            ready, _, _ = select.select([control_fd, wake_r], [], [], 1.0)
            if wake_r in ready:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
            if control_fd in ready:
                chunk = os.read(control_fd, 65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    guarded.update(message.get("guard") or {})
                    if "start" in message and child is None:
                        try:
                            child = _start_child(message["start"])
                            report({"pid": child.pid})
                        except Exception as exc:  # noqa: BLE001 - the parent raises it as one line
                            report({"error": f"{type(exc).__name__}: {exc}"})
                        for fd in [*message["start"]["fds"], message["start"]["log_fd"]]:
                            try:
                                os.close(fd)  # the child's ends: only the child may hold them now
                            except OSError:
                                pass
            while True:  # reap the child and every orphan of its tree
                try:
                    pid, status, usage = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                cpu_s += usage.ru_utime + usage.ru_stime
                maxrss = max(maxrss, usage.ru_maxrss)
                if child is not None and pid == child.pid:
                    child.returncode = os.waitstatus_to_exitcode(status)
                    kill_tree(None)
                    report({"exit": status, "cpu_s": cpu_s, "maxrss_kb": maxrss})
    finally:
        kill_tree(child.pid if child is not None and child.returncode is None else None)
        if guarded.get("cgroup"):
            _remove_cgroup(Path(guarded["cgroup"]))
        if guarded.get("work"):
            remove_tree(Path(guarded["work"]))


def _start_child(spec: dict) -> subprocess.Popen:
    me = os.getpid()

    def prepare() -> None:  # in the child, before exec
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != me:  # the watchdog died before the line above
            os._exit(127)
        for sig in (signal.SIGINT, signal.SIGHUP):  # ignored here; the child must not inherit that
            signal.signal(sig, signal.SIG_DFL)

    return subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL, stdout=spec["log_fd"],
                            stderr=spec["log_fd"], pass_fds=spec["fds"], start_new_session=True,
                            preexec_fn=prepare)  # noqa: PLW1509 - the watchdog has one thread


def descendants(root: int) -> list[int]:
    """Every process below `root` (one pass over /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            children.setdefault(int(data[data.rfind(b")") + 2:].split()[1]), []).append(int(name))
    out, stack = [], [root]
    while stack:
        for pid in children.get(stack.pop(), ()):
            out.append(pid)
            stack.append(pid)
    return out


def kill_tree(group: int | None, patience_s: float = 10.0) -> None:
    """SIGKILL the process group `group` and every descendant of this process, reaping them, until none is left
    (a process stuck in the kernel may outlast `patience_s`)."""
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + patience_s
    while True:
        left = descendants(os.getpid())
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _remove_cgroup(path: Path) -> None:
    try:
        if (path / "cgroup.kill").exists():
            (path / "cgroup.kill").write_text("1")
        for _ in range(100):
            if not (path / "cgroup.procs").read_text().strip():
                break
            time.sleep(0.01)
        path.rmdir()
    except OSError:
        pass


def remove_tree(path: Path) -> None:
    """Remove a work directory even where the child took permissions away (never following links)."""
    def retry(fn: Callable, p: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            fn(p)
        except OSError:
            pass

    try:
        shutil.rmtree(path, onerror=retry)
    except FileNotFoundError:
        pass
    except RecursionError:  # a directory nested deeper than Python recurses
        subprocess.run(["rm", "-rf", "--", str(path)], check=False, capture_output=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--watchdog"]:
        watchdog(int(sys.argv[2]), int(sys.argv[3]))
    else:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        main(sys.argv)
