"""The channel between the engine and a scheduler in another process (bench/experiments/sandbox/channel.py): plain
arrays only, hostile input refused in one line, and a scheduler driven through it decides exactly as in process."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from bench.core.errors import SchedulerError
from bench.experiments.runs.runner import InProcess, run
from bench.experiments.sandbox import channel as ch
from bench.experiments.sandbox.lane import Lane
from schedulers.registry import builtin_names


def _pipe_pair():
    r, w = os.pipe()
    return r, w


def test_arrays_cross_as_raw_bytes_and_come_back_read_only():
    r, w = _pipe_pair()
    arrays = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.array([True, False]), "c": np.linspace(0, 1, 5, dtype=np.float32),
              "empty": np.zeros((4, 0), dtype=bool)}  # a scenario without models holds nothing: held is (B, 0)
    ch.send(w, {"op": "x", "n": 3}, arrays)
    header, got = ch.receive(r, 5.0)
    assert header == {"op": "x", "n": 3}
    for name, a in arrays.items():
        assert got[name].dtype == a.dtype and np.array_equal(got[name], a) and not got[name].flags.writeable
    os.close(r), os.close(w)


def _raw(header: dict, payload: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<II", len(head), len(payload)) + head + payload


@pytest.mark.parametrize("message, fragment", [
    (_raw({"arrays": [["x", "|O", [1]]]}, b"\0" * 8), "not a plain number"),
    (_raw({"arrays": [["x", "<i8", [2]]]}, b"\0" * 8), "not in the message"),
    (_raw({"arrays": []}, b"\0" * 8), "that no array claims"),
    (_raw({"arrays": [["x", "<f8", [-1]]]}), "is not a short list of sizes"),
    (_raw({"arrays": [["x", "V8", [1]]]}, b"\0" * 8), "not a plain number"),
    (struct.pack("<II", 2, 0) + b"[]", "not an object"),
    (struct.pack("<II", 5, 0) + b"{oops", "not JSON"),
    (struct.pack("<II", 12, 0) + b'{"ok": NaN }', "holds NaN"),
    (struct.pack("<II", 2**31, 0), "at most"),
])
def test_a_hostile_message_is_refused_in_one_line(message, fragment):
    r, w = _pipe_pair()
    os.write(w, message)
    with pytest.raises(ch.ChannelError, match=fragment) as caught:
        ch.receive(r, 5.0)
    assert "\n" not in str(caught.value)
    os.close(r), os.close(w)


def test_a_silent_or_vanished_peer_is_a_timeout_or_a_closed_channel():
    r, w = _pipe_pair()
    with pytest.raises(ch.Timeout):
        ch.receive(r, 0.05)
    os.write(w, struct.pack("<II", 100, 0) + b"{")  # a header that never ends
    with pytest.raises(ch.Timeout):
        ch.receive(r, 0.05)
    os.close(w)
    with pytest.raises(ch.ChannelError, match="closed"):
        ch.receive(r, 5.0)
    os.close(r)


CHILD = ["-m", "bench.experiments.sandbox.channel"]


class Subprocess(InProcess):
    """The scheduler in a plain child process behind the channel (no confinement): the engine stays here."""

    def __init__(self, lane=True, lane_size=None):
        self.children, self.lane, self.lane_size = [], lane, lane_size

    def scheduler(self, plan, seed):
        to_child_r, to_child_w = ch.pipe()
        from_child_r, from_child_w = ch.pipe()
        lane = (Lane.create() if self.lane_size is None else Lane.create(self.lane_size)) if self.lane else None
        lane_fds = lane.child_fds() if lane else ()
        params = plan.params if isinstance(plan.params, dict) else list(plan.params)
        proc = subprocess.Popen([sys.executable, *CHILD, plan.scheduler, json.dumps(params), str(to_child_r), str(from_child_w),
                                 *([",".join(map(str, lane_fds))] if lane else [])], pass_fds=(to_child_r, from_child_w, *lane_fds))
        for fd in (to_child_r, from_child_w, *lane_fds):
            os.close(fd)
        self.children.append((proc, to_child_w, from_child_r, lane))
        remote = ch.connect(to_child_w, from_child_r, f"scheduler '{plan.scheduler}'", lane=lane)
        _, facts = super().scheduler(plan, seed)
        return remote, facts

    def close(self):
        for proc, w, r, lane in self.children:
            os.close(w)
            proc.wait(timeout=60)
            os.close(r)
            if lane is not None:
                lane.close()


def _same(a, b):
    for sa, sb in zip(a.per_seed, b.per_seed):
        for ra, rb, xa, xb in zip(sa.rows, sb.rows, sa.actions, sb.actions):
            assert np.array_equal(xa, xb)
            assert {k: v for k, v in ra.items() if k != "decision_us_per_task"} == {k: v for k, v in rb.items() if k != "decision_us_per_task"}
        assert sa.training == [] or [r["mean_delay_s"] for r in sa.training] == [r["mean_delay_s"] for r in sb.training]


@pytest.mark.parametrize("scenario", ["tiny", "tiny-poisson"])
def test_every_rule_decides_through_the_channel_exactly_as_in_process(scenario, request):
    from bench.scenarios import load_scenario

    sc = load_scenario(scenario)
    for name in builtin_names(learns=False, scenario=sc):
        executor = Subprocess()
        try:
            remote = run(sc, name, seeds=[1], episodes=2, executor=executor)  # one child per seed: one seed keeps it quick
        finally:
            executor.close()
        _same(run(sc, name, seeds=[1], episodes=2), remote)


def test_a_learner_trains_and_hands_over_its_policy_through_the_channel(tiny):
    executor = Subprocess()
    try:
        remote = run(tiny, "sac-ts", seeds=[0], episodes=2, train_episodes=2, executor=executor)
    finally:
        executor.close()
    local = run(tiny, "sac-ts", seeds=[0], episodes=2, train_episodes=2)
    _same(local, remote)
    import torch

    a, b = local.per_seed[0].state, remote.per_seed[0].state
    assert a.keys() == b.keys() and all(torch.equal(x, y) for x, y in zip(a["tensors"].values(), b["tensors"].values()))
    assert local.per_seed[0].stats == remote.per_seed[0].stats


def test_a_failing_scheduler_fails_in_one_line_naming_the_hook(tiny, tmp_path, monkeypatch):
    (tmp_path / "boom.py").write_text(
        "import numpy as np\nfrom schedulers import Scheduler\n"
        "class Boom(Scheduler):\n    name = 'boom'\n"
        "    def decide(self, batch):\n        raise ValueError('no\\nway')\n")
    executor = Subprocess()
    try:
        with pytest.raises(SchedulerError, match=r"^scheduler '.*boom.py:Boom': decide\(\) raised ValueError: no way$"):
            run(tiny, f"{tmp_path / 'boom.py'}:Boom", seeds=[0], episodes=1, executor=executor)
    finally:
        executor.close()


LOOKER = '''
import gc, sys
import numpy as np
from schedulers import Scheduler

ENGINE = {"Workload", "SlottedEnv", "EventEnv", "System", "CycleCosts", "ProfiledCosts", "Streams", "Generator"}


def engine_objects():
    """Everything an attacker reaches without private access: the call stack's frames and locals, every object
    the garbage collector tracks, every loaded module's globals."""
    found = set()
    frame = sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if type(value).__name__ in ENGINE:
                found.add("stack:" + type(value).__name__)
        frame = frame.f_back
    for obj in gc.get_objects():
        if type(obj).__name__ in ENGINE - {"Generator"}:
            found.add("gc:" + type(obj).__name__)
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if type(value).__name__ in ENGINE - {"Generator"}:
                found.add("globals:" + type(value).__name__)
    return found


