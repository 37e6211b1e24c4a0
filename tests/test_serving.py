"""Serving decisions (docs/serving.md): variants with cited quality, held batches priced from published rows, the
metrics that count both, the literature's rules, and the refusals of bad decisions."""

import json

import numpy as np
import pytest

from bench.core.errors import ConfigError, SchedulerError
from bench.engine.metrics import episode_metrics
from bench.engine.system import System
from bench.experiments.runs.bundles import write_bundle
from bench.experiments.runs.replay import replay
from bench.experiments.runs.runner import run
from bench.scenarios import load_scenario
from profiles import store
from profiles.quality import load_quality
from schedulers.interface import Decision, decode_actions
from schedulers.registry import make
from tasks.workload import arrivals_workload


def _system(name: str, overrides=()) -> System:
    return System.build(load_scenario(name, list(overrides)), 0)


def _workload(system: System, arrival, klass, origin=None):
    sc = system.scenario
    n = len(arrival)
    return arrivals_workload(sc.tasks, np.array(arrival, float), np.zeros(n, np.int64) if origin is None else np.array(origin),
                             slot_s=sc.episode.slot_s, n_windows=system.n_windows, n_servers=sc.n_servers,
                             rng=np.random.default_rng(0), class_work=system.costs.class_work, task_class=np.array(klass))


def _published_row(hardware: str, model: str, batch: int) -> tuple[float, float]:
    """(seconds per step, non-step seconds) of a profile's batch row, read from the file as printed."""
    data = json.loads(store.find(hardware, model).path.read_text())
    row = next(g for g in data["grid"] if g["batch"] == batch)
    step = row["step"]
    assert step["basis"] == "published" and step["unit"] == "it/s" and step["citation"]["source"] == "diffusers-torch2"
    return 1.0 / step["published"][0], row["vae_decode"]["value"]


def test_a_held_batch_delay_by_hand_from_the_published_batch_row():
    system = _system("batch-gpu")
    env = system.env()
    # four one-image SD 1.5 requests at 30 steps (class 0) reach base station 0; all go to server 0 (an A100):
    # the first three are held, the fourth releases the batch at t = 0.6 s: one job of 4 images
    wl = _workload(system, [0.0, 0.2, 0.4, 0.6], [0, 0, 0, 0])
    decisions = Decision(server=np.zeros(4, np.int64), hold=np.array([1, 1, 1, 0]))
    trace = env.evaluate(wl, decisions.encode(8))
    step_s, non_step_s = _published_row("cuda-a100-sxm4-80gb", "sd15", 4)  # the diffusers table's A100 row at batch 4
    warm = non_step_s + 30 * step_s
    assert trace.compute_s == pytest.approx(np.full(4, warm), rel=1e-12)
    assert trace.batch_images.tolist() == [4, 4, 4, 4] and np.all(trace.start_s == 0.6)
    download = wl.result_mbit / 300.0  # server 0's link rate; every request is local (no upload)
    expected = (0.6 - wl.arrival_s) + trace.load_s + warm + download  # held, then the cold start, then the batch
    assert trace.delay_s == pytest.approx(expected, rel=1e-12)
    assert trace.load_s[0] > 0 and np.all(trace.load_s == trace.load_s[0])  # every member waited for the one load
    # the same four requests unbatched: each pays the batch-1 row; the batch costs 1.9x one, not 4x
    one_step, one_non_step = _published_row("cuda-a100-sxm4-80gb", "sd15", 1)
    alone = env.evaluate(wl, np.zeros(4, np.int64))
    assert alone.compute_s[0] == pytest.approx(one_non_step + 30 * one_step, rel=1e-12)
    assert alone.batch_images.tolist() == [1, 1, 1, 1]
    assert warm / alone.compute_s[0] == pytest.approx(2.07, abs=0.01)


