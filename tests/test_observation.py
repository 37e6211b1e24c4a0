"""Observation v2 (schedulers/interface.py, docs/environment.md): what a scheduler may know of models, residency,
memory and queues, checked by hand against the engine's own record, and identical through the sandbox channel."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench.engine.system import System
from bench.experiments.sandbox import channel as ch
from bench.experiments.sandbox.lane import Lane
from bench.scenarios import load_scenario
from schedulers.interface import OBSERVATION_VERSION
from schedulers.registry import make


@pytest.fixture(scope="module")
def edge_gpu():
    system = System.build(load_scenario("edge-gpu"), 0)
    env = system.env()
    env.reset(system.workload(0))
    return system, env


def test_info_states_the_models_their_sizes_and_what_the_tables_reveal(edge_gpu):
    system, _ = edge_gpu
    info, costs = system.info(), system.costs
    assert info.observation == OBSERVATION_VERSION == 2
    assert info.models == tuple(costs.models) and len(info.models) == 3
    assert info.reveals == "expected"  # edge-gpu draws its cold starts: the tables hold their expectation
    assert np.array_equal(info.model_load_s, costs.load_s) and np.array_equal(info.model_gb * 2**30, costs.weights_bytes)
    assert np.array_equal(info.memory_gb * 2**30, costs.memory_bytes)
    paper = System.build(load_scenario("paper"), 0).info()
    assert paper.reveals == "exact" and paper.models == () and paper.memory_gb is None and paper.cost_formula == "cycle"


def test_residency_memory_and_queues_follow_the_engine_by_hand(edge_gpu):
    """Place the first request, then read the next batch: its model is resident there and nowhere else, the free
    memory dropped by exactly its weights, and the queue counts are those of the engine's own start and end times."""
    system, env = edge_gpu
    costs, info = system.costs, system.info()
    env.reset(system.workload(0))
    first = env.batch(1)
    assert not first.resident.any() and first.held.sum() == 0
    unit = int(first.model[0])
    arch = int(costs.class_model[env.workload.task_class[0]])  # the architecture of its model (its weights, its load time)
    allowed = np.flatnonzero(first.mask[0])
    a = int(allowed[0])
    assert np.allclose(first.load_s[0][allowed], info.model_load_s[arch][allowed])  # expected loads, nothing drawn
    assert np.allclose(first.compute_s[0] - first.load_s[0], costs.warm_s(env.workload, 0, 1)[0], rtol=1e-12)
    env.step(np.array([a]))
    later = [i for i in range(1, env.workload.n_tasks) if int(costs.units(env.workload, i, i + 1)[0]) == unit]
    while env.position < later[0]:  # the requests in between to their first allowed server
        b = env.batch(1)
        env.step(np.array([int(np.flatnonzero(b.mask[0])[0])]))
    b = env.batch(1)
    t = float(b.arrival_s[0])
    assert b.held[a, unit] and b.resident[0, a] and b.load_s[0, a] == 0.0
    assert b.free_memory_gb[a] <= (costs.memory_bytes[a] - costs.weights_bytes[arch, a]) / 2**30 + 1e-9
    # queue counts from the engine's per-request record
    pos = env.position
    start = env._start[:pos]
    end = start + env._compute[:pos]
    acts = env._actions[:pos]
    for server in range(b.n_servers):
        on = acts == server
        assert b.waiting[server] == int((on & (start > t)).sum())
        assert b.running[server] == int((on & (start <= t) & (end > t)).sum())
    assert np.array_equal(b.worker_free_s, np.maximum(env._free - t, 0.0))


FIELDS = ("origin", "index", "size_mbit", "work_gcycles", "steps", "result_mbit", "arrival_s", "model", "task_class", "images",
          "deadline_s", "capacity_gcps", "rate_mbps", "backlog_s", "assigned_s", "worker_free_s", "compute_s", "service_s",
          "upload_s", "download_s", "mask", "resident", "load_s", "held", "free_memory_gb", "waiting", "running")


@pytest.mark.parametrize("scenario", ["edge-gpu", "paper", "tiny-poisson"])
def test_every_field_crosses_the_channel_bit_for_bit(scenario):
    """What a sandboxed scheduler reads equals what an in-process one reads, field by field, dtype included; in a
    cycle-cost scenario the child computes the tables itself from the batch's fields (nothing shipped)."""
    system = System.build(load_scenario(scenario), 0)
    env = system.env()
    env.reset(system.workload(0))
    sched = make("opt-ts")
    sched.reset(system.info(), np.random.default_rng(0))
    r, w = ch.pipe()
    lane = Lane.create()
    child = None if lane is None else Lane.attach(lane.child_fds())  # both ends in this process: the layout is what is checked
    for _ in range(25):
        if env.done:
            break
        batch = env.batch(env.pending(env.unit_for(sched)))
        ch.send(w, *ch.batch_message(batch, ()))
        header, arrays = ch.receive(r, 10.0)
        shipped = set(arrays)
        got = ch.ReceivedBatch.from_message(header, dict(arrays), lambda table, batch=batch: ch.table_arrays(batch, [table]),
                                            system.info().cost_formula == "cycle")
        for name in FIELDS:
            mine, theirs = getattr(batch, name), getattr(got, name)
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape and np.array_equal(mine, theirs), (scenario, name)
            assert not theirs.flags.writeable
        if scenario == "paper":
            assert not {"compute_s", "service_s", "upload_s", "download_s", "mask"} & shipped and not set(ch.FORMULA_TABLES) & got.used
        if lane is not None:  # and through the shared-memory lane: all fields the first time, then only those read
            for fields in (None, ch.FIELD_BIT["origin"] | ch.FIELD_BIT["capacity_gcps"]):
                assert ch.lane_batch(lane, batch, (), fields)
                scalars, rows, arrays = ch.read_lane_batch(child)
                track = scalars[-1]
                fetched = []

                def fetch(name, batch=batch, fetched=fetched):
                    fetched.append(name)
                    return ch.field_arrays(batch, name) if name in ch.FIELD_BIT else ch.table_arrays(batch, [name])

                got = ch.ReceivedBatch(scalars, rows, dict(arrays), fetch, system.info().cost_formula == "cycle")
                for name in FIELDS:
                    mine, theirs = getattr(batch, name), getattr(got, name)
                    assert mine.dtype == theirs.dtype and mine.shape == theirs.shape and np.array_equal(mine, theirs), (scenario, name, fields)
                    assert not theirs.flags.writeable
                assert track == (fields is None) and (fields is None) == (not {"index", "arrival_s"} & set(fetched))
                assert got.fields_read & ch.FIELD_BIT["steps"]
        env.step(sched.decide(batch))
    os.close(r), os.close(w)
    if lane is not None:
        lane.close(), child.close()


