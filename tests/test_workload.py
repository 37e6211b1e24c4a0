"""Random streams and workloads: independence, pairing, decision order, the per-index quirk."""

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.scenarios import load_scenario
from bench.engine.system import System
from tasks.streams import Streams
from tasks.workload import workload_from_arrays


def test_same_seed_same_tasks_different_seed_different_tasks(paper):
    a, b, c = System.build(paper, 3), System.build(paper, 3), System.build(paper, 4)
    wa, wb, wc = a.workload(2), b.workload(2), c.workload(2)
    assert np.array_equal(wa.counts, wb.counts) and np.array_equal(wa.size_mbit, wb.size_mbit)
    assert not np.array_equal(wa.counts, wc.counts)


def test_training_and_evaluation_streams_never_coincide(paper_system):
    evals = [paper_system.workload(e) for e in range(5)]
    trains = [paper_system.workload(e, training=True) for e in range(5)]
    for t in trains:
        for e in evals:
            assert not np.array_equal(t.counts, e.counts)
    # episodes differ from each other too
    assert not np.array_equal(evals[0].size_mbit[:100], evals[1].size_mbit[:100])


def test_scheduler_stream_is_independent_of_workload_streams():
    s = Streams(0)
    x = s.scheduler().random(1000)
    for g in (s.evaluation(0), s.training(0), s.environment()):
        assert not np.allclose(g.random(1000), x)


def test_streams_reject_bad_seeds():
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="non-negative integer"):
            Streams(bad)


def test_decision_order_layout(paper_system):
    wl = paper_system.workload(0)
    s, b = wl.counts.shape
    assert (s, b) == (59, 20)
    assert wl.counts.min() >= 1 and wl.counts.max() <= 50
    assert wl.n_tasks == wl.counts.sum()
    # sorted by (slot, origin, index) and each batch's index runs 0..K-1
    key = wl.slot * 10_000 + wl.origin * 100 + wl.index
    assert np.all(np.diff(key) > 0)
    for t, bs in [(0, 0), (10, 7), (58, 19)]:
        lo, hi = wl.batch_offsets[t * b + bs], wl.batch_offsets[t * b + bs + 1]
        assert hi - lo == wl.counts[t, bs]
        assert wl.index[lo:hi].tolist() == list(range(hi - lo))
        assert set(wl.slot[lo:hi]) == {t} and set(wl.origin[lo:hi]) == {bs}
    assert wl.slot_offsets[-1] == wl.n_tasks
    assert np.all((wl.size_mbit >= 2) & (wl.size_mbit < 5))


def test_per_index_quirk_reuses_attributes_by_index(paper_system):
    wl = paper_system.workload(0)
    t = paper_system.table
    assert np.array_equal(wl.density, t.density[wl.index])
    assert np.array_equal(wl.steps, t.steps[wl.index])
    assert np.array_equal(wl.work_gcycles, t.density[wl.index] * t.steps[wl.index])
    # while paper-iid draws every task afresh
    iid = System.build(load_scenario("paper-iid"), 0).workload(0)
    first = iid.index == 0
    assert np.unique(iid.density[first]).size == first.sum()
    assert iid.steps.min() >= 1 and iid.steps.max() <= 14
    # same seed: paper and paper-iid share arrivals and input sizes (streams depend on the seed only)
    assert np.array_equal(iid.counts, wl.counts) and np.array_equal(iid.size_mbit, wl.size_mbit)


def test_workload_from_arrays_validates_and_copies():
    counts = np.array([[1, 0], [2, 1]])
    size = np.array([2.0, 3.0, 4.0, 2.5])
    wl = workload_from_arrays(counts, size, [0.2] * 4, [5] * 4, [0.7] * 4)
    assert wl.origin.tolist() == [0, 0, 0, 1] and wl.index.tolist() == [0, 0, 1, 0] and wl.slot.tolist() == [0, 1, 1, 1]
    np.testing.assert_allclose(wl.work_gcycles, 1.0)
    size[0] = 99
    assert wl.size_mbit[0] == 2.0
    with pytest.raises(ValueError, match="shape"):
        workload_from_arrays(counts, size[:3], [0.2] * 4, [5] * 4, [0.7] * 4)


def test_checkpoint_popularity_draws_a_model_per_request_after_everything_else():
    """tasks.checkpoints: each request is for one checkpoint of its class's architecture (its own model for residency),
    drawn by a Zipf-Mandelbrot popularity after the other attributes, which stay as without checkpoints."""
    import dataclasses

    from bench.engine.system import System

    sc = load_scenario("edge-gpu")
    with_ckpt = System.build(sc, 0).workload(0)
    plain = System.build(dataclasses.replace(sc, tasks=dataclasses.replace(sc.tasks, checkpoints=None)), 0).workload(0)
    np.testing.assert_array_equal(with_ckpt.task_class, plain.task_class)
    np.testing.assert_array_equal(with_ckpt.steps, plain.steps)
    assert (plain.model == -1).all()
    archs = sorted({c.model for c in sc.tasks.mix})
    arch = np.array([archs.index(c.model) for c in sc.tasks.mix])[with_ckpt.task_class]
    count = sc.tasks.checkpoints.count
    assert ((with_ckpt.model // count) == arch).all() and ((with_ckpt.model % count) < count).all()
    shares = sc.tasks.checkpoints.shares()
    assert shares[0] == max(shares) and abs(shares.sum() - 1) < 1e-12
    many = System.build(sc, 1)
    ranks = np.concatenate([many.workload(e).model % count for e in range(30)])
    assert abs(np.mean(ranks == 0) - shares[0]) < 0.05  # the most popular checkpoint's share, about 30%