class Looker(Scheduler):
    name = "looker"

    def decide(self, batch):
        found = engine_objects() | ({"batch:_wl"} if getattr(batch, "_wl", None) is not None else set())
        if found:
            raise RuntimeError("reached " + ", ".join(sorted(found)))
        return np.argmax(batch.mask, axis=1)  # the first allowed server
'''


@pytest.mark.parametrize("scenario", ["tiny", "edge-gpu"])
def test_a_scheduler_behind_the_channel_reaches_no_engine_object(scenario, tmp_path):
    """The look-ahead attack of the review (walk the stack or gc to the environment, read the future): in process it
    reaches the workload and the engine; behind the channel there is nothing of them to reach."""
    from bench.scenarios import load_scenario

    (tmp_path / "looker.py").write_text(LOOKER)
    ref = f"{tmp_path / 'looker.py'}:Looker"
    sc = load_scenario(scenario)
    with pytest.raises(SchedulerError, match=r"reached .*(Workload|Env)"):  # the attack works in process: the test can fail
        run(sc, ref, seeds=[0], episodes=1)
    executor = Subprocess()
    try:
        result = run(sc, ref, seeds=[0], episodes=1, executor=executor)
    finally:
        executor.close()
    assert result.rows[0]["tasks"] > 0
    if sys.platform.startswith("linux"):  # and in the sandbox proper, which drives its child through the same channel
        from bench.experiments.sandbox.run import run_sandboxed

        outcome = run_sandboxed(sc, ref, seeds=[0], episodes=1)
        assert outcome.ok, outcome.report()
        assert outcome.result.rows[0]["tasks"] == result.rows[0]["tasks"]


def test_a_parent_never_blocks_on_a_child_that_stops_reading():
    """A full pipe used to block the parent's write with no limit (decide_s and Ctrl-C could not act): now the write
    waits within the call's deadline and fails in one line."""
    r, w = ch.pipe(size=1 << 16)
    with pytest.raises(ch.Timeout, match="did not read in time"):
        ch.send(w, {"op": "decide"}, {"big": np.zeros(1 << 20)}, timeout_s=0.3)
    os.close(r), os.close(w)


ODD = '''
import numpy as np
from schedulers import Scheduler


