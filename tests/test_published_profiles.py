"""Published profiles: the schema's rules, every shipped file, the scaling rules against published tables,
the GenTD26 load-latency fit, and one request's delay recomputed by hand (warm and cold)."""

import dataclasses
import copy
import json

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.engine.profiled_costs import GIB, ProfiledCosts
from bench.engine.slotted import SlottedEnv
from bench.engine.system import System
from bench.scenarios import load_scenario
from profiles import store
from profiles.schema import PublishedProfile, profile_from_dict
from tasks.workload import workload_from_arrays


def _data(hardware: str, model: str) -> dict:
    return json.loads(store.find(hardware, model).path.read_text())


def _published():
    return [(r, store.load(r)) for r in store.shipped() if isinstance(store.load(r), PublishedProfile)]


def _step_it_s(p: PublishedProfile, batch: int) -> float:
    """The printed it/s (or s/it) of a published step, as seconds per step."""
    f = p.point(p.resolutions[0], batch).step
    assert f.basis == "published", (p.hardware.id, batch)
    return f.value


# ---- the schema -------------------------------------------------------------------------------------------

def _reject(data: dict, field: str, match: str = "") -> str:
    with pytest.raises(ConfigError) as exc:
        profile_from_dict(data, "x")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"x: {field} = "), msg
    assert match in msg, msg
    return msg


def test_a_published_number_without_citation_is_rejected_naming_the_field():
    d = _data("cuda-t4-16gb", "sd15")
    assert [g["batch"] for g in d["grid"]] == [1, 2, 4, 8, 16] and d["grid"][2]["step"]["basis"] == "published"
    del d["grid"][2]["step"]["citation"]
    _reject(d, "grid[2].step.citation", "every published number needs one")
    d = _data("cuda-t4-16gb", "sd15")  # a cited input of a derived figure
    del d["grid"][1]["step"]["inputs"][0]["citation"]
    _reject(d, "grid[1].step.inputs[0].citation")
    d = _data("cuda-t4-16gb", "sd15")
    d["grid"][2]["step"]["citation"]["source"] = "nowhere"
    _reject(d, "grid[2].step.citation.source", "a key of `sources`")
    d = _data("cuda-t4-16gb", "sd15")
    del d["grid"][2]["step"]["conditions"]
    _reject(d, "grid[2].step.conditions")


def test_an_unknown_source_kind_is_rejected():
    d = _data("cuda-t4-16gb", "sd15")
    d["source"] = "guessed"
    _reject(d, "source", "'measured' or 'published'")
    measured = _data("cpu-intel-xeon-1t", "sd15")
    _reject(dict(measured, source="estimated"), "source")
    assert profile_from_dict(measured, "x").source == "measured"  # version 1: no source field, measured
    _reject(dict(d, source="published", schema_version=1), "schema_version", "2 or later")


def test_a_derived_figure_without_its_rule_is_rejected():
    d = _data("cuda-t4-16gb", "sd15")
    assert d["grid"][1]["step"]["basis"] == "derived"  # batch 2, interpolated
    del d["grid"][1]["step"]["rule"]
    _reject(d, "grid[1].step.rule", "derived without its rule")
    d = _data("cuda-t4-16gb", "sd15")
    d["grid"][1]["step"]["rule"]["kind"] = "vibes"
    _reject(d, "grid[1].step.rule.kind")
    d = _data("cuda-t4-16gb", "sd15")  # a figure printed at batch 1 is not published for batch 2
    d["grid"][1]["step"] = d["grid"][0]["step"]
    _reject(d, "grid[1].step.conditions.batch", "is 'derived', by a rule")
    d = _data("cuda-t4-16gb", "sd15")  # a scaling rule is not a conversion of printed numbers
    d["grid"][0]["step"]["rule"] = {"kind": "batch_linear", "text": "x", "from_batch": 1, "to_batch": 2}
    _reject(d, "grid[0].step.rule.kind", "'derived'")


