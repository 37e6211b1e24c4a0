"""Built-in schedulers, the registry and the conformance checker."""

from dataclasses import dataclass

import numpy as np
import pytest

from bench.core.config import option
from bench.core.errors import ConfigError, SchedulerError
from bench.experiments.runs.runner import run
from bench.engine.system import System
from schedulers import Scheduler, make
from bench.experiments.runs.conformance import check
from schedulers.registry import label, BUILTINS, available, resolve
from bench.scenarios import load_scenario
from tests.conftest import play
from tests.reference_loop import reference_opt_ts


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtins_pass_conformance(name):
    report = check(name)
    failed = [c for c in report if not c.passed and not c.skipped]
    assert not failed, failed


def test_opt_ts_equals_the_reference_greedy_loop(paper_system):
    s = paper_system
    sched = make("opt-ts")
    sched.reset(s.info(), s.streams.scheduler())
    for episode in range(2):
        trace = play(s, sched, episode)
        wl = trace.workload
        actions, delays = reference_opt_ts(s.costs.capacity_gcps, s.costs.rate_mbps, 1.0, wl.counts, wl.size_mbit, wl.work_gcycles, wl.result_mbit)
        assert np.array_equal(trace.actions, actions)
        np.testing.assert_allclose(trace.delay_s, delays, rtol=1e-12)


def test_opt_ts_is_greedy_per_task(paper_system):
    """Every opt-ts decision is the smallest delay among all servers given the queues at that moment."""
    s = paper_system
    env = s.env()
    env.reset(s.workload(0))
    sched = make("opt-ts")
    sched.reset(s.info(), s.streams.scheduler())
    for _ in range(5):
        batch = env.batch(env.pending("slot"))
        actions = sched.decide(batch)
        placed = batch.assigned_s.copy()
        for i, a in enumerate(actions):
            delays = batch.service_s[i] + batch.backlog_s + placed
            assert a == int(np.argmin(delays))
            placed[a] += batch.compute_s[i, a]
        env.step(actions)


def test_least_loaded_and_p2c_follow_expected_wait(paper_system):
    s = paper_system
    env = s.env()
    env.reset(s.workload(0))
    for _ in range(3):  # let queues build
        env.step(np.zeros(env.pending("slot"), dtype=int))
    batch = env.batch(env.pending("bs"))
    ll = make("least-loaded")
    ll.reset(s.info(), np.random.default_rng(0))
    a = ll.decide(batch)
    wait = batch.backlog_s + batch.assigned_s
    assert a[0] == int(np.argmin(wait))
    p2 = make("p2c")
    p2.reset(s.info(), np.random.default_rng(0))
    b = p2.decide(batch)
    # with server 0 heavily loaded, power-of-two-choices avoids it whenever its other choice is lighter
    assert (b == 0).mean() < 0.1


def test_weighted_random_follows_capacity(paper_system):
    s = paper_system
    env = s.env()
    env.reset(s.workload(0))
    sched = make("weighted-random")
    sched.reset(s.info(), np.random.default_rng(0))
    counts = np.zeros(20)
    while not env.done:
        a = sched.decide(env.batch(env.pending("slot")))
        counts += np.bincount(a, minlength=20)
        env.step(a)
    share = counts / counts.sum()
    expected = s.costs.capacity_gcps / s.costs.capacity_gcps.sum()
    assert np.abs(share - expected).max() < 0.01


def test_round_robin_cycles_from_own_server(tiny):
    s = System.build(tiny, 0)
    sched = make("round-robin")
    sched.reset(s.info(), np.random.default_rng(0))
    trace = play(s, sched)
    wl = trace.workload
    for b in range(4):
        mine = trace.actions[wl.origin == b]
        assert mine.tolist() == [(b + k) % 4 for k in range(mine.size)]


def test_local_keeps_tasks_home(paper_system):
    sched = make("local")
    sched.reset(paper_system.info(), np.random.default_rng(0))
    trace = play(paper_system, sched)
    assert np.array_equal(trace.actions, trace.workload.origin)
    assert trace.upload_s.sum() == 0


# ---- registry ----------------------------------------------------------------------------------


class Fixed(Scheduler):
    """Sends every task to one server: a `module:Class` scheduler with a parameter."""

    name = "fixed"

    @dataclass(frozen=True)
    class Config:
        server: int = option(0, help="the server that gets every task", ge=0)

    def decide(self, batch):
        return np.full(len(batch), self.config.server)


class Broken(Scheduler):
    name = "broken"

    def decide(self, batch):
        return np.full(len(batch), 99)


class NotAScheduler:
    pass


