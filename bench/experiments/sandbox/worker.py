"""The child side of the sandbox (bench.experiments.sandbox.run): run one scheduler from plain inputs, write plain outputs.

Started by the sandbox as `python -P -B -m bench.experiments.sandbox.worker WORKDIR`, never by hand. It is two
processes:

- the init (trusted code, standard library only, before any scheduler code exists in the process): reads
  WORKDIR/task.json; joins the memory cgroup it is given; inside its own mount namespace makes every mount
  read-only and mounts a tmpfs of the output limit's size on WORKDIR/rw (the only writable place); sets the
  CPU-time and file-size limits; drops every capability (inside a user namespace the child is "root" there) and
  forbids new privileges; reports what it achieved on the status pipe and waits until the parent has opened the
  tmpfs; then forks the worker and reports, on the same pipe, how the worker ended. In a pid namespace the init
  is process 1, so when it exits the kernel kills everything the scheduler started.
- the worker (holds no status pipe): imports the suite, then the scheduler (from here on the process is
  untrusted), runs bench.experiments.runs.runner.run and writes into WORKDIR/rw/out: one .npy of actions per
  (seed, evaluation episode), result.json (what cannot be recomputed: timings, learning curves, counters),
  checkpoint.pt (learners: torch.save of plain tensors), or error.json with a one-line reason.

The parent trusts none of the worker's files: it reads them as plain data with size limits and recomputes every
metric from the actions (bench.experiments.sandbox.run).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import sys
import traceback
from pathlib import Path

# mount(2) flags and their statvfs(3) counterparts (Linux)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
_KEPT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
               (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))
# kernel file systems: not data a scheduler could change, and often refuse a remount
_VIRTUAL_FS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs", "debugfs", "tracefs", "pstore", "bpf",
               "fusectl", "configfs", "binfmt_misc", "hugetlbfs", "autofs", "nsfs", "rpc_pipefs", "efivarfs"}
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 4, 24, 28, 38
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP and SECBIT_KEEP_CAPS_LOCKED, each locked: uid 0 never regains capabilities
_SECUREBITS = 0b101111
EXIT_OK, EXIT_FAILED = 0, 2  # the worker's exit codes when it ends by itself


def main(argv: list[str]) -> None:
    work = Path(argv[1]).resolve()
    task = json.loads((work / "task.json").read_text(encoding="utf-8"))
    status_fd, progress_fd, ack_fd = int(task["status_fd"]), int(task["progress_fd"]), int(task["ack_fd"])
    facts = _isolate(task, work)
    _send(status_fd, {"isolation": facts})
    os.read(ack_fd, 1)  # the parent holds the work file system open before any scheduler code can write to it
    os.close(ack_fd)
    worker = os.fork()
    if worker == 0:
        os.close(status_fd)
        code = _work(task, work, progress_fd)
        for stream in (sys.stdout, sys.stderr):  # what the scheduler printed belongs in the log tail
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - a closed or replaced stream loses its tail, nothing more
                pass
        os._exit(code)
    os.close(progress_fd)
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the worker cannot ptrace the init and write its status
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


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# ---- the init: isolation -------------------------------------------------------------------------------
def _isolate(task: dict, work: Path) -> dict:
    facts: dict = {}
    if task.get("cgroup"):
        facts["cgroup"] = _join_cgroup(task["cgroup"])
    rw = work / "rw"  # the only place the worker may write: its home, temporary and output directories
    if task.get("mount_namespace"):
        facts["filesystem"] = _read_only_except(rw, [Path(p) for p in task.get("probe_dirs", [])])
        if facts["filesystem"].get("ok"):
            facts["output"] = _own_tmpfs(rw, int(task["limits"]["output_bytes"]), int(task["limits"]["max_files"]))
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


def _mount_points() -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount this process sees."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        point = left.split()[4].encode().decode("unicode_escape")  # mountinfo escapes space, tab, newline, backslash
        out.append((point, right.split()[0] if right else ""))
    return out


def _read_only_except(work: Path, probes: list[Path]) -> dict:
    """Remount everything read-only in this (private) mount namespace, except `work`; then check by writing."""
    libc = _libc()

    def mount(target: str, flags: int) -> int:
        return 0 if libc.mount(None, target.encode(), None, flags, None) == 0 else ctypes.get_errno()

    mount("/", MS_REC | MS_PRIVATE)  # nothing done here propagates back to the host
    if libc.mount(str(work).encode(), str(work).encode(), None, MS_BIND | MS_REC, None) != 0:
        return {"ok": False, "reason": f"bind-mounting the work directory failed ({os.strerror(ctypes.get_errno())})"}
    refused = []
    seen = set()
    for point, fstype in _mount_points():
        if point in seen or point == str(work) or point.startswith(str(work) + "/"):
            continue
        seen.add(point)
        try:
            flags = os.statvfs(point).f_flag
        except OSError:
            continue
        if flags & os.ST_RDONLY:
            continue
        kept = sum(ms for st, ms in _KEPT_FLAGS if flags & st)  # a user namespace must keep locked flags
        err = mount(point, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)
        if err and fstype not in _VIRTUAL_FS:
            refused.append(f"{point} ({os.strerror(err)})")
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
    """No capabilities, none to regain (locked securebits, empty bounding set), no new privileges on exec."""
    libc = _libc()
    libc.prctl(PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0)  # needs CAP_SETPCAP; without it there is nothing to lock
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: past the last
            break
    data = (_CapData * 2)()
    libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    status = {k: v.strip() for k, _, v in (line.partition(":") for line in Path("/proc/self/status").read_text().splitlines())}
    return {"ok": int(status.get("CapEff", "1"), 16) == 0 and int(status.get("CapPrm", "1"), 16) == 0 and status.get("NoNewPrivs") == "1"}


# ---- the worker ----------------------------------------------------------------------------------------
class HookFailed(BaseException):
    """A scheduler hook raised (BaseException: neither the registry nor the runner may swallow it)."""

    def __init__(self, hook: str, exc: BaseException):
        super().__init__(hook, exc)
        self.hook, self.exc = hook, exc


def _work(task: dict, work: Path, progress_fd: int) -> int:
    out = work / "rw" / "out"
    try:
        (out / "actions").mkdir(exist_ok=True)
        _warm_numba_cache(Path(os.environ.get("NUMBA_CACHE_DIR", work / "rw" / ".numba-cache")))
        if task.get("kind") == "check":
            _check(task, out)
        else:
            _run(task, work, out, progress_fd)
        return EXIT_OK
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a one-line reason for the parent
        try:
            _write_json(out / "error.json", {"reason": _reason(exc)})
        except BaseException:  # noqa: BLE001 - the parent reports the exit code instead
            pass
        return EXIT_FAILED


def _reason(exc: BaseException) -> str:
    from bench.core.errors import BenchError

    if isinstance(exc, HookFailed):
        inner = exc.exc
        if isinstance(inner, SystemExit):
            return f"SystemExit({inner.code!r}) raised in {exc.hook}"
        return f"exception in {exc.hook}: {type(inner).__name__}: {inner}"
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

    root = Path(__file__).resolve().parents[2]
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


def _guard(cls: type, who: str) -> None:
    """Wrap the scheduler's hooks (in this process only): failures name their hook; decide returns one action per task."""
    import numpy as np

    from bench.core.errors import SchedulerError
    from schedulers.interface import Scheduler

    def wrap(hook: str, fn):
        def guarded(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except HookFailed:
                raise
            except BaseException as exc:  # noqa: BLE001 - SystemExit too: a hook must not end the run
                raise HookFailed(hook, exc) from None
        guarded.__name__ = fn.__name__
        return guarded

    decide = wrap("decide", cls.decide)

    def checked(self, batch):
        actions = decide(self, batch)
        shape = np.shape(actions)
        if shape != (len(batch),):
            got = f"{shape[0]} actions" if len(shape) == 1 else f"an array of shape {shape}"
            raise SchedulerError(f"{who} returned {got} for a batch of {len(batch)}")
        return actions

    cls.decide = checked
    cls.__init__ = wrap("__init__", cls.__init__)
    for hook in ("reset", "begin_episode", "end_episode", "stats", "state_dict", "load_state_dict"):
        setattr(cls, hook, wrap(hook, getattr(cls, hook)))
    if cls.observe is not Scheduler.observe:  # the runner builds feedback only for schedulers that observe
        cls.observe = wrap("observe", cls.observe)


def _run(task: dict, work: Path, out: Path, progress_fd: int) -> None:
    import numpy as np

    from bench.core.errors import BenchError
    from bench.experiments.runs.checkpoint import Checkpoint
    from bench.experiments.runs.runner import run
    from bench.scenarios import scenario_from_dict
    from schedulers.registry import label, resolve

    scenario = scenario_from_dict(task["scenario"], source="sandbox task")
    if scenario.hash != task["scenario_hash"]:
        raise BenchError("the scenario changed on its way into the sandbox (its hash differs)")
    sys.path.extend(task.get("sys_path", []))
    ref = task["scheduler"]
    cls = resolve(ref)  # the scheduler's code runs from here on
    name = label(ref, cls)
    _guard(cls, f"scheduler '{name}'")
    checkpoint = None
    if task.get("checkpoint"):
        import torch

        states = torch.load(work / task["checkpoint"], map_location="cpu", weights_only=True)
        checkpoint = Checkpoint(name, scenario.hash, task["checkpoint_params"], {int(k): v for k, v in states.items()})

    def progress(text: str) -> None:
        try:
            os.write(progress_fd, (text[:200] + "\n").encode())
        except OSError:
            pass

    result = run(scenario, ref, params=task["params"], seeds=task["seeds"], episodes=task["episodes"],
                 train_episodes=task["train_episodes"], checkpoint=checkpoint, progress=progress)
    per_seed = []
    for s in result.per_seed:
        for row, actions in zip(s.rows, s.actions):
            np.save(out / "actions" / f"{s.seed}-{row['episode']}.npy", np.ascontiguousarray(actions, dtype=np.int64), allow_pickle=False)
        per_seed.append({"seed": s.seed, "training": s.training, "train_s": s.train_s, "eval_s": s.eval_s, "stats": s.stats,
                         "decision_us_per_task": [r["decision_us_per_task"] for r in s.rows]})
    states = {s.seed: s.state for s in result.per_seed if s.state}
    if result.learns and states:
        import torch

        torch.save(states, out / "checkpoint.pt")
    _write_json(out / "result.json", {
        "scheduler": result.scheduler, "scheduler_class": result.scheduler_class, "scheduler_params": result.scheduler_params,
        "learns": result.learns, "batch_unit": result.batch_unit, "train_episodes": result.train_episodes,
        "wall_s": result.wall_s, "per_seed": per_seed,
    })


def _check(task: dict, out: Path) -> None:
    """The conformance checks (they catch the scheduler's exceptions themselves, so its hooks are not wrapped)."""
    from dataclasses import asdict

    from bench.experiments.runs.conformance import check

    sys.path.extend(task.get("sys_path", []))
    checks = check(task["scheduler"], task["params"], episodes=task["episodes"])
    _write_json(out / "checks.json", {"checks": [asdict(c) for c in checks]})


def _write_json(path: Path, data: dict) -> None:
    from bench.core.io import staged

    with staged(path) as tmp:
        tmp.write_text(json.dumps(data), encoding="utf-8")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main(sys.argv)
