"""The sandbox (bench.experiments.sandbox.run): untrusted scheduler code fails cleanly and cannot forge a number.

The attacking schedulers live in a plugin file written to a temporary directory, as a submitter's would; they
reach the sandbox as `path/to/file.py:Class`, so this process never imports them.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.engine.metrics import EPISODE_METRICS
from bench.experiments.sandbox import confine as sandbox
from bench.experiments.runs.runner import run
from bench.experiments.sandbox.worker import descendants
from bench.experiments.sandbox.run import Limits, Namespaces, cgroup_base, check_sandboxed, namespaces, run_sandboxed

ATTACKS = textwrap.dedent('''
    import os, socket, subprocess, sys, time
    from dataclasses import dataclass

    import numpy as np

    from bench.core.config import option
    from schedulers.interface import Scheduler


    class Local(Scheduler):
        """Every task to its own base station: the truthful behaviour the attacks start from."""
        name = "plugin-local"

        @dataclass(frozen=True)
        class Config:
            token: str = option("", help="a unique text the test looks for")
            port: int = option(0, help="a port on the host's loopback", ge=0)
            target: str = option("", help="a directory outside the sandbox")
            marker: str = option("", help="a file that unpickling a forged output would create")
            mode: str = option("", help="which forgery")

        def decide(self, batch):
            return np.asarray(batch.origin, dtype=np.int64)


    class Sleeper(Local):
        name = "sleeper"

        def decide(self, batch):
            subprocess.Popen(["sleep", "1000." + self.config.token], start_new_session=True)  # a detached grandchild
            print("spawned", file=sys.stderr, flush=True)
            time.sleep(10_000)


    class Hog(Local):
        name = "hog"

        def decide(self, batch):
            block = np.ones(8 * 2**30, dtype=np.uint8)  # 8 GiB, every page touched
            print("allocated all of it", flush=True)
            return super().decide(batch) + int(block[-1]) - 1


    class Spinner(Local):
        name = "spinner"

        def decide(self, batch):
            while True:
                pass


    class Filler(Local):
        name = "filler"

        def decide(self, batch):
            block = b"x" * 2**20
            for i in range(4096):  # 4 GiB in files of 1 MiB, each under the per-file limit, as fast as it can
                with open(f"fill-{i}", "wb") as f:
                    f.write(block)


    class Toucher(Local):
        name = "toucher"

        def decide(self, batch):
            for i in range(100_000):  # empty files: no bytes, only entries
                open(f"{os.environ['TMPDIR']}/t-{i}", "wb").close()


    class Spawner(Local):
        name = "spawner"

        def decide(self, batch):
            for _ in range(20):
                subprocess.Popen(["sleep", "1000"])
            time.sleep(10_000)


    class Quitter(Local):
        name = "quitter"

        def decide(self, batch):
            raise SystemExit(0)


    class Vanisher(Local):
        name = "vanisher"

        def decide(self, batch):
            os._exit(0)


    class Raiser(Local):
        name = "raiser"

        def decide(self, batch):
            raise ValueError("boom")


    class TooMany(Local):
        name = "too-many"

        def decide(self, batch):
            return np.zeros(len(batch) + 1, dtype=np.int64)


    class Outside(Local):
        name = "outside"

        def decide(self, batch):
            return np.full(len(batch), 99)


    class Caller(Local):
        name = "caller"

        def decide(self, batch):
            if not getattr(self, "called", False):
                socket.create_connection(("127.0.0.1", self.config.port), timeout=2).close()
                self.called = True
            return super().decide(batch)


    class Writer(Local):
        """Tries to write outside its work directory; swallows the error and decides normally."""
        name = "writer"

        def reset(self, info, rng):
            super().reset(info, rng)
            for directory in (self.config.target, os.path.dirname(os.path.dirname(__file__))):
                try:
                    with open(os.path.join(directory, "forged.txt"), "w") as f:
                        f.write("forged")
                except OSError as exc:
                    print("write refused:", exc.strerror, file=sys.stderr, flush=True)


    class Payload:
        """Unpickling this calls open(marker, "w"): what a forged pickle would do to the parent."""
        def __init__(self, marker):
            self.marker = marker

        def __reduce__(self):
            return (open, (self.marker, "w"))


    class ChannelForger(Local):
        """Writes its own bytes onto the channel to the parent instead of answering through the suite's code."""
        name = "channel-forger"

        def decide(self, batch):
            import json, struct
            fds = [int(f) for f in os.listdir("/proc/self/fd")]
            out = [fd for fd in fds if os.path.exists(f"/proc/self/fd/{fd}") and "pipe" in os.readlink(f"/proc/self/fd/{fd}")
                   and os.fstat(fd).st_mode & 0o200 and fd > 2]
            mode = self.config.mode
            if mode == "pickled":
                head = json.dumps({"ok": True, "arrays": [["actions", "|O", [1]]]}).encode()
                message = struct.pack("<II", len(head), 8) + head + bytes(8)
            elif mode == "huge":
                message = struct.pack("<II", 2**30, 0)
            elif mode == "nan":
                head = b'{"ok": NaN, "arrays": []}'
                message = struct.pack("<II", len(head), 0) + head
            else:
                head = json.dumps({"ok": True, "mean_delay_s": 0.0, "arrays": []}).encode()
                message = struct.pack("<II", len(head), 0) + head
            for fd in out:
                try:
                    os.write(fd, message)
                except OSError:
                    pass
            time.sleep(30)  # the parent answers the first message it reads: the forged one


    class ForgingLearner(Local):
        """A learner whose policy carries a pickle payload."""
        name = "forging-learner"
        learns = True

        def state_dict(self):
            return {"w": np.zeros(2), "evil": Payload(self.config.marker)}

    class Reader(Local):
        """Tries to read files it must not see; tells what it got through its failure (1: read, 0: refused or absent)."""
        name = "reader"

        def decide(self, batch):
            got = ""
            for path in self.config.target.split(os.pathsep):
                try:
                    with open(path, "rb") as f:
                        f.read(1)
                    got += "1"
                except OSError:
                    got += "0"
            raise ValueError(f"read {got} as uid {os.getuid()}")
