"""Profile-driven scenarios: costs from profiles, memory masks, resident models and cold starts, SLOs."""

import numpy as np
import pytest

from bench.engine.slotted import SlottedEnv
from bench.core.errors import ConfigError, SchedulerError
from bench.engine.metrics import episode_metrics
from bench.engine.profiled_costs import GIB, ProfiledCosts
from bench.experiments.runs.runner import run
from bench.scenarios import load_scenario
from bench.engine.system import System
from profiles import store
from schedulers import make
from tasks.workload import workload_from_arrays

PRESET = "edge-cpu"


def _costs(eviction="lru", memory=10.0):
    """One or two servers; three models of 4 units of weights each and a peak of 6 (units of GiB)."""
    n_servers = 2
    return ProfiledCosts(
        rate_mbps=np.full(n_servers, 100.0), memory_bytes=np.array([memory, 5.0]) * GIB, models=["m0", "m1", "m2"],
        class_model=np.array([0, 1, 2]), fixed_s=np.array([[1.0, 2.0]] * 3), per_step_s=np.array([[0.1, 0.2]] * 3),
        peak_bytes=np.array([[6.0, 6.0]] * 3) * GIB, load_s=np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]),
        weights_bytes=np.full((3, 2), 4.0) * GIB, class_weight=np.ones(3), class_steps=np.full(3, 10.0), eviction=eviction,
    )


def _workload(classes, steps=10):
    n = len(classes)
    wl = workload_from_arrays(np.array([[n, 0]]), np.ones(n), np.ones(n), np.full(n, steps), np.ones(n))
    object.__setattr__(wl, "task_class", np.array(classes, dtype=np.int64))
    return wl


@pytest.mark.parametrize("eviction, expected_cold, expected_evictions", [
    ("lru", [True, True, False, True, True], 2),   # m2 evicts m1 (least recently used), then m1 evicts m0
    ("fifo", [True, True, False, True, False], 1),  # m2 evicts m0 (first loaded), so m1 is still resident
])
def test_resident_set_and_cold_starts_by_hand(eviction, expected_cold, expected_evictions):
    costs = _costs(eviction)
    wl = _workload([0, 1, 0, 2, 1])  # models m0 m1 m0 m2 m1, all on server 0 (memory 10: two models of 4 + a peak of 6)
    env = SlottedEnv(costs, slot_s=1.0)
    trace = env.evaluate(wl, np.zeros(5, dtype=np.int64))
    warm = 1.0 + 10 * 0.1
    loads = np.array([10.0, 20.0, 10.0, 30.0, 20.0])
    np.testing.assert_allclose(trace.compute_s, np.full(5, warm), rtol=1e-12)  # the warm part; the load is its own part
    np.testing.assert_allclose(trace.load_s, np.where(expected_cold, loads, 0.0), rtol=1e-12)
    np.testing.assert_allclose(trace.delay_s, trace.upload_s + trace.wait_s + trace.load_s + trace.compute_s + trace.download_s, rtol=1e-12)
    assert trace.cold_starts == sum(expected_cold)
    assert costs.counters(env._state) == {"cold_starts": sum(expected_cold), "evictions": expected_evictions}
    np.testing.assert_array_equal(costs.load_record(env._state, 5), np.where(expected_cold, loads, 0.0))