def test_every_number_must_follow_from_its_rule():
    d = _data("cuda-t4-16gb", "sd15")
    d["grid"][1]["step"]["value"] *= 1.01
    _reject(d, "grid[1].step.value", "what its rule gives (batch_interpolate")
    d = _data("cuda-t4-16gb", "sd15")
    d["grid"][0]["step"]["published"] = [7.0]  # 6.9 it/s printed: 1/7 is not the value
    _reject(d, "grid[0].step.value", "reciprocal")
    d = _data("cuda-t4-16gb", "sd15")
    d["model"]["weights_bytes"]["rule"]["params"][1] += 1
    _reject(d, "model.weights_bytes.value", "weights")


def test_absent_and_zero_differ():
    d = _data("cuda-t4-16gb", "sd15")
    del d["grid"][0]["vae_decode"]
    _reject(d, "grid[0].vae_decode", "<missing>")
    d = _data("cuda-t4-16gb", "sd15")  # a part included in another has no number of its own
    d["text"][0]["encode"]["value"] = 0.0
    _reject(d, "text[0].encode.value", "to be absent")
    d = _data("cuda-t4-16gb", "sd15")  # ... and the part holding it must have one
    d["grid"][0]["vae_decode"] = {"basis": "included_in", "included_in": "text"}  # text is included in the VAE decode
    _reject(d, "text[0].encode.included_in", "a part with a number of its own")
    d = _data("cuda-t4-16gb", "sd15")
    d["grid"][0]["step"] = {"basis": "included_in", "included_in": "vae_decode"}
    _reject(d, "grid[0].step.basis")
    d = _data("cuda-t4-16gb", "sd15")  # a real zero is a number, with its rule
    zero = copy.deepcopy(d["grid"][0]["step"])
    zero["published"], zero["rule"] = [0.0], {"kind": "scale", "text": "zero seconds", "factor": 1.0}
    zero["value"] = 0.0
    d["grid"][0]["vae_decode"] = zero
    p = profile_from_dict(d, "x")
    assert p.costs_at(512, 1).vae_s == 0.0 and p.costs_at(512, 1).text_s == 0.0  # text included in a zero VAE decode


def test_an_assumed_variant_says_why():
    d = _data("cuda-t4-16gb", "sd15")
    assert d["hardware"]["variant_assumed"] is True
    del d["hardware"]["variant_note"]
    _reject(d, "hardware.variant_note")


# ---- the shipped files ---------------------------------------------------------------------------------------

def test_every_shipped_profile_loads_and_published_ones_are_complete():
    from profiles.zoo import PINNED_PARAMS

    refs = store.shipped()
    published = _published()
    assert {r.model for r, _ in published} >= {"sd15", "sdxl", "sd3-medium", "sd3-medium-no-t5"}
    for model in ("sd15", "sdxl"):  # at least five GPUs each, from edge to data centre
        assert len({r.hardware for r, _ in published if r.model == model}) >= 5, model
    assert {"cuda-jetson-agx-orin-64gb", "cuda-h200-sxm-141gb"} <= {r.hardware for r, _ in published}
    for ref in refs:
        store.load(ref)
    for ref, p in published:
        assert p.source == "published" and p.hardware.kind == "cuda"
        assert p.load_distribution == "gentd26-basemodel"
        w = p.model.weights_bytes.rule
        assert w.kind == "weights" and list(w.params) == list(PINNED_PARAMS[ref.model].values()), ref  # the zoo's counts
        for where, f in p.figures():
            assert f.basis != "derived" or f.rule.text, where
        for g in p.grid:  # every point is runnable: a step, and a peak memory
            assert g.step.value > 0 and g.peak_memory_bytes.value > 0