def test_module_class_names_and_params():
    sched = make("tests.test_schedulers:Fixed", ["server=2"])
    assert sched.config.server == 2
    with pytest.raises(ConfigError, match=r"tests.test_schedulers:Fixed.server = -1 .*>= 0"):
        make("tests.test_schedulers:Fixed", ["server=-1"])
    with pytest.raises(ConfigError, match="unknown key"):
        make("tests.test_schedulers:Fixed", ["speed=2"])
    with pytest.raises(ConfigError, match="takes no parameters"):
        make("random", ["x=1"])


def test_unknown_and_invalid_names():
    with pytest.raises(SchedulerError, match=r"--scheduler = 'nope' .*opt-ts.*module:Class"):
        resolve("nope")
    with pytest.raises(SchedulerError, match="cannot import module"):
        resolve("no_such_module:Thing")
    with pytest.raises(SchedulerError, match="has no attribute"):
        resolve("tests.test_schedulers:Missing")
    with pytest.raises(SchedulerError, match="not a subclass"):
        resolve("tests.test_schedulers:NotAScheduler")


def test_installed_plugin_is_found_by_entry_point(monkeypatch, tmp_path):
    """A distribution on sys.path that declares the entry point, as `pip install` would leave it."""
    dist = tmp_path / "demo_scheduler_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-scheduler-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[aigc_edge_bench.schedulers]\nmy-fixed = tests.test_schedulers:Fixed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve("my-fixed") is Fixed
    assert ("my-fixed", "plugin (tests.test_schedulers:Fixed)", "") in available()
    assert make("my-fixed", ["server=1"]).config.server == 1


def test_invalid_output_names_the_scheduler(tiny):
    with pytest.raises(SchedulerError, match=r"scheduler 'broken' returned server 99 .*allowed: 0..3"):
        run(tiny, "tests.test_schedulers:Broken", episodes=1)
    report = {c.name: c for c in check("tests.test_schedulers:Broken")}
    assert not report["valid decisions"].passed and "server 99" in report["valid decisions"].detail


class Cheater(Scheduler):
    """Uses numpy's global random state instead of self.rng: not reproducible."""

    name = "cheater"

    def decide(self, batch):
        return np.random.randint(0, batch.n_servers, len(batch))


def test_conformance_catches_hidden_randomness():
    report = {c.name: c for c in check("tests.test_schedulers:Cheater")}
    assert report["valid decisions"].passed
    assert not report["reproducible"].passed and "self.rng" in report["reproducible"].detail


RULE_FILE = """
import numpy as np
from schedulers import Scheduler


class Nearest(Scheduler):
    name = "{name}"

    def decide(self, batch):
        return batch.origin.copy()
"""


def test_a_class_from_a_file_or_the_current_directory(tmp_path, monkeypatch):
    """Review defect: `bench run -s myrule:Cls` failed until one guessed PYTHONPATH; files were not accepted."""
    import sys

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "near.py").write_text(RULE_FILE.format(name="nearest"))
    cls = resolve(f"{tmp_path}/rules/near.py:Nearest")
    assert cls.__name__ == "Nearest" and label(f"{tmp_path}/rules/near.py:Nearest") == "nearest"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myrule_cwd_demo.py").write_text(RULE_FILE.format(name="from-cwd"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert resolve("myrule_cwd_demo:Nearest").name == "from-cwd"
        result = run(load_scenario("tiny"), "myrule_cwd_demo:Nearest", episodes=1)
        assert result.scheduler == "from-cwd" and result.scheduler_ref == "myrule_cwd_demo:Nearest"  # the class's name labels it
    finally:
        sys.modules.pop("myrule_cwd_demo", None)


@pytest.mark.parametrize(
    "ref, text, fragment",
    [
        (":X", None, "expected a name, module:Class or path/to/file.py:Class"),
        ("FILE:Nearest", RULE_FILE.format(name="opt-ts"), "reserved for the built-in"),
        ("FILE:Nearest", "raise TypeError('boom')\n", "importing .* failed \\(TypeError: boom\\)"),
        ("FILE:Nearest", "raise SystemExit(0)\n", "importing .* failed \\(SystemExit: 0\\)"),
        ("FILE:Nearest", "import not_installed_anywhere\n", "imports a module that is not installed"),
        ("missing/file.py:Nearest", None, "no file"),
    ],
)
def test_bad_references_fail_with_one_line(tmp_path, ref, text, fragment):
    if text is not None:
        (tmp_path / "rule.py").write_text(text)
        ref = ref.replace("FILE", str(tmp_path / "rule.py"))
    with pytest.raises(SchedulerError, match=fragment):
        label(ref)