def test_an_open_batch_starts_when_its_hold_expires_and_pads_to_the_profiled_size():
    system = _system("batch-gpu")
    env = system.env()
    wl = _workload(system, [1.0, 1.5, 2.0], [0, 0, 0])
    trace = env.evaluate(wl, Decision(server=np.zeros(3, np.int64), hold=np.ones(3, np.int64)).encode(8))
    assert np.all(trace.start_s == 1.0 + 2.0)  # max_hold_s = 2 after the first request; nothing released it
    step4, non_step4 = _published_row("cuda-a100-sxm4-80gb", "sd15", 4)
    assert trace.compute_s[0] == pytest.approx(non_step4 + 30 * step4, rel=1e-12)  # 3 images run as the profile's batch of 4
    assert trace.batch_images.tolist() == [3, 3, 3]
    # a batch never mixes step counts: a 40-step request (class 4) held beside them starts on its own
    wl = _workload(system, [1.0, 1.5], [0, 4])
    trace = env.evaluate(wl, Decision(server=np.zeros(2, np.int64), hold=np.ones(2, np.int64)).encode(8))
    assert trace.batch_images.tolist() == [1, 1] and trace.start_s.tolist()[0] == 3.0 and trace.variant.tolist() == [0, 1]


def test_a_step_without_guidance_is_the_guided_step_at_half_the_images():
    system = _system("cascade-gpu")
    table = system.costs.serving
    light, heavy = table.names.index("lightning-4"), table.names.index("sdxl-32")
    for a, hw in enumerate(system.scenario.servers.hardware):
        profile = store.load(store.find(hw, "sdxl"))
        for n, half in ((1, 1), (2, 1), (4, 2), (8, 4)):
            if not np.isfinite(table.per_step_s[light, a, n]):
                continue
            assert table.per_step_s[light, a, n] == profile.costs_at(1024, half).step_s
            assert table.per_step_s[heavy, a, n] == profile.costs_at(1024, n).step_s
    assert table.steps[light] == 4 and not table.guidance[light] and table.guidance[heavy]


def test_a_variants_quality_by_hand_from_its_citation():
    figures = load_quality()
    figure = figures.figure("ByteDance/SDXL-Lightning (full UNet)", 4, 1024, "lightning-fid-whole")
    assert figure.value == 22.30 and figure.citation.source == "sdxl-lightning" and "Table 2" in figure.citation.locator
    system = _system("cascade-gpu")
    env = system.env()
    wl = system.workload(0)
    table = system.costs.serving
    a100 = np.zeros(wl.n_tasks, np.int64)  # server 0 runs every request size with every variant
    for name, share in (("lightning-4", 1.0), ("lightning-2", 0.0), ("sdxl-32", 1.0)):
        v = table.names.index(name)
        trace = env.evaluate(wl, Decision(server=a100, variant=np.full(wl.n_tasks, v)).encode(8))
        m = episode_metrics(trace)
        assert m["mean_quality"] == pytest.approx(table.quality[v]) and m["quality_floor_share"] == share
        good = (trace.delay_s <= wl.deadline_s) & (share == 1.0)
        assert m["goodput_per_s"] == pytest.approx(good.sum() / 600.0)
    assert table.quality[table.names.index("lightning-4")] == figure.value


def test_a_scheduler_that_returns_servers_gets_each_class_as_asked():
    system = _system("cascade-gpu")
    env = system.env()
    wl = system.workload(0)
    servers = np.arange(wl.n_tasks) % 3  # the A100s
    plain = env.evaluate(wl, servers)
    explicit = env.evaluate(wl, Decision(server=servers, variant=system.costs.serving.class_default[wl.task_class]).encode(8))
    assert np.array_equal(plain.delay_s, explicit.delay_s) and np.all(plain.quality == 18.49)
    # and the per-request tables a scheduler sees are the default variant's, alone, warm
    batch_table = system.costs.serving.warm_s()[0][:, system.costs.serving.class_images[wl.task_class[:5]]].T
    assert np.allclose(batch_table, system.costs.warm_s(wl, 0, 5))