def test_mlperf_figures_are_marked_derived_where_they_are_throughput():
    for hw in ("cuda-h100-sxm-80gb", "cuda-h200-sxm-141gb"):
        p = store.load(store.find(hw, "sdxl"))
        step = p.grid[0].step
        assert step.basis == "derived" and "not an MLPerf result" in step.rule.text and step.unit == "samples/s"
        assert "8x" in step.conditions.gpu and p.grid[0].batch == 32
    orin = store.load(store.find("cuda-jetson-agx-orin-64gb", "sdxl"))
    step = orin.point(1024, 1).step
    assert step.basis == "published" and step.published == (9944364768,) and step.rule.kind == "split"
    assert step.value == pytest.approx(9.944364768 / 20)


def test_sd3_with_and_without_t5_are_compared_like_for_like():
    a = store.load(store.find("cuda-a100-sxm4-80gb-offload", "sd3-medium"))
    b = store.load(store.find("cuda-a100-sxm4-80gb-offload", "sd3-medium-no-t5"))
    ca, cb = a.point(1024, 1).step.conditions, b.point(1024, 1).step.conditions
    assert (ca.gpu, ca.precision, ca.resolution, ca.steps) == (cb.gpu, cb.precision, cb.resolution, cb.steps)
    assert "enable_model_cpu_offload" in ca.software and "enable_model_cpu_offload" in cb.software
    assert a.request_s(1024, 1, 28) == pytest.approx(32.765) and b.request_s(1024, 1, 28) == pytest.approx(19.110)
    assert a.costs_at(1024, 1).peak_bytes / GIB == pytest.approx(12.0645) and b.costs_at(1024, 1).peak_bytes / GIB == pytest.approx(4.266)


def test_the_figures_report_lists_every_printed_number_with_its_citation():
    from profiles.report import published_figures

    profiles = [p for _, p in _published()]
    rows = published_figures(profiles).splitlines()[2:]
    assert any("9.94436e+09 ns" in r and "Orin_TRT" in r for r in rows)
    assert any("6.9 it/s" in r and "torch2.0.md" in r and "54cddc1" in r for r in rows)
    assert all(r.count("|") == 8 for r in rows)


# ---- the scaling rules, checked against published tables --------------------------------------------------------
# diffusers torch2.0.md (the shipped profiles' own published rows): seconds per step at batch 1, 4 and 16.
TORCH2 = [("cuda-a100-sxm4-80gb", "sd15"), ("cuda-v100-sxm2-16gb", "sd15"), ("cuda-t4-16gb", "sd15"), ("cuda-rtx-3090-24gb", "sd15"),
          ("cuda-rtx-4090-24gb", "sd15"), ("cuda-a100-sxm4-80gb", "sdxl"), ("cuda-rtx-4090-24gb", "sdxl")]
# Errors of the rules (predicted / published - 1), as docs/profiles.md shows them.
BATCH_LINEAR_4_TO_16 = [0.048, 0.114, -0.045, 0.053, 0.005, 0.049, -0.050]
INTERPOLATE_1_16_TO_4 = [0.192, -0.031, 0.045, -0.011, 0.045, -0.012, 0.100]
# Old diffusers table (torch2.0.mdx @ 0f3cedaf69a3f0bfd1a5bc44aed510d725d25eee, lines 102-146: SD 1.4, fp16, 50 steps, seconds
# per batch for the whole pipeline, column 'PyTorch2.0 SDPA'): (GPU, {batch: seconds}).
MDX = [("A100", {1: 1.98, 2: 2.38, 4: 3.89, 8: 7.04, 16: 13.55}), ("A10", {4: 10.01, 8: 19.53, 16: 38.31}),
       ("T4", {4: 29.74, 8: 55.99, 16: 113.26}), ("V100", {4: 8.09, 8: 15.44, 16: 29.84}),
       ("3090", {1: 2.42, 4: 7.72, 8: 14.88, 16: 28.88}), ("4090", {1: 1.28, 4: 3.76, 8: 7.43, 16: 14.98})]