class Spawner(Scheduler):
    """Draws from a child stream of its generator: reproducible run to run, also behind the channel."""
    name = "spawner"

    def decide(self, batch):
        child = self.rng.spawn(1)[0]
        return np.array([int(np.flatnonzero(batch.mask[i])[child.integers(batch.mask[i].sum())]) for i in range(len(batch))])


class Late(Scheduler):
    """Keeps its first batch and reads a table of it in a later decide."""
    name = "late"

    def decide(self, batch):
        self.first = getattr(self, "first", batch)
        if self.first is not batch:
            self.first.resident  # a table the parent sends (upload_s is computed in the child on tiny)
        return np.zeros(len(batch), dtype=np.int64)


class Strange(Scheduler):
    name = "strange\\x1b[31m\\nname"

    def decide(self, batch):
        return np.zeros(len(batch), dtype=np.int64)


class Counters(Scheduler):
    name = "counters"

    def decide(self, batch):
        return np.zeros(len(batch), dtype=np.int64)

    def stats(self):
        return {"seed": 7, "bad": float("nan")}
'''


def test_the_review_s_channel_findings_are_closed(tiny, tmp_path):
    (tmp_path / "odd.py").write_text(ODD)
    ref = lambda cls: f"{tmp_path / 'odd.py'}:{cls}"  # noqa: E731
    executor = Subprocess()
    try:
        # rng.spawn in the child: the same draws on every run (it used a fresh, random seed sequence)
        a = run(tiny, ref("Spawner"), seeds=[0], episodes=1, executor=executor)
        b = run(tiny, ref("Spawner"), seeds=[0], episodes=1, executor=executor)
        assert np.array_equal(a.per_seed[0].actions[0], b.per_seed[0].actions[0])
        # a kept batch's table read later fails in one line instead of silently getting another batch's table
        with pytest.raises(SchedulerError, match="read after its decide returned"):
            run(tiny, ref("Late"), seeds=[0], episodes=1, executor=executor)
        with pytest.raises(SchedulerError, match=r"expected its name \(printable\)") as caught:
            run(tiny, ref("Strange"), seeds=[0], episodes=1, executor=executor)
        assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    finally:
        executor.close()
    # counters are checked the same way in process: a NaN is refused, and none can overwrite the summary's seed
    with pytest.raises(SchedulerError, match="stats\\(\\) returned"):
        run(tiny, ref("Counters"), seeds=[0], episodes=1)


def test_every_conformance_check_passes_through_the_channel(tiny):
    """check-scheduler drives a sandboxed scheduler through the channel: each check must see what it sees in process
    (found in CI: the masked variant of tiny kept the cycle-cost formula, so the child made an all-true mask)."""
    from bench.experiments.runs import conformance
    from bench.experiments.runs.request import RunRequest, resolve

    executor = Subprocess()
    try:
        def new():
            remote, _ = executor.scheduler(resolve(RunRequest(tiny, "least-loaded")), 0)
            return remote, remote.facts

        remote_checks = conformance.check("least-loaded", new=new)
    finally:
        executor.close()
    local = conformance.check("least-loaded")
    assert [(c.name, c.passed, c.skipped) for c in remote_checks] == [(c.name, c.passed, c.skipped) for c in local]
    assert all(c.passed or c.skipped for c in remote_checks), [(c.name, c.detail) for c in remote_checks]


FIELDS_LATER = '''
import numpy as np
from schedulers import Scheduler


class LateReader(Scheduler):
    """Reads fields only from its third batch on (the lane sends what its first batch read): the late ones are asked
    for, and every batch still sees exactly what it would see in process."""
    name = "late-reader"

    def begin_episode(self, episode, training):
        self.seen = 0

    def decide(self, batch):
        self.seen += 1
        if self.seen < 3:
            return np.zeros(len(batch), dtype=np.int64)
        key = batch.arrival_s * 1e3 + batch.index + batch.images + batch.size_mbit + batch.worker_free_s.min()
        return (np.floor(key).astype(np.int64) % batch.n_servers)


class Keeper(Scheduler):
    """Keeps its last batch and reads a field of it it never read in a decide."""
    name = "keeper"

    def decide(self, batch):
        self.kept = batch
        return np.zeros(len(batch), dtype=np.int64)

    def end_episode(self):
        self.kept.deadline_s