def test_learners_and_gymnasium_see_the_extended_fields():
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    import bench.engine.gym_env  # noqa: F401  (registers the ids)

    system = System.build(load_scenario("edge-gpu"), 0)
    lad = make("lad-ts", ["observation=extended"])
    lad.reset(system.info(), np.random.default_rng(0))
    env = system.env()
    env.reset(system.workload(0))
    batch = env.batch(env.pending(env.unit_for(lad)))
    obs = lad.observation(batch).numpy()
    b = batch.n_servers
    assert obs.shape == (len(batch), 4 * b + 2)
    assert np.array_equal(obs[:, 2 + 2 * b : 2 + 3 * b], batch.resident.astype(np.float32))
    assert np.allclose(obs[:, 2 + b : 2 + 2 * b], np.log1p(np.minimum(np.where(batch.mask, batch.backlog_s + batch.compute_s, 1e4), 1e4)))
    paper = make("lad-ts")
    paper.reset(system.info(), np.random.default_rng(0))
    assert paper.observation(batch).shape == (len(batch), b + 2)  # the paper's observation stays the default

    gym = gymnasium.make("bench.engine.gym_env:aigc-edge-bench/MultiEdgeEvent-v0", scenario="edge-gpu", observation="extended", forbidden="penalty")
    check_env(gym.unwrapped)
    o, info = gym.reset(seed=0)
    assert o.shape == (3 + 6 * b,) and o[3 + 4 * b : 3 + 5 * b].sum() == 0  # nothing resident before the first request
    o, *_ = gym.step(int(np.flatnonzero(info["action_mask"])[0]))
    assert gym.observation_space.contains(o)


def _docs_example(tmp_path):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "schedulers.md").read_text(encoding="utf-8")
    block = text.split("<!-- example: warm-first -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "warm_first.py").write_text(block)
    return f"{tmp_path}/warm_first.py:WarmFirst"


def test_the_documented_residency_rule_decides_the_same_sandboxed_and_equals_opt_ts_without_its_bias(tmp_path):
    """docs/schedulers.md's example, run as a user would: through the channel it makes the same decisions as in
    process; with no bias towards warm servers it is opt-ts (resident + load_s decompose compute_s exactly)."""
    from bench.experiments.runs.runner import run
    from tests.test_channel import Subprocess, _same

    ref = _docs_example(tmp_path)
    sc = load_scenario("edge-gpu")
    kw = dict(seeds=[0], episodes=1)
    inside = run(sc, ref, params=["cold_penalty_s=10"], **kw)
    executor = Subprocess()
    try:
        through = run(sc, ref, params=["cold_penalty_s=10"], executor=executor, **kw)
    finally:
        executor.close()
    _same(inside, through)
    plain = run(sc, ref, **kw)
    opt = run(sc, "opt-ts", **kw)
    assert np.array_equal(plain.per_seed[0].actions[0], opt.per_seed[0].actions[0])
    assert not np.array_equal(inside.per_seed[0].actions[0], opt.per_seed[0].actions[0])  # the bias does change decisions


def test_queue_counts_in_time_order_and_read_late_equal_a_full_count():
    """The environment counts only the requests still in the system and those placed since (asked in time order);
    a batch read after later steps falls back to every request placed before it: both equal a full count."""
    system = System.build(load_scenario("edge-gpu"), 0)
    env = system.env()
    env.reset(system.workload(0))
    sched = make("jsq")
    sched.reset(system.info(), np.random.default_rng(0))
    seen = []
    while not env.done:
        batch = env.batch(env.pending(env.unit_for(sched)))
        seen.append((batch, float(batch.arrival_s[0]), env.position, batch.waiting.copy(), batch.running.copy()))
        env.step(sched.decide(batch))
    start, end, acts = env._start, env._start + env._compute, env._actions
    for batch, t, pos, waiting, running in seen[:: max(len(seen) // 40, 1)]:
        on = [acts[:pos] == a for a in range(env.n_servers)]
        full_w = np.array([int((o & (start[:pos] > t)).sum()) for o in on])
        full_r = np.array([int((o & (start[:pos] <= t) & (end[:pos] > t)).sum()) for o in on])
        assert np.array_equal(waiting, full_w) and np.array_equal(running, full_r)
    late = seen[len(seen) // 2]
    fresh = env._queue_at(late[1], late[2])  # out of order: the fallback
    assert np.array_equal(fresh[0], late[3]) and np.array_equal(fresh[1], late[4])