@pytest.mark.parametrize("decision, match", [
    (Decision(server=[0], variant=[7]), "variant 7"),
    (Decision(server=[5], variant=[0], hold=[1]), "serving.max_hold_s = 0"),
    (Decision(server=[0, 1], variant=[0]), "Decision.variant"),
    (Decision(server=[0], variant=[-3]), r"Decision.variant: -3"),
    (Decision(server=[9], variant=[0]), r"Decision.server: 9; expected server indices 0..7"),
    (Decision(server=np.array([True])), "Decision.server"),
    (Decision(server=[0], hold=[2]), "Decision.hold: 2"),
])
def test_bad_decisions_are_refused_naming_what_is_wrong(decision, match):
    system = _system("cascade-gpu")
    env = system.env()
    env.reset(system.workload(0))
    with pytest.raises(SchedulerError, match=match):
        env.step(decision, who="rule")


def test_a_variant_the_server_cannot_run_is_refused():
    system = _system("cascade-gpu")
    env = system.env()
    wl = _workload(system, [0.0], [3])  # 8 images: only the A100s run them
    env.reset(wl)
    with pytest.raises(SchedulerError, match="does not run"):
        env.step(Decision(server=[4], variant=[0]))


def test_serving_configs_are_checked_naming_the_field():
    with pytest.raises(ConfigError, match=r"tasks.mix\[0\].variants\[0\]"):
        load_scenario("cascade-gpu", ["tasks.mix[0].variants=['lightning-4', 'sdxl-32']"])
    with pytest.raises(ConfigError, match="one of serving.variants"):
        load_scenario("cascade-gpu", ["tasks.mix[0].variants=['sdxl-32', 'turbo']"])
    with pytest.raises(ConfigError, match="no figure, no variant"):
        System.build(load_scenario("cascade-gpu", ["serving.variants[1].steps=3"]), 0)
    with pytest.raises(ConfigError, match="serving"):
        load_scenario("edge-cpu", ["serving={max_hold_s=1.0}"])
    with pytest.raises(ConfigError, match=r"tasks.mix\[0\].steps"):
        load_scenario("batch-gpu", ["tasks.mix[0].steps=[20, 30]"])


def test_the_literature_rules_decide_what_they_say():
    system = _system("cascade-gpu")
    env = system.env()
    wl = system.workload(0)
    names = system.costs.serving.names
    for rule, expect in (("fewest-steps", {"lightning-4"}), ("opt-ts-variants", {"lightning-4", "lightning-8", "sdxl-32"})):
        s = make(rule)
        s.reset(system.info(), np.random.default_rng(0))
        env.reset(wl)
        while not env.done:
            env.step(s.decide(env.batch(env.pending(env.unit_for(s)))))
        used = {names[v] for v in np.unique(env.trace().variant)}
        assert used <= expect and "lightning-2" not in used  # below the floor
    # batching: largest-batch forms batches on batch-gpu, and each starts within the hold
    system = _system("batch-gpu")
    env, s = system.env(), make("largest-batch")
    s.reset(system.info(), np.random.default_rng(0))
    env.reset(system.workload(0))
    s.begin_episode(0, False)
    while not env.done:
        env.step(s.decide(env.batch(env.pending(env.unit_for(s)))))
    trace = env.trace()
    held = trace.batch_images > system.costs.serving.class_images[trace.workload.task_class]
    assert held.sum() > 100 and np.all(trace.start_s - trace.workload.arrival_s >= 0)
    server, _, hold = decode_actions(trace.actions, 8)
    assert hold.sum() > 0 and np.array_equal(server, trace.servers)