def test_energy_per_task_where_profiles_have_joules_per_step():
    costs = _costs()
    wl = _workload([0, 1, 2], steps=10)
    assert not costs.has_energy and costs.energy_j(wl, 0, 3, np.zeros(3, dtype=np.int64)) is None
    base = _costs()
    energy = np.array([[2.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])  # J per step; NaN: that profile has none
    with_energy = ProfiledCosts(
        rate_mbps=base.rate_mbps, memory_bytes=base.memory_bytes, models=base.models, class_model=base.class_model,
        fixed_s=np.array([[1.0, 2.0]] * 3), per_step_s=np.array([[0.1, 0.2]] * 3), peak_bytes=base.peak_bytes,
        load_s=base.load_s, weights_bytes=base.weights_bytes, class_weight=np.ones(3), class_steps=np.full(3, 10.0),
        eviction="lru", energy_j_per_step=energy)
    e = with_energy.energy_j(wl, 0, 3, np.zeros(3, dtype=np.int64))
    assert e[:2].tolist() == [20.0, 30.0] and np.isnan(e[2])


def test_a_server_without_the_class_point_does_not_run_it():
    base = _costs()
    peak = base.peak_bytes.copy()
    peak[1, 0] = np.inf  # no profile point of class 1 on server 0: absent, not free
    costs = ProfiledCosts(
        rate_mbps=base.rate_mbps, memory_bytes=np.array([10.0, 10.0]) * GIB, models=base.models, class_model=base.class_model,
        fixed_s=np.array([[1.0, 2.0]] * 3), per_step_s=np.array([[0.1, 0.2]] * 3), peak_bytes=peak, load_s=base.load_s,
        weights_bytes=base.weights_bytes, class_weight=np.ones(3), class_steps=np.full(3, 10.0), eviction="lru")
    wl = _workload([0, 1])
    assert costs.mask(wl, 0, 2).tolist() == [[True, True], [False, True]]
    assert np.isinf(costs.compute_s(wl, 0, 2, costs.new_state())[1, 0])


def test_memory_mask_forbids_servers_a_model_does_not_fit():
    costs = _costs(memory=10.0)  # server 1 has 5 GiB: a peak of 6 never fits
    wl = _workload([0, 1])
    assert costs.mask(wl, 0, 2).tolist() == [[True, False], [True, False]]
    assert np.isinf(costs.compute_s(wl, 0, 2, costs.new_state())[:, 1]).all()
    with pytest.raises(SchedulerError, match="mask forbids"):
        SlottedEnv(costs, slot_s=1.0).evaluate(wl, np.array([0, 1]))


def test_scheduler_tables_show_cold_starts_from_the_state_at_the_batch():
    costs = _costs()
    wl = _workload([0, 0])
    env = SlottedEnv(costs, slot_s=1.0)
    env.reset(wl)
    assert env.batch(2).compute_s[0, 0] == pytest.approx(2.0 + 10.0)  # nothing loaded yet
    env.step(np.array([0]))
    assert env.batch(1).compute_s[0, 0] == pytest.approx(2.0)  # m0 now resident on server 0


@pytest.fixture(scope="module")
def preset():
    return load_scenario(PRESET)


@pytest.fixture(scope="module")
def preset_system(preset):
    return System.build(preset, 0)


def test_preset_is_heterogeneous_and_uses_shipped_profiles(preset, preset_system):
    assert len(set(preset.servers.hardware)) >= 2 and len(set(preset.servers.memory_gib)) >= 2
    assert len({c.model for c in preset.tasks.mix}) >= 3 and any(c.deadline_s for c in preset.tasks.mix)
    costs = preset_system.costs
    assert not costs.fits.all() and costs.fits.any(axis=1).all()  # some model does not fit somewhere, each fits somewhere
    assert set(preset.profile_hashes()) == {f"{hw}/{c.model}" for hw in preset.servers.hardware for c in preset.tasks.mix}
    assert "profiles_sha256" in preset.model_dict()


def test_one_task_compute_time_recomputed_from_the_profile(preset, preset_system):
    """A task's charged compute time equals encoders + steps x per-step + VAE from its profile, plus the
    profile's cold-start time exactly when its model was not resident."""
    sys_ = preset_system
    sched = make("least-loaded")
    sched.reset(sys_.info(), np.random.default_rng(0))
    from bench.experiments.runs.runner import run_episode

    env = sys_.env()
    trace, _ = run_episode(env, sched, sys_.workload(0), episode=0, training=False, who="test")
    wl = trace.workload
    seen_cold = seen_warm = False
    for i in range(wl.n_tasks):
        klass = preset.tasks.mix[wl.task_class[i]]
        a = int(trace.actions[i])
        p = store.load(store.find(preset.servers.hardware[a], klass.model))
        point = p.point(klass.resolution, klass.batch)
        warm = p.text_s(klass.batch) + wl.steps[i] * point.step.median_s + point.vae_decode.median_s
        assert trace.compute_s[i] == pytest.approx(warm, rel=1e-12), i  # the warm part is the profile's
        extra = trace.load_s[i]
        if extra == 0.0:
            seen_warm = True
        else:
            assert extra == pytest.approx(p.cold_start.load.median_s, rel=1e-12), i
            seen_cold = True
        if seen_cold and seen_warm:
            break
    assert seen_cold and seen_warm
    assert trace.cold_starts > 0


@pytest.mark.parametrize("name", ["opt-ts", "least-loaded"])
def test_schedulers_run_end_to_end_on_the_profile_driven_preset(preset, name):
    result = run(preset, name, seeds=[0], episodes=2)
    s = result.summary()
    assert s["tasks"] > 0 and np.isfinite(s["mean_delay_s"])
    assert 0.0 <= s["slo_attainment"] <= 1.0 and s["cold_starts"] > 0


def test_every_builtin_scheduler_respects_the_memory_mask(preset, preset_system):
    from bench.experiments.runs.runner import run_episode
    from schedulers.registry import builtin_names

    for name in builtin_names(scenario=preset_system.scenario):
        sched = make(name)
        sched.reset(preset_system.info(), np.random.default_rng(1))
        trace, _ = run_episode(preset_system.env(), sched, preset_system.workload(0), episode=0, training=False, who=name)
        mask = preset_system.costs.fits[trace.workload.task_class]
        assert mask[np.arange(trace.actions.shape[0]), trace.actions].all(), name


def test_slo_attainment_counts_tasks_within_their_deadline(preset_system):
    env = SlottedEnv(preset_system.costs, 1.0)
    wl = preset_system.workload(0)
    t = env.evaluate(wl, np.argmax(preset_system.costs.fits[wl.task_class], axis=1))
    m = episode_metrics(t)
    has = np.isfinite(wl.deadline_s)
    assert m["slo_attainment"] == pytest.approx(np.mean(t.delay_s[has] <= wl.deadline_s[has]))
    tiny = System.build(load_scenario("tiny"), 0)
    wl0 = tiny.workload(0)
    assert episode_metrics(tiny.env().evaluate(wl0, np.zeros(wl0.n_tasks, dtype=np.int64)))["slo_attainment"] is None


def test_profile_driven_scenario_errors_name_the_field():
    with pytest.raises(ConfigError, match="servers.capacity_gcps"):
        load_scenario(PRESET, ["servers.capacity_gcps=[1,1,1,1,1,1]"])
    with pytest.raises(ConfigError, match=r"servers.hardware\[0\]"):
        load_scenario(PRESET, ['servers.hardware=["gpu-x","gpu-x","gpu-x","gpu-x","gpu-x","gpu-x"]']).hash
    with pytest.raises(ConfigError, match=r"tasks.mix\[0\].resolution"):
        System.build(load_scenario(PRESET, ["tasks.mix=[{model='sd15', steps=[10,20], resolution=1024}]"]), 0)
    with pytest.raises(ConfigError, match=r"tasks.mix\[0\].model = 'sd21' .*cpu-intel-xeon-2t"):
        System.build(load_scenario(PRESET, ["tasks.mix[0].model='sd21'"]), 0)
    with pytest.raises(ConfigError, match=r"servers.profile_dirs\[0\]"):
        load_scenario(PRESET, ["servers.profile_dirs=['no/such/dir']"]).hash
    with pytest.raises(ConfigError, match="tasks.mix"):
        load_scenario(PRESET, ["tasks.mix=[]"])
    with pytest.raises(ConfigError, match="tasks.density_gcycles_per_step"):
        load_scenario(PRESET, ["tasks.density_gcycles_per_step=[0.1,0.2]"])


def test_each_checkpoint_of_the_workload_is_its_own_model_for_residency():
    """Workload.model >= 0 (a replayed trace's checkpoint): same costs as its class's architecture, its own residency."""
    costs = _costs()
    wl = _workload([0, 0, 0, 0, 0])  # all of architecture m0 (weights 4, peak 6, load 10) on server 0 (memory 10)
    object.__setattr__(wl, "model", np.array([3, 7, 3, -1, 7]))
    env = SlottedEnv(costs, slot_s=1.0)
    trace = env.evaluate(wl, np.zeros(5, dtype=np.int64))
    # 3: load; 7: load (4 + 6 fit in 10); 3: warm; m0 itself: evicts 7 (least recently used), load; 7: evicts 3, load
    warm = 1.0 + 10 * 0.1
    np.testing.assert_allclose(trace.compute_s + trace.load_s, warm + np.array([10.0, 10.0, 0.0, 10.0, 10.0]), rtol=1e-12)
    assert costs.counters(env._state) == {"cold_starts": 4, "evictions": 2}
    state = costs.new_state()
    costs.compute_s_chosen(wl, 0, 1, np.zeros(1, dtype=np.int64), state)  # checkpoint 3 now resident on server 0
    table = costs.compute_s(wl, 0, 5, state)[:, 0]
    assert table.tolist() == pytest.approx([warm, warm + 10, warm, warm + 10, warm + 10])