MDX_LINEAR_4_8_16 = [0.105, 0.039, 0.025, 0.020, 0.062, -0.011, 0.048, 0.035, 0.038, 0.030, 0.012, -0.008]
# diffusers tome.md @ 58eb52c0803ea9af3abec60841c2a093bdf1f951 (SD 1.5 fp16, PyTorch 1.13.1, seconds, column 'Vanilla'):
# (GPU, from px, seconds, to px, seconds), batch 1.
TOME = [("A100", 768, 3.29, 1024, 6.4), ("V100", 512, 1.88, 768, 5.43)]


def test_batch_rules_against_the_published_batch_tables():
    lin, interp = [], []
    for hw, model in TORCH2:
        p = store.load(store.find(hw, model))
        s1, s4, s16 = (_step_it_s(p, b) for b in (1, 4, 16))
        lin.append(4 * s4 / s16 - 1)  # batch_linear from the largest batch below 16
        interp.append((s1 + (s16 - s1) * 3 / 15) / s4 - 1)  # batch_interpolate between 1 and 16
        # and the profile's own derived points follow those rules
        assert p.point(p.resolutions[0], 8).step.value == pytest.approx(s4 + (s16 - s4) * 4 / 12)
    assert np.allclose(lin, BATCH_LINEAR_4_TO_16, atol=0.0006) and max(map(abs, lin)) < 0.12
    assert np.allclose(interp, INTERPOLATE_1_16_TO_4, atol=0.0006) and max(map(abs, interp)) < 0.2
    # whole-pipeline seconds of another table: batch 8 from 4, and 16 from 8, linear in batch
    errors = [2 * t[lo] / t[2 * lo] - 1 for _, t in MDX for lo in (4, 8)]
    assert np.allclose(errors, MDX_LINEAR_4_8_16, atol=0.0006) and max(map(abs, errors)) < 0.11


def test_the_pixel_rule_underestimates_and_is_not_used():
    errors = [s0 * (r1 / r0) ** 2 / s1 - 1 for _, r0, s0, r1, s1 in TOME]
    assert np.allclose(errors, [-0.086, -0.221], atol=0.0006)
    for _, p in _published():  # every shipped point is published or from a batch rule, never from pixels
        for _, f in p.figures():
            stack = [f]
            while stack:
                g = stack.pop()
                assert g.rule is None or g.rule.kind != "pixels"
                stack.extend(g.inputs or ())


def test_the_memory_rule_against_published_peaks():
    sdxl = store.load(store.find("cuda-rtx-4090-24gb", "sdxl"))
    predicted = sdxl.costs_at(1024, 4).peak_bytes / GIB
    # huggingface/blog simple_sdxl_optimizations.md @ 11e799d7c87eef3c77efedfe2050f91c8351e181: SDXL, A100 40GB, 4 images,
    # fp16 + SDPA: 21.72 GB (torch.cuda.max_memory_allocated in GiB, per the companion notebook)
    assert predicted / 21.72 - 1 == pytest.approx(0.036, abs=0.001)
    sd15 = store.load(store.find("cuda-t4-16gb", "sd15"))
    per_image = (sd15.costs_at(512, 16).peak_bytes - sd15.costs_at(512, 1).peak_bytes) / 15
    # microsoft/onnxruntime stable_diffusion README @ b1954fabd2ec6c699c7b669423d23f8bc805cfff, torch 2.0.0 default rows,
    # 'second run memory MB': A100-SXM4-40GB batch 1 / 16: 4,400 / 16,520; T4 batch 1 / 8: 3,841 / 9,531
    for lo, hi, n in ((4400, 16520, 15), (3841, 9531, 7)):
        published = (hi - lo) / n * 1e6
        assert -0.21 < per_image / published - 1 < -0.15  # the rule's activations per image are 15-21% low


