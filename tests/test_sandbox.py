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

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.engine.metrics import EPISODE_METRICS
from bench.experiments.sandbox import confine as sandbox
from bench.experiments.runs.runner import run
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


    class Forger(Local):
        """Decides at random, then rewrites the worker's output: the actions of `local`, zero timings, invented metrics."""
        name = "forger"
        origins = []

        def reset(self, info, rng):
            super().reset(info, rng)
            main = sys.modules["__main__"]
            if not hasattr(main, "_honest_write"):
                main._honest_write = main._write_json
                main._write_json = self._forge

        def begin_episode(self, episode, training):
            Forger.origins.append([])

        def decide(self, batch):
            Forger.origins[-1].append(np.asarray(batch.origin, dtype=np.int64))
            return self.rng.integers(0, batch.n_servers, len(batch))

        def _forge(self, path, data):
            out = path.parent
            mode = self.config.mode
            if mode == "local":
                for e, parts in enumerate(Forger.origins):
                    np.save(out / "actions" / f"0-{e}.npy", np.concatenate(parts))
                for s in data["per_seed"]:
                    s["decision_us_per_task"] = [0.0] * len(s["decision_us_per_task"])
                data["wall_s"] = 0.0
                (out / "metrics.json").write_text('{"mean_delay_s": 0.0, "p99_delay_s": 0.0}')
            elif mode == "pickled-actions":
                np.save(out / "actions" / "0-0.npy", np.array([Payload(self.config.marker)], dtype=object), allow_pickle=True)
            elif mode == "link":
                os.remove(out / "actions" / "0-0.npy")
                os.symlink("/dev/zero", out / "actions" / "0-0.npy")
            elif mode == "short":
                np.save(out / "actions" / "0-0.npy", np.concatenate(Forger.origins[0])[:-1])
            elif mode == "nan":
                data["wall_s"] = float("nan")
            main = sys.modules["__main__"]
            main._honest_write(path, data)


    class ForgingLearner(Forger):
        """A learner whose checkpoint carries a pickle payload."""
        name = "forging-learner"
        learns = True

        def _forge(self, path, data):
            import torch
            torch.save({0: {"w": torch.zeros(2), "evil": Payload(self.config.marker)}}, path.parent / "checkpoint.pt")
            sys.modules["__main__"]._honest_write(path, data)
''')


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "attacks.py"
    path.write_text(ATTACKS, encoding="utf-8")
    return lambda cls: f"{path}:{cls}"


def _tree(pid: int) -> set[int]:
    """Descendants of `pid` (one pass over /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            children.setdefault(int(data[data.rfind(b")") + 2:].split()[1]), []).append(int(name))
    out, stack = set(), [pid]
    while stack:
        for c in children.get(stack.pop(), ()):
            out.add(c)
            stack.append(c)
    return out


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
        ("Quitter", Limits(), r"SystemExit\(0\) raised in decide"),
        ("Vanisher", Limits(), r"exited with code 0 before finishing \(SystemExit or os\._exit in the scheduler\?\)"),
        ("Raiser", Limits(), r"exception in decide: ValueError: boom"),
        ("TooMany", Limits(), r"scheduler 'too-many' returned (\d+) actions for a batch of (\d+)"),
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


def test_forged_actions_and_numbers_cannot_change_the_recomputed_metrics(plugin, tiny):
    outcome = run_sandboxed(tiny, plugin("Forger"), params={"mode": "local"}, seeds=[0], episodes=2)
    assert outcome.ok, outcome.report()
    local = run(tiny, "local", seeds=[0], episodes=2)
    # the actions it wrote are those of `local`: the metrics are local's, recomputed, not the 0.0 it claimed
    for mine, theirs in zip(outcome.result.per_seed[0].rows, local.per_seed[0].rows):
        assert {k: mine[k] for k in EPISODE_METRICS} == {k: theirs[k] for k in EPISODE_METRICS}
        assert mine["mean_delay_s"] > 0 and mine["decision_us_per_task"] == 0.0  # a timing is only ever reported
    assert outcome.result.summary()["mean_delay_s"] == local.summary()["mean_delay_s"]
    assert outcome.result.scheduler == "forger"


@pytest.mark.parametrize(
    "cls, mode, reason",
    [
        ("Forger", "pickled-actions", r"invalid output: actions/0-0\.npy is not a plain \.npy array .*"),
        ("Forger", "link", r"invalid output: actions/0-0\.npy: Too many levels of symbolic links"),
        ("Forger", "short", r"invalid output: the sandboxed scheduler's actions \(seed 0, episode 0\): \d+ actions for an episode of \d+ tasks"),
        ("Forger", "nan", r"invalid output: the output holds NaN; only finite numbers are allowed"),
        ("ForgingLearner", "", r"invalid output: checkpoint\.pt is not a checkpoint of plain tensors .*"),
    ],
)
def test_a_forged_output_is_refused_without_being_unpickled(plugin, tiny, tmp_path, cls, mode, reason):
    marker = tmp_path / "unpickled"
    outcome = run_sandboxed(tiny, plugin(cls), params={"mode": mode, "marker": str(marker)}, seeds=[0], episodes=1, train_episodes=0)
    assert not outcome.ok and re.fullmatch(reason, outcome.reason), outcome.reason
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
            assert not outcome.ok and outcome.reason == "exception in decide: OSError: [Errno 101] Network is unreachable"
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
    assert failed.reason == "exception in decide: ValueError: boom"


@pytest.mark.skipif(not namespaces().mount, reason="no mount namespace here (the report says so; see the test above)")
def test_the_child_cannot_write_outside_its_work_directory(plugin, tiny, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    outcome = run_sandboxed(tiny, plugin("Writer"), params={"target": str(bundle)}, seeds=[0], episodes=1)
    assert outcome.ok, outcome.report()
    assert outcome.isolation.filesystem == "read-only outside its work directory (own mount namespace)"
    assert outcome.log_tail.count("write refused: Read-only file system") == 2
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