''')


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "attacks.py"
    path.write_text(ATTACKS, encoding="utf-8")
    return lambda cls: f"{path}:{cls}"


def _tree(pid: int) -> set[int]:
    """Descendants of `pid` (one pass over /proc, as the sandbox's watchdog looks)."""
    return set(descendants(pid))


def _running(text: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


@pytest.mark.parametrize(
    "cls, limits, reason",
    [
        ("Quitter", Limits(), r"scheduler 'quitter': decide\(\) raised SystemExit: 0"),
        ("Vanisher", Limits(), r"scheduler 'vanisher': decide\(\): its process ended without answering"),
        ("Raiser", Limits(), r"scheduler 'raiser': decide\(\) raised ValueError: boom"),
        ("TooMany", Limits(), r"scheduler 'too-many' returned (\d+) actions for a batch of (\d+) tasks at task 0 \(slot 0\); expected exactly one server per task"),
        ("Outside", Limits(), r"scheduler 'outside' returned server 99 for task 0 \(slot 0, base station 0\); allowed: 0\.\.3"),
        ("Filler", Limits(output_bytes=64 * 2**20), r"wrote more than 64\.0 MiB into its work directory( \(its tmpfs is full\))?"),
        ("Toucher", Limits(max_files=1000), r"created more than 1,000 files in its work directory( \(its tmpfs is full\))?"),
        ("Spawner", Limits(max_processes=8), r"started more than 8 processes"),
        pytest.param("Hog", Limits(memory_bytes=2**30), r"exceeded 1\.0 GiB resident memory", marks=pytest.mark.slow),
        pytest.param("Spinner", Limits(cpu_s=4), r"exceeded 4 s CPU time", marks=pytest.mark.slow),
    ],
)
def test_each_attack_fails_with_its_own_reason_and_leaves_no_process(plugin, tiny, cls, limits, reason):
    before = _tree(os.getpid())
    outcome = run_sandboxed(tiny, plugin(cls), seeds=[0], episodes=1, limits=limits)
    assert not outcome.ok and outcome.result is None
    match = re.fullmatch(reason, outcome.reason)
    assert match, outcome.reason
    if cls == "TooMany":
        assert int(match.group(1)) == int(match.group(2)) + 1
    if cls == "Hog":
        assert outcome.usage.peak_memory_bytes > 2**30 and "allocated all of it" not in outcome.log_tail  # stopped before 8 GiB
    if cls in ("Filler", "Toucher"):
        if namespaces().mount:  # the kernel holds the limit: never past it, however fast the disk
            assert outcome.isolation.output.startswith("hard (its work directory is its own tmpfs"), outcome.isolation.output
            assert outcome.usage.output_bytes <= limits.output_bytes
        else:  # only watched: the report says so (docs/sandbox.md gives how far past it a writer got)
            assert outcome.isolation.output.startswith("watched only ("), outcome.isolation.output
    assert _tree(os.getpid()) <= before


@pytest.mark.slow
def test_a_hang_is_killed_at_the_wall_time_with_everything_it_started(plugin, tiny):
    token = str(uuid.uuid4().int)[:9]  # digits: `sleep 1000.<token>` must be a valid duration
    before = _tree(os.getpid())
    outcome = run_sandboxed(tiny, plugin("Sleeper"), params={"token": token}, seeds=[0], episodes=1, limits=Limits(wall_s=10))
    assert not outcome.ok and outcome.reason == "killed after 10.0 s wall time"
    assert outcome.usage.wall_s >= 10  # not before its limit (how long after: docs/sandbox.md, measured)
    assert "spawned" in outcome.log_tail  # the detached grandchild existed ...
    assert not _running(f"1000.{token}")  # ... and is gone
    assert _tree(os.getpid()) <= before


def test_a_builtin_gives_exactly_the_in_process_metrics_and_actions(tiny, tmp_path):
    from bench.experiments.runs.bundles import read_bundle, write_bundle
    from bench.experiments.runs.replay import replay

    labels: list[str] = []
    outcome = run_sandboxed(tiny, "p2c", seeds=[0, 1], episodes=2, progress=labels.append)
    assert outcome.ok, outcome.report()
    here = run(tiny, "p2c", seeds=[0, 1], episodes=2)
    assert labels == ["seed 0 eval 1/2", "seed 0 eval 2/2", "seed 1 eval 1/2", "seed 1 eval 2/2"]
    got = outcome.result
    assert (got.scheduler, got.scheduler_class, got.scheduler_params, got.learns) == (here.scheduler, here.scheduler_class, here.scheduler_params, here.learns)
    for a, b in zip(got.per_seed, here.per_seed):
        assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a.actions, b.actions))
        assert [{k: r[k] for k in EPISODE_METRICS} for r in a.rows] == [{k: r[k] for k in EPISODE_METRICS} for r in b.rows]
    summary, reference = got.summary(), here.summary()
    summary.pop("timing"), reference.pop("timing")
    assert summary == reference
    out = write_bundle(got, tmp_path / "bundle", extra=outcome.manifest_entry())
    assert replay(out).ok
    entry = read_bundle(out).manifest["sandbox"]
    assert entry["isolation"] == outcome.isolation.lines() and entry["reported_by_sandboxed_code"]


@pytest.mark.slow
def test_a_learner_trains_in_the_sandbox_and_its_checkpoint_is_read_safely(tiny, tmp_path):
    import torch

    from bench.experiments.runs.bundles import load_checkpoint, write_bundle

    outcome = run_sandboxed(tiny, "sac-ts", seeds=[0], episodes=1, train_episodes=2)
    assert outcome.ok, outcome.report()
    here = run(tiny, "sac-ts", seeds=[0], episodes=1, train_episodes=2)
    mine, theirs = outcome.result.per_seed[0], here.per_seed[0]
    assert np.array_equal(mine.actions[0], theirs.actions[0])
    assert set(mine.state) == set(theirs.state)
    assert all(torch.equal(mine.state["tensors"][k], theirs.state["tensors"][k]) for k in theirs.state["tensors"])
    assert len(mine.training) == 2 and mine.stats == theirs.stats
    bundle = write_bundle(outcome.result, tmp_path / "b")
    again = run_sandboxed(tiny, "sac-ts", seeds=[0], episodes=1, checkpoint=load_checkpoint(bundle))
    assert again.ok, again.report()
    assert np.array_equal(again.result.per_seed[0].actions[0], mine.actions[0])
    assert again.result.checkpoint_info["train_episodes"] == 2 and again.result.per_seed[0].training == mine.training


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("pickled", r"scheduler 'channel-forger': decide\(\): .*is not a plain number or boolean"),
        ("huge", r"scheduler 'channel-forger': decide\(\): a header of [\d,]+ bytes; at most [\d,]+ are read"),
        ("nan", r"scheduler 'channel-forger': decide\(\): the header holds NaN; only finite numbers are allowed"),
        ("metrics", r"scheduler 'channel-forger': decide\(\) returned no actions"),
    ],
)
def test_a_child_that_writes_its_own_answers_is_refused_in_one_line(plugin, tiny, tmp_path, mode, reason):
    """The engine runs in the parent: a child has no numbers to forge, only answers to batches. One that writes
    hostile bytes straight onto its channel (a pickled array, a huge header, NaN, invented metrics instead of
    actions) is refused in one line, and nothing it sent is unpickled."""
    marker = tmp_path / "unpickled"
    outcome = run_sandboxed(tiny, plugin("ChannelForger"), params={"mode": mode, "marker": str(marker)}, seeds=[0], episodes=1)
    assert not outcome.ok and re.fullmatch(reason, outcome.reason), outcome.reason
    assert not marker.exists()


def test_a_learner_cannot_hand_over_a_pickle_as_its_policy(plugin, tiny, tmp_path):
    marker = tmp_path / "unpickled"
    outcome = run_sandboxed(tiny, plugin("ForgingLearner"), params={"marker": str(marker)}, seeds=[0], episodes=1, train_episodes=0)
    assert not outcome.ok and re.fullmatch(r"scheduler 'forging-learner': state_dict\(\) raised TypeError: a state holds a Payload; .*", outcome.reason), outcome.reason
    assert not marker.exists()


def test_no_network_connection_leaves_the_sandbox(plugin, tiny):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    try:
        outcome = run_sandboxed(tiny, plugin("Caller"), params={"port": server.getsockname()[1]}, seeds=[0], episodes=1)
        if namespaces().net:
            assert outcome.isolation.lines()[0] == "network: isolated (own network namespace; interfaces: lo, no route out)"
            assert not outcome.ok and outcome.reason == "scheduler 'caller': decide() raised OSError: [Errno 101] Network is unreachable"
            with pytest.raises(BlockingIOError):
                server.accept()
        else:
            assert outcome.isolation.lines()[0] == f"network: not isolated ({namespaces().reason})"
    finally:
        server.close()


def test_without_namespaces_the_report_says_so_and_the_limits_still_hold(plugin, tiny, monkeypatch):
    monkeypatch.setattr(sandbox, "namespaces", lambda: Namespaces(reason="unprivileged user namespaces are not available here: mocked"))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        outcome = run_sandboxed(tiny, plugin("Caller"), params={"port": server.getsockname()[1]}, seeds=[0], episodes=1)
        assert outcome.ok, outcome.report()
        assert server.accept()  # the report below is true: the connection got out
    finally:
        server.close()
    lines = outcome.isolation.lines()
    assert lines[0] == "network: not isolated (unprivileged user namespaces are not available here: mocked)"
    assert lines[1].startswith("processes: not isolated (unprivileged user namespaces are not available here: mocked)")
    assert lines[2] == "filesystem: not isolated (unprivileged user namespaces are not available here: mocked)"
    assert lines[5].startswith("output: watched only (unprivileged user namespaces are not available here: mocked): ")
    failed = run_sandboxed(tiny, plugin("Raiser"), seeds=[0], episodes=1)
    assert failed.reason == "scheduler 'raiser': decide() raised ValueError: boom"


@pytest.mark.skipif(not namespaces().mount, reason="no mount namespace here (the report says so; see the test above)")
def test_the_child_cannot_write_outside_its_work_directory(plugin, tiny, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    outcome = run_sandboxed(tiny, plugin("Writer"), params={"target": str(bundle)}, seeds=[0], episodes=1)
    assert outcome.ok, outcome.report()
    assert outcome.isolation.filesystem.startswith("read-only"), outcome.isolation.filesystem
    refusals = re.findall(r"write refused: (.*)", outcome.log_tail)  # with its own root the bundle is not even there
    assert len(refusals) == 2 and set(refusals) <= {"Read-only file system", "No such file or directory"}, refusals
    assert not (bundle / "forged.txt").exists() and not (tmp_path / "forged.txt").exists()


def test_check_scheduler_runs_in_the_sandbox(plugin):
    outcome = check_sandboxed("least-loaded", episodes=1)
    assert outcome.ok, outcome.report()
    assert [c.name for c in outcome.checks][:2] == ["builds", "valid decisions"] and outcome.checks[1].passed
    failed = check_sandboxed(plugin("Raiser"), episodes=1, limits=Limits(wall_s=600), isolate=False)
    assert failed.ok and not failed.checks[1].passed and "ValueError: boom" in failed.checks[1].detail
    assert failed.isolation.network == "not isolated (isolation turned off)"


def test_cgroup_base_finds_a_delegated_memory_controller(tmp_path):
    mountinfo = f"30 23 0:26 / {tmp_path} rw,nosuid - cgroup2 cgroup2 rw\n"
    own = tmp_path / "user.slice" / "app.scope"
    own.mkdir(parents=True)
    (tmp_path / "user.slice" / "cgroup.procs").write_text("")
    (tmp_path / "user.slice" / "cgroup.subtree_control").write_text("cpu pids\n")
    base, why = cgroup_base(mountinfo, "0::/user.slice/app.scope\n")
    assert base is None and why == f"the cgroup v2 memory controller is not enabled for groups under {tmp_path / 'user.slice'}"
    (tmp_path / "user.slice" / "cgroup.subtree_control").write_text("cpu memory pids\n")
    assert cgroup_base(mountinfo, "0::/user.slice/app.scope\n") == (tmp_path / "user.slice", "")
    assert cgroup_base("", "0::/\n") == (None, "no cgroup v2 hierarchy is mounted")


def test_limits_are_validated_and_described():
    with pytest.raises(ConfigError, match="sandbox limit wall_s = 0 is not allowed"):
        Limits(wall_s=0)
    assert Limits(wall_s=5, cpu_s=2, memory_bytes=2**30).describe().startswith("wall 5 s, CPU 2 s, memory 1.0 GiB")


# ---- nothing outlives the caller; a wall limit always; only its inputs, as an unprivileged uid ------------------
CALLER = textwrap.dedent("""
    import sys
    from bench.experiments.sandbox.run import check_sandboxed, run_sandboxed
    from bench.scenarios import load_scenario

    how, ref, token, isolate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    if how == "check":
        outcome = check_sandboxed(ref, [f'token="{token}"'], episodes=1, isolate=isolate)
    else:
        outcome = run_sandboxed(load_scenario("tiny"), ref, params={"token": token}, seeds=[0], episodes=1, isolate=isolate)
    print("ended by itself:", outcome.reason, flush=True)
""")


def _alive(pid: int, started: int) -> bool:
    """The process `pid` started at `started` still exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return int(fields[19]) == started and fields[0] != b"Z"


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except OSError:
        return None


@pytest.mark.parametrize(
    "sig, how, isolate",
    [
        ("SIGTERM", "check", True),  # as `timeout` stops a command
        ("SIGKILL", "check", True),  # nothing of the caller runs: the watchdog alone cleans up
        ("SIGINT", "run", True),  # Ctrl-C
        ("SIGKILL", "run", True),
        ("SIGKILL", "check", False),  # without namespaces, the detached grandchild too
        ("SIGTERM", "run", False),
    ],
)
def test_nothing_outlives_the_caller_whatever_signal_ends_it(plugin, tmp_path, sig, how, isolate):
    """A Python process runs a sandboxed check or run of a scheduler that starts a detached `sleep` and sleeps in
    decide; once that runs, the process gets `sig`. Then no process of its tree is left, the `sleep` included, and
    its work directory is gone (the caller's temporary folder is the test's own, so that it sees only its own)."""
    import signal
    import subprocess
    import time

    token = str(uuid.uuid4().int)[:9]  # digits: `sleep 1000.<token>` must be a valid duration
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "caller.log"
    with open(log, "wb") as out:
        caller = subprocess.Popen([sys.executable, "-c", CALLER, how, plugin("Sleeper"), token, "1" if isolate else "0"],
                                  env={**os.environ, "TMPDIR": str(tmp)}, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120  # a guard against a hang; the loop ends when the sleep has started
        while not _running(f"1000.{token}") and caller.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = {pid: _start_time(pid) for pid in _tree(caller.pid)}
        assert _running(f"1000.{token}") and caller.poll() is None, log.read_text()
        assert [p.name for p in tmp.iterdir() if p.name.startswith("aigc-sandbox-")], "no work directory while it runs"
        assert len(tree) >= 3, tree  # the watchdog, the child and its worker at least
        caller.send_signal(getattr(signal, sig))
        caller.wait(timeout=120)
        deadline = time.monotonic() + 120  # a guard; the loop ends when nothing is left
        while time.monotonic() < deadline and (
                any(_alive(p, t) for p, t in tree.items() if t is not None) or _running(f"1000.{token}") or any(tmp.iterdir())):
            time.sleep(0.05)
        left = [p for p, t in tree.items() if t is not None and _alive(p, t)]
        assert not left and not _running(f"1000.{token}"), f"left running after {sig}: {left}"
        assert not any(tmp.iterdir()), f"left in the temporary folder after {sig}: {sorted(p.name for p in tmp.iterdir())}"
        assert "ended by itself" not in log.read_text()
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()


@pytest.mark.parametrize("flags", [[], ["--sandbox"]])
def test_check_scheduler_always_has_a_wall_limit_and_shows_it(plugin, flags):
    import inspect

    from typer.testing import CliRunner

    from bench.cli import app
    from bench.cli.info import WALL_LIMIT_S, check_scheduler

    r = CliRunner().invoke(app, ["check-scheduler", plugin("Sleeper"), "--wall-limit", "3", *flags])
    assert r.exit_code == 1, r.output
    assert "killed after 3.0 s wall time" in r.output, r.output
    assert "limits: wall 3 s, CPU no limit" in r.output, r.output
    option = inspect.signature(check_scheduler).parameters["wall_limit"].default
    assert option.default == WALL_LIMIT_S > 0  # without --wall-limit the child still has one


@pytest.mark.skipif(not namespaces().mount, reason="no mount namespace here (the report says so)")
def test_the_child_sees_only_its_inputs_as_an_unprivileged_user(plugin, tiny, tmp_path):
    """Another submission's files in the temporary folder, the test's own files and /etc/shadow are not there for
    the child; the same reads succeed outside the sandbox, so nothing else explains the refusal."""
    import shutil
    import tempfile

    others = [Path(tempfile.mkdtemp(prefix=prefix)) for prefix in ("aigc-sandbox-", "aigc-verify-")]
    try:
        secrets_ = [d / "secret.txt" for d in others] + [tmp_path / "secret.txt"]
        for f in secrets_:
            f.write_text("secret")
        targets = os.pathsep.join([*map(str, secrets_), "/etc/shadow"])
        confined = run_sandboxed(tiny, plugin("Reader"), params={"target": targets}, seeds=[0], episodes=1)
        match = re.search(r"read ([01]+) as uid (\d+)", confined.reason)
        assert match, confined.report()
        assert confined.isolation.filesystem.startswith("read-only, and it sees only its inputs (own root"), confined.isolation.filesystem
        assert match.group(1) == "0000", f"read by the sandboxed child: {match.group(1)} (other sandbox, other verify, tmp_path, /etc/shadow)"
        if namespaces().uid:
            assert int(match.group(2)) == namespaces().uid != 0
            assert confined.isolation.privileges.startswith(f"none (uid {namespaces().uid} in its user namespace"), confined.isolation.privileges
        free = run_sandboxed(tiny, plugin("Reader"), params={"target": targets}, seeds=[0], episodes=1, isolate=False)
        assert re.search(r"read 111[01] as uid", free.reason), free.reason  # the files are there and readable
    finally:
        for d in others:
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not namespaces().mount, reason="no mount namespace here (the report says so)")
def test_a_learner_still_trains_in_its_own_root(tiny):
    """torch imports and a built-in learner trains in the reduced view of the file system."""
    outcome = run_sandboxed(tiny, "sac-ts", seeds=[0], episodes=1, train_episodes=1)
    assert outcome.ok, outcome.report() + "\n" + outcome.log_tail
    assert outcome.isolation.filesystem.startswith("read-only, and it sees only its inputs"), outcome.isolation.filesystem


@pytest.mark.skipif(not namespaces().mount, reason="no mount namespace here (the report says so)")
def test_the_report_says_what_held_where_less_is_possible(plugin, tiny, tmp_path, monkeypatch):
    """As root of its user namespace (util-linux before 2.38) the own root still hides everything else; where no
    own root can be built, the report says that the child can read whatever this user can, and it can."""
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    best = namespaces()
    flags = ("--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc")
    monkeypatch.setattr(sandbox, "namespaces", lambda: Namespaces((best.prefix[0], *flags), pid=True, own_proc=True, mount=True, net=True, uid=0))
    as_root = run_sandboxed(tiny, plugin("Reader"), params={"target": str(secret)}, seeds=[0], episodes=1)
    assert re.search(r"read 0 as uid 0$", as_root.reason), as_root.reason
    assert as_root.isolation.filesystem.startswith("read-only, and it sees only its inputs"), as_root.isolation.filesystem
    assert as_root.isolation.privileges.startswith("none (uid 0 in its user namespace, which is uid "), as_root.isolation.privileges
    monkeypatch.setattr(sandbox, "_view", lambda task: {})  # as if no root could be built here
    open_view = run_sandboxed(tiny, plugin("Reader"), params={"target": str(secret)}, seeds=[0], episodes=1)
    assert re.search(r"read 1 as uid", open_view.reason), open_view.reason
    assert open_view.isolation.filesystem == ("read-only outside its work directory, but it can read whatever this user can "
                                              "(own mount namespace; no own root: no view was given)")


def test_check_scheduler_drives_the_child_through_the_channel_and_stops_a_sleeper(plugin):
    """check-scheduler runs its episodes here, with the scheduler behind the channel (its code is never imported in
    this process): a `decide` that never returns fails its check after the per-decision limit, and the rest go on."""
    ref = plugin("Sleeper")
    outcome = check_sandboxed(ref, ["token=\"x1\""], episodes=1, decide_s=2.0)
    assert outcome.ok, outcome.report()
    valid = next(c for c in outcome.checks if c.name == "valid decisions")
    assert not valid.passed and valid.detail.endswith("decide() did not return within 2 s"), valid.detail
    assert not [name for name in sys.modules if name.startswith("attacks")]