def test_the_non_step_rule_leave_one_out():
    """k (non-step time in steps at batch 1) from two of OneDiff's GPUs predicts the third's end-to-end time."""
    for model, rows in (("sd15", [(21.25, 1.07), (38.32, 0.61), (36.11, 0.64)]), ("sdxl", [(3.97, 5.72), (8.44, 2.76), (9.92, 2.28)])):
        ks = [e2e * its - 20 for its, e2e in rows]
        for i, (its, e2e) in enumerate(rows):
            k = np.mean([x for j, x in enumerate(ks) if j != i])
            assert abs((20 + k) / its / e2e - 1) < 0.03, (model, i)
    # across sources: torch2.0.md A100 SDXL at batch 4, 25 steps, plus the rule, against simple_sdxl's 11.41 s (A100 40GB, fp16 + SDPA)
    a100 = store.load(store.find("cuda-a100-sxm4-80gb", "sdxl"))
    assert a100.request_s(1024, 4, 25) / 11.41 - 1 == pytest.approx(0.015, abs=0.002)


# ---- the GenTD26 load-latency fit ----------------------------------------------------------------------------------

def test_the_load_latency_fit_matches_its_quantiles_and_is_the_profiles_cold_start():
    dist = store.load_latency("gentd26-basemodel")
    mix = dist.distribution
    assert len(mix.weights) == 3 and dist.fit.ks_d < min(a.ks_d for a in dist.fit.alternatives)
    for q in dist.fit.quantiles:
        assert mix.cdf(q.fitted_s)[0] == pytest.approx(q.q, abs=1e-6)
        if 0.05 < q.q < 0.99:  # the fit against the data, where it matters (the lower tail is a few seconds off)
            assert abs(q.fitted_s - q.empirical_s) < 0.6 or abs(q.fitted_s / q.empirical_s - 1) < 0.05, q
    assert mix.mean_s == pytest.approx(dist.fit.mean_empirical_s, rel=0.002)
    assert dist.source.repository == "alibaba/clusterdata" and dist.sample.used == 7531
    rng = np.random.default_rng(0)  # sampling the way the cost model does reproduces the distribution
    z, u = rng.standard_normal(200_000), rng.random(200_000)
    comp = np.searchsorted(np.cumsum(mix.weights), u, side="right")
    x = np.exp(np.array(mix.mu)[comp] + np.array(mix.sigma)[comp] * z)
    assert x.mean() == pytest.approx(mix.mean_s, rel=0.01) and np.median(x) == pytest.approx(dist.fit.quantiles[4].fitted_s, rel=0.02)
    with pytest.raises(ConfigError, match="distribution = 'nope'"):
        store.load_latency("nope")
    assert "load-latency" not in {r.hardware for r in store.shipped()}


# ---- one request's delay by hand ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def edge_gpu():
    return System.build(load_scenario("edge-gpu"), 0)


def _two_sd3_requests(sc, server: int):
    """Two SD3-medium 1-image 30-step requests at `server`'s base station in slot 0."""
    ci = next(i for i, c in enumerate(sc.tasks.mix) if (c.model, c.batch, c.steps) == ("sd3-medium", 1, (30, 30)))
    counts = np.zeros((1, sc.servers.count), dtype=np.int64)
    counts[0, server] = 2
    wl = workload_from_arrays(counts, np.full(2, 0.05), np.ones(2), np.full(2, 30), np.full(2, 2.0))
    object.__setattr__(wl, "task_class", np.full(2, ci, dtype=np.int64))
    object.__setattr__(wl, "deadline_s", np.full(2, np.inf))
    return wl