def test_the_cascade_fits_its_shares_by_linear_program_on_training_episodes():
    result = run(load_scenario("cascade-gpu"), "cascade", seeds=[0], episodes=1, train_episodes=2, params=["fit_episodes=2"])
    stats = result.per_seed[0].stats
    shares = {k[len("share_"):]: v for k, v in stats.items() if k.startswith("share_")}
    assert sum(shares.values()) == pytest.approx(1.0) and shares["sdxl-32"] > 0.5  # quality where capacity allows
    row = result.per_seed[0].rows[0]
    assert 18.49 < row["mean_quality"] < 22.30 and row["quality_floor_share"] == 1.0


def test_a_serving_bundle_replays_and_records_its_decisions(tmp_path):
    result = run(load_scenario("batch-gpu"), "largest-batch", seeds=[0], episodes=1, keep_traces=True)
    out = write_bundle(result, tmp_path / "b", task_records=True)
    report = replay(out)
    assert report.ok, report.mismatches
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 3
    import polars as pl

    tasks = pl.read_parquet(out / "tasks.parquet")
    assert {"server", "variant", "batch_images", "quality"} <= set(tasks.columns)
    assert tasks["batch_images"].max() > 1


SMALL = ['servers.count=2', 'servers.hardware=["cuda-a100-sxm4-80gb", "cuda-t4-16gb"]', "servers.memory_gib=[80, 16]",
         "servers.rate_mbps=[300, 400]", "serving.max_hold_s=1.5"]


def test_the_lower_bound_holds_against_every_decision_on_small_instances():
    """Brute force: every (server, variant, hold) of every request of small cascade instances (variants and batches,
    one-image requests) is charged by the engine; the bound is at most the best of them, and above zero."""
    import itertools

    from bench.experiments.bounds.event import EventInstance, lower_bound

    system = _system("cascade-gpu", SMALL)
    env = system.env()
    table = system.costs.serving
    rng = np.random.default_rng(7)
    options = [(a, v, h) for a in range(2) for v in range(table.n_variants) for h in (0, 1)]
    for _ in range(4):
        n = 3
        arrival = np.sort(rng.uniform(0, 3, n)).round(2)
        wl = _workload(system, arrival, [0] * n, origin=rng.integers(0, 2, n))
        best = np.inf
        for combo in itertools.product(options, repeat=n):
            server, variant, hold = (np.array(x) for x in zip(*combo))
            best = min(best, float(env.evaluate(wl, Decision(server=server, variant=variant, hold=hold).encode(2)).delay_s.mean()))
        lb = lower_bound(EventInstance.build(system.costs, wl, system.scenario.episode.slot_s, system.n_windows))
        assert 0 < lb.mean_delay_s <= best * (1 + 1e-12), (arrival, lb, best)
        assert lb.floor_s > 0
    # the floor is the fastest allowed variant run alone: Lightning at 2 steps on the A100, for a one-image request
    expected = table.warm_s()[table.names.index("lightning-2"), 0, 1]
    inst = EventInstance.build(system.costs, _workload(system, [0.0], [0]), 15.0, system.n_windows)
    assert inst.alone[0, 0] == pytest.approx(expected)


def test_the_bound_uses_the_best_batch_rate():
    from bench.experiments.bounds.event import EventInstance

    system = _system("batch-gpu")
    wl = _workload(system, [0.0], [0])  # one image, 30 steps
    inst = EventInstance.build(system.costs, wl, 15.0, system.n_windows)
    warm = system.costs.serving.warm_s()[0, 0]  # A100, variant sd15-30
    per_image = min(warm[k] / k for k in range(1, warm.shape[0]) if np.isfinite(warm[k]))
    assert inst.compute[0, 0] == pytest.approx(per_image) and inst.alone[0, 0] == pytest.approx(warm[1])
    assert per_image < 0.55 * warm[1]  # an A100 runs SD 1.5 at batch 16 for under 55% of the time per image of batch 1