'''


def test_the_lane_sends_the_fields_a_scheduler_reads_and_fetches_a_late_one(tiny, tmp_path):
    (tmp_path / "late.py").write_text(FIELDS_LATER)
    ref = f"{tmp_path / 'late.py'}:LateReader"
    executor = Subprocess()
    try:
        remote = run(tiny, ref, seeds=[0], episodes=2, executor=executor)
        sent = executor.children[-1][3] is not None and remote  # the lane was there
        with pytest.raises(SchedulerError, match="its field deadline_s was read after its decide returned"):
            run(tiny, f"{tmp_path / 'late.py'}:Keeper", seeds=[0], episodes=1, executor=executor)
    finally:
        executor.close()
    assert sent
    _same(run(tiny, ref, seeds=[0], episodes=2), remote)
    assert len(set(remote.per_seed[0].actions[0].tolist())) > 1  # the late fields made decisions


def test_a_batch_too_big_for_the_lane_crosses_on_the_pipe(tiny):
    for name in ("opt-ts", "least-loaded"):
        executor = Subprocess(lane_size=4096)  # a region that holds no batch: every one goes on the pipe
        try:
            remote = run(tiny, name, seeds=[1], episodes=1, executor=executor)
        finally:
            executor.close()
        _same(run(tiny, name, seeds=[1], episodes=1), remote)


HOSTILE_CHILD = '''
import os, sys, fcntl
from bench.experiments.sandbox import channel as ch
from bench.experiments.sandbox.lane import Lane, ANS_N, ACTIONS, PIPE
mode, fd_in, fd_out, fds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(x) for x in sys.argv[4].split(",")]
lane = Lane.attach(tuple(fds))
for attempt in (lambda: os.ftruncate(fds[0], 0), lambda: os.ftruncate(fds[0], 1 << 40)):
    try:
        attempt()
        sys.exit(3)  # the region could be shrunk under the parent (SIGBUS there) or grown
    except PermissionError:
        pass
ch.send(fd_out, {"ready": True})  # not announced, as a child's first message (its facts) is not
lane.wait(fd_in, None)
if mode == "count":  # announces more actions than the batch has tasks
    lane.ctl[ANS_N] = 10 ** 9
    lane.post(ACTIONS)
elif mode == "kind":  # announces something no answer is
    lane.post(77)
elif mode == "exit":
    sys.exit(0)
elif mode == "silent":
    pass
os.set_blocking(fd_in, True)
os.read(fd_in, 1)  # stays until the parent closes its end
'''


@pytest.mark.skipif(not __import__("bench.experiments.sandbox.lane", fromlist=["supported"]).supported(), reason="no lane here")
@pytest.mark.parametrize("mode, fragment", [("count", "announced for a batch of"), ("kind", "of kind 77"),
                                            ("exit", "ended without answering"), ("silent", "did not return within 0.5 s")])
def test_a_hostile_child_in_the_lane_fails_in_one_line(tiny, tmp_path, mode, fragment):
    """The parent reads from the region only the child's counter and answer, copied and checked: a child that lies
    about its answer, announces nonsense, dies or never answers fails that decide in one line, and the region's size is
    sealed (a child that could shrink it would crash the parent with SIGBUS)."""
    from bench.engine.system import System

    system = System.build(tiny, 0)
    env = system.env()
    env.reset(system.workload(0))
    lane = Lane.create()
    to_child_r, to_child_w = ch.pipe()
    from_child_r, from_child_w = ch.pipe()
    fds = lane.child_fds()
    (tmp_path / "child.py").write_text(HOSTILE_CHILD)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), mode, str(to_child_r), str(from_child_w), ",".join(map(str, fds))],
                            pass_fds=(to_child_r, from_child_w, *fds), cwd=os.getcwd())
    for fd in (to_child_r, from_child_w, *fds):
        os.close(fd)
    facts = {"scheduler": "hostile", "batch_unit": "slot", "event_batches": "instant", "learns": False, "observes": False, "hooks": []}
    remote = ch.RemoteScheduler(to_child_w, from_child_r, "scheduler 'hostile'", facts, decide_s=0.5 if mode == "silent" else 120, lane=lane)
    try:
        assert ch.receive(from_child_r, 300)[0] == {"ready": True}  # started (on a loaded machine that takes seconds)
        batch = env.batch(env.pending("slot"))
        with pytest.raises(SchedulerError, match=fragment) as caught:
            remote.decide(batch)
        assert "\n" not in str(caught.value)
    finally:
        os.close(to_child_w)
        assert proc.wait(timeout=30) in (0, 1) or mode == "exit"
        os.close(from_child_r)
        lane.close()
    assert proc.returncode != 3, "the child could resize the shared region"