@pytest.mark.parametrize("drawn", [False, True])
def test_one_request_delay_recomputed_by_hand_warm_and_cold(edge_gpu, drawn):
    sc = edge_gpu.scenario
    server = sc.servers.hardware.index("cuda-rtx-4090-24gb")
    wl = _two_sd3_requests(sc, server)
    # By hand, from the published profile: OneDiff, RTX 4090, SD3-medium at 1024 px: 6.67 it/s, 4.90 s end to end over 28 steps.
    d = _data("cuda-rtx-4090-24gb", "sd3-medium")
    its = d["grid"][0]["step"]["published"][0]
    e2e, its2 = d["grid"][0]["vae_decode"]["published"]
    assert (its, e2e, its2) == (6.67, 4.90, 6.67)
    warm = 30 / its + (e2e - 28 / its)  # 30 steps + the request's non-step time
    dist = json.loads((store.find("cuda-rtx-4090-24gb", "sd3-medium").path.parents[1] / "load-latency" / "gentd26-basemodel.json").read_text())
    w, mu, sig = (np.array(dist["distribution"][k]) for k in ("weights", "mu", "sigma"))
    expected_load = float(np.sum(w * np.exp(mu + sig**2 / 2)))
    download = 2.0 / sc.servers.rate_mbps[server]
    costs: ProfiledCosts = edge_gpu.costs
    env = SlottedEnv(costs, sc.episode.slot_s)
    if drawn:
        seed = 12345  # the System draws a workload's execution noise from the episode's cold-start stream
        r = np.random.default_rng(seed)
        z, u = r.standard_normal(2), r.random(2)
        wl = dataclasses.replace(wl, exec_noise=np.stack([z, u], axis=1))
        env.reset(wl)
        batch = env.batch(2)
        assert batch.compute_s[0, server] == pytest.approx(warm + expected_load)  # the scheduler sees the expected load
        env.step(np.array([server, server]))
        k = int(np.searchsorted(np.cumsum(w), u[0], side="right"))
        load = float(np.exp(mu[k] + sig[k] * z[0]))  # revealed at execution: task 0's own draw
        assert load != pytest.approx(expected_load)
    else:
        env.reset(wl)
        assert env.batch(2).compute_s[0, server] == pytest.approx(warm + expected_load)
        env.step(np.array([server, server]))
        load = expected_load  # without draws a cold start costs its expected value
    t = env.trace()
    cold = warm + load + download  # local: no upload; nothing queued before it
    warm_delay = (warm + load) + warm + download  # waits for the first; its model is now resident
    assert t.compute_s.tolist() == pytest.approx([warm, warm], rel=1e-12) and t.load_s.tolist() == pytest.approx([load, 0.0], rel=1e-12)
    assert t.delay_s.tolist() == pytest.approx([cold, warm_delay], rel=1e-12)
    assert t.upload_s.tolist() == [0.0, 0.0] and t.cold_starts == 1
    assert costs.counters(env._state) == {"cold_starts": 1, "evictions": 0}
    assert costs.load_record(env._state, 2).tolist() == pytest.approx([load, 0.0])


def test_random_cold_starts_are_deterministic_per_stream_and_hidden_from_schedulers(edge_gpu):
    costs = edge_gpu.costs
    wl = edge_gpu.workload(0)
    actions = np.argmax(costs.fits[wl.task_class], axis=1)  # the first server each class may use

    def noisy(seed):
        r = np.random.default_rng(seed)
        return dataclasses.replace(wl, exec_noise=np.stack([r.standard_normal(wl.n_tasks), r.random(wl.n_tasks)], axis=1))

    def run(seed):
        state = costs.new_state()
        out = costs.compute_s_chosen(noisy(seed), 0, wl.n_tasks, actions, state)
        return out, costs.load_record(state, wl.n_tasks), costs.counters(state)

    a, la, ca = run(1)
    b, lb, cb = run(1)
    c, lc, _ = run(2)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and ca == cb
    assert not np.array_equal(la, lc) and (la > 0).sum() == ca["cold_starts"] > 0
    state = costs.new_state()
    costs.compute_s_chosen(noisy(1), 0, 5, actions[:5], state)
    copy_ = costs.copy_state(state)
    assert copy_.load is None  # a scheduler's copy holds no record of what was paid
    det = costs.new_state()  # no draws: expected loads
    d = costs.compute_s_chosen(dataclasses.replace(wl, exec_noise=None), 0, wl.n_tasks, actions, det)
    loaded = costs.load_record(det, wl.n_tasks) > 0
    assert np.allclose(costs.load_record(det, wl.n_tasks)[loaded], store.load_latency("gentd26-basemodel").distribution.mean_s)
    assert np.allclose(d[~loaded], a[~loaded])
    drawn = edge_gpu.workload(0)  # the System attaches the episode's draws: the same for every scheduler
    assert drawn.exec_noise is not None and np.array_equal(drawn.exec_noise, edge_gpu.workload(0).exec_noise)
    assert not np.array_equal(drawn.exec_noise, edge_gpu.workload(1).exec_noise)