def test_the_cascade_checkpoint_loads_weights_only(tmp_path):
    """Checkpoints are read with torch's weights-only loader (a checkpoint is untrusted input): plain values only."""
    from bench.experiments.runs.bundles import load_checkpoint

    result = run(load_scenario("cascade-gpu"), "cascade", seeds=[0], episodes=1, train_episodes=1, params=["fit_episodes=1"])
    out = write_bundle(result, tmp_path / "c")
    again = run(load_scenario("cascade-gpu"), "cascade", seeds=[0], episodes=1, checkpoint=load_checkpoint(out))
    assert again.per_seed[0].rows[0]["mean_delay_s"] == result.per_seed[0].rows[0]["mean_delay_s"]


def test_a_fixed_quality_difference_is_certain_only_where_asked():
    from leaderboard.ranking import NotComputable, paired_t_test

    d = np.full(6, 3.81)  # SDXL-Lightning at 4 steps against SDXL base, the same in every paired episode
    assert paired_t_test(d, constant_is_certain=True).p == 0.0
    with pytest.raises(NotComputable, match="zero variance"):
        paired_t_test(d)  # delays: a constant difference is suspicious, and stays an error
    assert paired_t_test(np.zeros(6), constant_is_certain=True).p == 1.0


def test_sd15_variants_carry_the_proreflow_figures_by_hand():
    """cascade-sd15-gpu: SD v1.5's samplers and LCM-LoRA, each with its figure of the ProReflow paper's Table 2."""
    figures = load_quality()
    system = _system("cascade-sd15-gpu")
    table = system.costs.serving
    assert table.protocol == "proreflow-coco2014-fid"
    by_hand = {"sd15-ddim-32": 10.05, "sd15-dpmsolver-25": 9.78, "sd15-dpmsolver-8": 22.44, "sd15-dpmsolver++-4": 22.36,
               "sd15-lcm-lora-4": 23.62, "sd15-lcm-lora-2": 24.28}
    for name, value in by_hand.items():
        assert table.quality[table.names.index(name)] == value
    f = figures.figure("SD v1.5, DDIM (the ProReflow teacher)", 32, 512, "proreflow-coco2014-fid")
    assert f.citation.source == "proreflow" and "DDIM(our teacher)" in f.citation.locator
    assert "SDv1.5" in figures.source("proreflow").note  # the base model, from the abstract
    # LCM-LoRA is its own weights (a load of its own); the samplers share SD 1.5's
    assert table.unit[table.names.index("sd15-lcm-lora-4")] == table.unit[table.names.index("sd15-lcm-lora-2")] != table.unit[0]
    assert table.unit[table.names.index("sd15-dpmsolver-8")] == table.unit[0]
    assert list(table.meets_floor(table.quality)) == [True, True, True, True, False, False]


def test_a_serving_section_too_large_to_price_is_refused_before_anything_is_built():
    """A scenario may come from an untrusted bundle's manifest: its variant tables are bounded before allocation."""
    many = ", ".join(f"{{name='v{i}', model='sdxl', steps={i + 1}}}" for i in range(33))
    with pytest.raises(ConfigError, match="at most 32"):
        load_scenario("cascade-gpu", [f"serving.variants=[{many}]"])
    n = 9000  # 9,000 servers x 8 implicit variants (each class its own step count) = 72,000 pairs
    with pytest.raises(ConfigError, match="65,536 pairs"):
        load_scenario("batch-gpu", [f"servers.count={n}", f"servers.hardware={['cuda-a100-sxm4-80gb'] * n}".replace("'", '"'),
                                    f"servers.memory_gib={[80] * n}", f"servers.rate_mbps={[300] * n}",
                                    "tasks.mix[1].steps=[35, 35]", "tasks.mix[2].steps=[36, 36]", "tasks.mix[3].steps=[37, 37]",
                                    "tasks.mix[5].steps=[41, 41]", "tasks.mix[6].steps=[42, 42]", "tasks.mix[7].steps=[43, 43]",
                                    "tasks.mix[0].resolution=512"])