# ---- the edge-gpu preset ---------------------------------------------------------------------------------------------

def test_edge_gpu_preset_uses_published_profiles_and_residency_matters(edge_gpu):
    sc = edge_gpu.scenario
    costs = edge_gpu.costs
    assert {type(store.load(store.find(hw, c.model))) for hw in set(sc.servers.hardware) for c in sc.tasks.mix
            if (hw, c.model) in store.for_servers(sc.servers.hardware, sc.tasks.mix)} == {PublishedProfile}
    assert "event time model" in sc.description.lower() and "scenario choice" in sc.description and sc.episode.event
    assert sc.tasks.checkpoints.count == 73 and sc.tasks.checkpoints.shares()[:10].sum() == pytest.approx(0.871, abs=0.001)
    mix = sc.tasks.mix
    w = np.array([c.weight for c in mix])
    share = lambda pred: w[[pred(c) for c in mix]].sum() / w.sum()  # noqa: E731
    assert share(lambda c: c.steps == (30, 30)) == pytest.approx(0.913, abs=0.002)
    assert share(lambda c: c.batch == 1) == pytest.approx(0.5 * 0.5784 + 0.4 * 0.5784 + 0.1 * 13916 / 15936, abs=0.001)
    assert share(lambda c: c.model == "sd3-medium") == pytest.approx(0.1, abs=1e-5)
    b8 = [i for i, c in enumerate(mix) if c.model == "sdxl" and c.batch == 8]
    orin = [a for a, hw in enumerate(sc.servers.hardware) if "orin" in hw]
    assert all(np.flatnonzero(costs.fits[i]).tolist() == orin for i in b8)  # only the Orins hold 8 SDXL images
    from bench.experiments.runs.runner import run_episode
    from schedulers import make

    evictions = cold = 0
    for ep in range(3):
        sched = make("opt-ts")
        sched.reset(edge_gpu.info(), np.random.default_rng(0))
        env = edge_gpu.env()
        run_episode(env, sched, edge_gpu.workload(ep), episode=ep, training=False, who="opt-ts")
        counters = costs.counters(env._state)
        evictions += counters["evictions"]
        cold += counters["cold_starts"]
    pairs = sum(int(costs.fits[:, a][costs.class_model == m].any()) for a in range(sc.servers.count) for m in range(len(costs.models)))
    assert evictions > 0 and cold > pairs  # models are evicted and loaded again, not only first loads


def test_a_request_class_that_fits_no_server_is_rejected(edge_gpu):
    i = len(edge_gpu.scenario.tasks.mix)
    sc = load_scenario("edge-gpu", [f"tasks.mix[{i - 1}].batch=4"])  # the last class is a 2-image SD3-medium one
    assert sc.tasks.mix[i - 1].model == "sd3-medium"
    with pytest.raises(ConfigError, match=rf"tasks.mix\[{i - 1}\].model = 'sd3-medium' .*fits some server's memory at 1024px batch 4 \(needs 32.21 GiB; the servers that have its profile have at most 24.00 GiB\)"):
        System.build(sc, 0)
    sc = load_scenario("edge-gpu", ["tasks.mix[0].batch=3"])  # nobody published 3 images of SD 1.5, and no rule fills it
    with pytest.raises(ConfigError, match=r"tasks.mix\[0\].batch = '512px batch 3'"):
        System.build(sc, 0)
