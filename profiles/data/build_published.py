"""Write the published profiles (profiles/data/cuda-*/<model>.json) from the figures below.

    python profiles/data/build_published.py          # rewrites the files; the loader validates each

This is the one place where a published number is typed in: each with its citation (document and table,
row and column, or repository, path, commit and line) and its conditions. Everything else (seconds per
step from it/s, a batch nobody published, a part no source publishes) is computed here by the rules of
profiles/schema.py (RULES), and the loader recomputes every value from its rule when it reads the file.
docs/profiles.md explains each source and rule and shows the checks of the scaling rules.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.core.config import from_dict
from profiles.schema import SCHEMA, SCHEMA_VERSION, Figure, profile_from_dict, rule_value, save_profile

ROOT = Path(__file__).resolve().parent
GIB = 2**30
DATE = "2026-11-30"
SUITE = "0.1.0"

# ---- the documents ----------------------------------------------------------------------------------------
MLPERF_NOTE = ("MLPerf is a trademark of MLCommons. Figures here are read from the results repository (the result id of "
               "the MLCommons results table is not in it: the result is named by round, division, submitter, system and "
               "scenario). Numbers derived from a result are marked derived and are not MLPerf results.")
SOURCES: dict[str, dict[str, Any]] = {
    "diffusers-torch2": dict(
        title="diffusers documentation 'Accelerated PyTorch 2.0 support' (torch2.0.md), benchmark tables in iterations/second",
        repository="huggingface/diffusers", path="docs/source/en/optimization/torch2.0.md",
        commit="54cddc1e127a481ecb20179acf4a57f5421f4626", licence="Apache-2.0",
        note="the last revision before the page was removed (be2fb77); the SDXL rows were added in 850b3c8 without their code"),
    "onediff-sd15": dict(
        title="OneDiff 'Run SD1.5 with nexfort backend', performance comparison table (PyTorch baseline rows)",
        repository="siliconflow/onediff", path="onediff_diffusers_extensions/examples/sd1.5/README.md",
        commit="98898c49155ae33de506c1d1d9da70732da4046e", licence="Apache-2.0"),
    "onediff-sdxl": dict(
        title="OneDiff 'Run SDXL with nexfort backend', performance comparison table (PyTorch baseline rows)",
        repository="siliconflow/onediff", path="onediff_diffusers_extensions/examples/sdxl/README.md",
        commit="98898c49155ae33de506c1d1d9da70732da4046e", licence="Apache-2.0"),
    "onediff-sd3": dict(
        title="OneDiff 'Run SD3 with nexfort backend', performance comparison tables (PyTorch baseline rows)",
        repository="siliconflow/onediff", path="onediff_diffusers_extensions/examples/sd3/README.md",
        commit="98898c49155ae33de506c1d1d9da70732da4046e", licence="Apache-2.0",
        note="steps, resolution, dtype and the memory measure are the defaults of the table's script, "
             "onediff_diffusers_extensions/examples/sd3/text_to_image_sd3.py at the same commit: 28 steps, 1024x1024, "
             "torch.float16, guidance 4.5, torch.cuda.max_memory_allocated() / 1024**3"),
    "mlperf41-orin": dict(
        title="MLPerf Inference v4.1, closed division, NVIDIA, system Orin_TRT, stable-diffusion-xl, SingleStream: performance summary",
        repository="mlcommons/inference_results_v4.1",
        path="closed/NVIDIA/results/Orin_TRT/stable-diffusion-xl/SingleStream/performance/run_1/mlperf_log_summary.txt",
        commit="198fc46799b3328b36ee4bcbdebfa2db5a8e6183", licence="Apache-2.0", note=MLPERF_NOTE),
    "mlperf41-orin-system": dict(
        title="MLPerf Inference v4.1, NVIDIA system description Orin_TRT (Jetson AGX Orin Developer Kit 64G)",
        repository="mlcommons/inference_results_v4.1", path="closed/NVIDIA/systems/Orin_TRT.json",
        commit="198fc46799b3328b36ee4bcbdebfa2db5a8e6183", licence="Apache-2.0", note=MLPERF_NOTE),
    "mlperf41-h100x8": dict(
        title="MLPerf Inference v4.1, closed division, NVIDIA, system DGX-H100_H100-SXM-80GBx8_TRT, stable-diffusion-xl, Offline: performance summary",
        repository="mlcommons/inference_results_v4.1",
        path="closed/NVIDIA/results/DGX-H100_H100-SXM-80GBx8_TRT/stable-diffusion-xl/Offline/performance/run_1/mlperf_log_summary.txt",
        commit="198fc46799b3328b36ee4bcbdebfa2db5a8e6183", licence="Apache-2.0", note=MLPERF_NOTE),
    "mlperf41-h100x8-system": dict(
        title="MLPerf Inference v4.1, NVIDIA system description DGX-H100_H100-SXM-80GBx8_TRT",
        repository="mlcommons/inference_results_v4.1", path="closed/NVIDIA/systems/DGX-H100_H100-SXM-80GBx8_TRT.json",
        commit="198fc46799b3328b36ee4bcbdebfa2db5a8e6183", licence="Apache-2.0", note=MLPERF_NOTE),
    "mlperf41-h200x8": dict(
        title="MLPerf Inference v4.1, closed division, NVIDIA, system H200-SXM-141GBx8_TRT, stable-diffusion-xl, Offline: performance summary",
        repository="mlcommons/inference_results_v4.1",
        path="closed/NVIDIA/results/H200-SXM-141GBx8_TRT/stable-diffusion-xl/Offline/performance/run_1/mlperf_log_summary.txt",
        commit="198fc46799b3328b36ee4bcbdebfa2db5a8e6183", licence="Apache-2.0", note=MLPERF_NOTE),
    "mlperf41-h200x8-system": dict(
        title="MLPerf Inference v4.1, NVIDIA system description H200-SXM-141GBx8_TRT",
        repository="mlcommons/inference_results_v4.1", path="closed/NVIDIA/systems/H200-SXM-141GBx8_TRT.json",
        commit="198fc46799b3328b36ee4bcbdebfa2db5a8e6183", licence="Apache-2.0", note=MLPERF_NOTE),
    "mlperf40-l4": dict(
        title="MLPerf Inference v4.0, closed division, Dell, system XR8620_L4x1_TRT (PowerEdge XR8620t, 1x L4), stable-diffusion-xl, SingleStream: performance summary",
        repository="mlcommons/inference_results_v4.0",
        path="closed/Dell/results/XR8620_L4x1_TRT/stable-diffusion-xl/SingleStream/performance/run_1/mlperf_log_summary.txt",
        commit="3c4a1cf196b70175cfe7c59e067cd1d923aa4f3f", licence="Apache-2.0 (as the v4.1 repository; not re-read for v4.0)", note=MLPERF_NOTE),
    "mlperf40-l4-system": dict(
        title="MLPerf Inference v4.0, Dell system description XR8620_L4x1_TRT",
        repository="mlcommons/inference_results_v4.0", path="closed/Dell/systems/XR8620_L4x1_TRT.json",
        commit="3c4a1cf196b70175cfe7c59e067cd1d923aa4f3f", licence="Apache-2.0 (as the v4.1 repository; not re-read for v4.0)", note=MLPERF_NOTE),
    "hfblog-sd3": dict(
        title="Hugging Face blog 'Diffusers welcomes Stable Diffusion 3' (sd3.md), table 'Summary of Memory Optimizations'",
        repository="huggingface/blog", path="sd3.md", commit="04fdd03d5565a696b9fcfa5da34f302750adeceb",
        url="https://huggingface.co/blog/sd3", licence="not stated in the repository",
        note="'default arguments of the StableDiffusion3Pipeline __call__() method', linked at diffusers adc31940: 28 steps, "
             "guidance 7.0, one image, max_sequence_length 256; 1024 px from the checkpoint's default sample size"),
    "alexeigor": dict(
        title="alexeigor/sd-benchmarks README (GPU names with their memory in the section headings)",
        repository="alexeigor/sd-benchmarks", path="README.md", commit="858318038b3c451ac0b72788c355008bf20366c5",
        licence="none stated (cited for the memory of the GPUs only)"),
    "lambda-gpu-specs": dict(
        title="Lambda LLM calculator, GPU specification table data/gpu_specs.csv (column Memory)",
        url="https://huggingface.co/spaces/lambdabrendan/Lambda-LLM-Calculator/blame/main/data/gpu_specs.csv",
        licence="not stated (cited for the memory of the GPUs only)"),
}

# ---- helpers -------------------------------------------------------------------------------------------------


def cond(gpu: str, precision: str, software: str, includes: str, *, resolution: int | None = None, steps: int | None = None,
         batch: int | None = None, note: str | None = None) -> dict:
    return {k: v for k, v in dict(gpu=gpu, precision=precision, software=software, includes=includes, resolution=resolution,
                                   steps=steps, batch=batch, note=note).items() if v is not None}


def rule(kind: str, text: str, **params: Any) -> dict:
    return dict(kind=kind, text=text, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()})


def _valued(d: dict, memory: float | None = None) -> dict:
    """Set `value` from the rule (the same formulas the loader checks)."""
    value = rule_value(from_dict(Figure, d), memory)
    assert value is not None, d
    return dict(d, value=value)


def pub(numbers: list[float], unit: str, source: str, locator: str, conditions: dict, r: dict, basis: str = "published") -> dict:
    return _valued(dict(basis=basis, published=numbers, unit=unit, citation=dict(source=source, locator=locator),
                        conditions=conditions, rule=r))


def der(r: dict, inputs: list[dict] | None = None, memory: float | None = None) -> dict:
    d = dict(basis="derived", rule=r)
    if inputs is not None:
        d["inputs"] = inputs
    return _valued(d, memory)


def incl(part: str) -> dict:
    return dict(basis="included_in", included_in=part)


def weights(model: str, precision: str, components: list[tuple[str, int, float]]) -> dict:
    names = ", ".join(f"{n} {p:,} x {b:g} B" for n, p, b in components)
    return der(rule("weights", f"the zoo's pinned parameter counts of {model} (profiles/zoo.py PINNED_PARAMS) at {precision}: {names}",
                    params=tuple(p for _, p, _ in components), bytes_per_param=tuple(b for _, _, b in components)))


PINNED = {  # profiles/zoo.py PINNED_PARAMS (tests/test_published_profiles.py checks these against the zoo)
    "sd15": [("text_encoder", 123_060_480), ("unet", 859_520_964), ("vae", 83_653_863)],
    "sdxl": [("text_encoder", 123_060_480), ("text_encoder_2", 694_659_840), ("unet", 2_567_463_684), ("vae", 83_653_863)],
    "sd3-medium": [("text_encoder", 123_650_304), ("text_encoder_2", 694_659_840), ("text_encoder_3", 4_762_310_656),
                   ("transformer", 2_028_328_000), ("vae", 83_819_683)],
    "sd3-medium-no-t5": [("text_encoder", 123_650_304), ("text_encoder_2", 694_659_840), ("transformer", 2_028_328_000),
                         ("vae", 83_819_683)],
}


def fp16_weights(model: str) -> dict:
    return weights(model, "fp16 (2 bytes per parameter)", [(n, p, 2) for n, p in PINNED[model]])


def denoiser8_weights(model: str, dtype: str) -> dict:
    return weights(model, f"{dtype} denoiser (1 byte per parameter, the submission's weight type) and fp16 text encoders and "
                          "VAE (2 bytes; assumed: the submission does not say)",
                   [(n, p, 1 if n in ("unet", "transformer") else 2) for n, p in PINNED[model]])


def gib_memory(numbers: float, printed: str, source: str, locator: str, gpu: str, note: str = "") -> dict:
    return pub([numbers], printed, source, locator,
               cond(gpu, "-", "-", "the GPU's memory", note=note or None),
               rule("scale", "GB as printed read as GiB (2^30 bytes), the unit GPU memory sizes are made in", factor=GIB))


GENTD26_MEAN = None  # filled from the distribution file in main()


def cold_start() -> dict:
    return dict(basis="derived", value=GENTD26_MEAN, rule=rule(
        "distribution_mean",
        "No source publishes the time to load this model onto this GPU. Cold starts draw from the base-model load latencies "
        "of Alibaba's production Stable Diffusion service (GenTD26), fitted in profiles/data/load-latency/gentd26-basemodel.json; "
        "this value is that distribution's mean, what a scheduler expects. The same for every GPU: the service's GPUs are not stated.",
        distribution="gentd26-basemodel"))


def _cited(node: Any) -> set[str]:
    """The source keys cited anywhere in a profile's figures."""
    if isinstance(node, dict):
        keys = {node["citation"]["source"]} if isinstance(node.get("citation"), dict) else set()
        return keys.union(*(_cited(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_cited(v) for v in node))
    return set()


def profile(hw: dict, model: dict, text: list[dict], grid: list[dict], note: str, out_of_memory: list[dict] | None = None) -> dict:
    d = dict(schema=SCHEMA, schema_version=SCHEMA_VERSION, source="published", model=model, hardware=hw,
             provenance=dict(date=DATE, suite_version=SUITE, note=note), sources=[], text=text, grid=grid,
             cold_start=dict(load=cold_start()))
    if out_of_memory:
        d["out_of_memory"] = out_of_memory
    d["sources"] = [dict(key=k, **SOURCES[k]) for k in sorted(_cited(d))]
    return d


# ---- the GPUs ----------------------------------------------------------------------------------------------------

def hardware(id_: str, name: str, variant: str, memory: dict, assumed_note: str | None = None) -> dict:
    d = dict(id=id_, kind="cuda", name=name, variant=variant, variant_assumed=assumed_note is not None, memory_bytes=memory)
    if assumed_note:
        d["variant_note"] = assumed_note
    return d


HF_A100 = ("the source says 'A100' only; assumed the 80 GB SXM4 part that Hugging Face's other benchmarks of the same "
           "period name ('80GB 400W A100' in diffusers' fast_diffusion.md, 'A100 GPU with 80GB' in the SD3 blog)")
GPUS = {
    "t4": hardware("cuda-t4-16gb", "NVIDIA T4", "16 GB, PCIe",
                   gib_memory(16, "gb", "alexeigor", "line 86, table under heading '#### V100, T4' (line 82): row 'T4, 16gb'", "T4"),
                   "the step-time source says 'T4' only; the T4 is made with 16 GB"),
    "rtx4090": hardware("cuda-rtx-4090-24gb", "NVIDIA GeForce RTX 4090", "24 GB",
                        gib_memory(24, "GB", "alexeigor", "line 15, heading '#### RTX 4090, 24GB'", "RTX 4090"),
                        "the sources say 'RTX 4090' only; the RTX 4090 is made with 24 GB"),
    "rtx3090": hardware("cuda-rtx-3090-24gb", "NVIDIA GeForce RTX 3090", "24 GB",
                        gib_memory(24, "GB", "lambda-gpu-specs", "row 'GeForce RTX 3090', column Memory: '24 GB, GDDR6X, 384 bit'", "RTX 3090"),
                        "the source says 'RTX 3090' only; the RTX 3090 is made with 24 GB"),
    "v100": hardware("cuda-v100-sxm2-16gb", "NVIDIA Tesla V100", "16 GB, SXM2",
                     gib_memory(16, "GB", "lambda-gpu-specs", "row 'Tesla V100 SXM2 16 GB', column Memory: '16 GB, HBM2, 4096 bit'", "V100 SXM2 16 GB"),
                     "the source says 'V100' only (made with 16 or 32 GB, PCIe or SXM2); assumed the 16 GB SXM2 part"),
    "a100": hardware("cuda-a100-sxm4-80gb", "NVIDIA A100", "80 GB, SXM4",
                     gib_memory(80, "GB", "lambda-gpu-specs", "row 'A100 SXM4 80 GB', column Memory: '80 GB, HBM2e, 5120 bit'", "A100 SXM4 80 GB"),
                     HF_A100),
    "a100-offload": hardware("cuda-a100-sxm4-80gb-offload", "NVIDIA A100, pipelines with model CPU offload", "80 GB, SXM4",
                             gib_memory(80, "GB", "lambda-gpu-specs", "row 'A100 SXM4 80 GB', column Memory: '80 GB, HBM2e, 5120 bit'", "A100 SXM4 80 GB"),
                             "the source says 'A100 GPU with 80GB of VRAM'; the form factor is assumed SXM4. This id is the A100 "
                             "running pipelines with diffusers' enable_model_cpu_offload(): each component moves to the GPU only "
                             "while it runs, so the GPU never holds the whole model"),
    "orin": hardware("cuda-jetson-agx-orin-64gb", "NVIDIA Jetson AGX Orin", "Developer Kit 64 GB (memory shared by CPU and GPU)",
                     gib_memory(64, "GB", "mlperf41-orin-system", "line 18, host_memory_capacity: '64 GB' (line 6, accelerator_memory_capacity: 'Shared with host')",
                                "Jetson AGX Orin 64G", note="memory shared with the CPU and the operating system: the GPU can use less")),
    "l4": hardware("cuda-l4-24gb", "NVIDIA L4", "24 GB, PCIe",
                   gib_memory(24, "GB", "mlperf40-l4-system", "line 6, accelerator_memory_capacity: '24 GB'", "L4")),
    "h100": hardware("cuda-h100-sxm-80gb", "NVIDIA H100", "80 GB, SXM",
                     gib_memory(80, "GB", "mlperf41-h100x8-system", "line 6, accelerator_memory_capacity: '80 GB'", "H100-SXM-80GB")),
    "h200": hardware("cuda-h200-sxm-141gb", "NVIDIA H200", "141 GB, SXM",
                     gib_memory(141, "GB", "mlperf41-h200x8-system", "line 6, accelerator_memory_capacity: '141 GB'", "H200-SXM-141GB")),
}

# ---- diffusers torch2.0.md: it/s, "torch 2.0 - no compile" column ------------------------------------------------
TORCH2_LINES = {  # (gpu heading, batch) -> line of the table heading; the row follows
    ("A100", 1): 274, ("A100", 4): 285, ("A100", 16): 296, ("V100", 1): 307, ("V100", 4): 317, ("V100", 16): 327,
    ("T4", 1): 337, ("T4", 4): 348, ("T4", 16): 359, ("RTX 3090", 1): 370, ("RTX 3090", 4): 380, ("RTX 3090", 16): 390,
    ("RTX 4090", 1): 400, ("RTX 4090", 4): 411, ("RTX 4090", 16): 422,
}
TORCH2 = {  # (model, gpu heading) -> {batch: printed "torch 2.0 - no compile" value}
    ("sd15", "A100"): {1: 21.66, 4: 11.6, 16: 3.04}, ("sd15", "V100"): {1: 18.99, 4: 5.96, 16: 1.66},
    ("sd15", "T4"): {1: 6.9, 4: 1.79, 16: 2.34}, ("sd15", "RTX 3090"): {1: 22.56, 4: 6.46, 16: 1.7},
    ("sd15", "RTX 4090"): {1: 40.5, 4: 12.62, 16: 3.17},
    ("sdxl", "A100"): {1: 8.64, 4: 2.44, 16: 0.64}, ("sdxl", "T4"): {1: 1.15, 4: 0.288}, ("sdxl", "RTX 4090"): {1: 6.8, 4: 2.19, 16: 0.52},
}
T4_SD_B16 = "2.34s"  # printed with an 's': read as seconds per iteration (the progress bar's unit below 1 it/s)
TORCH2_SOFTWARE = ("PyTorch 2.0 without torch.compile, diffusers v0.17.0.dev0, PyTorch's scaled_dot_product_attention (the "
                   "default), UNet in channels_last")
ONEDIFF = {  # model -> [(gpu, column, it/s, E2E s, max mem GiB, line of it/s, line of E2E, line of memory)]
    "sd15": [("RTX 3090", "RTX3090, 512*512", 21.25, 1.07, 2.62, 70, 72, 74), ("RTX 4090", "RTX4090, 512*512", 38.32, 0.61, 2.62, 70, 72, 74),
             ("A800-SXM4-80GB", "A800-SXM4-80GB, 512*512", 36.11, 0.64, 2.62, 70, 72, 74)],
    "sdxl": [("RTX 3090", "RTX 3090  1024*1024", 3.97, 5.72, 10.47, 72, 74, 76), ("RTX 4090", "RTX 4090 1024*1024", 8.44, 2.76, 10.47, 72, 74, 76),
             ("A800-SXM4-80GB", "A800-SXM4-80GB, 1024*1024", 9.92, 2.28, 10.47, 72, 74, 76)],
}
RES = {"sd15": 512, "sdxl": 1024, "sd3-medium": 1024, "sd3-medium-no-t5": 1024}
ONEDIFF_SOFTWARE = "PyTorch 2.3 (no compile), diffusers 0.29.2, the model's fp16 variant"


def torch2_step(model: str, gpu: str, batch: int) -> dict:
    x = TORCH2[model, gpu][batch]
    table = f"{gpu} (batch size: {batch})"
    row = "SD - txt2img" if model == "sd15" else "SDXL - txt2img"
    locator = f"table '{table}' (heading at line {TORCH2_LINES[gpu, batch]}), row '{row}', column 'torch 2.0 - no compile'"
    c = cond(gpu, "fp16", TORCH2_SOFTWARE, "denoising steps only (iterations per second of the denoising loop): text encoding and VAE decode excluded",
             resolution=RES[model], steps=50, batch=batch,
             note=f"{RES[model]} px and 50 steps are the pipeline's defaults: the benchmark passes neither; the GPU variant is not stated")
    if (model, gpu, batch) == ("sd15", "T4", 16):
        return pub([x], "s/it (printed '2.34s')", "diffusers-torch2", locator, c,
                   rule("scale", "printed with an 's' suffix ('2.34s'), read as seconds per iteration, the unit the progress "
                                 "bar switches to below 1 it/s (6.84 image-steps/s, as at batch 1 and 4)", factor=1.0))
    return pub([x], "it/s", "diffusers-torch2", locator, c, rule("reciprocal", "seconds per step = 1 / (iterations per second)", factor=1.0))


def onediff_figures(model: str) -> tuple[list[dict], list[dict]]:
    """OneDiff's PyTorch-baseline rows: (non-step time in step-equivalents, peak memory) per GPU."""
    src = "onediff-sd15" if model == "sd15" else "onediff-sdxl"
    se, mem = [], []
    for gpu, column, its, e2e, gib, l_its, l_e2e, l_mem in ONEDIFF[model]:
        c = cond(gpu, "fp16", ONEDIFF_SOFTWARE, "end-to-end: text encoding + 20 steps + VAE decode (the pipeline call)",
                 resolution=RES[model], steps=20, batch=1)
        se.append(pub([e2e, its], "s, it/s", src, f"column '{column}', rows 'PyTorch E2E time' (line {l_e2e}) and 'PyTorch iteration speed' (line {l_its})", c,
                      rule("step_equivalents", "the request's non-step time in steps: end-to-end time x it/s - steps", steps=20)))
        mem.append(pub([gib], "GiB", src, f"column '{column}', row 'PyTorch Max Mem Used' (line {l_mem})",
                       cond(gpu, "fp16", ONEDIFF_SOFTWARE, "peak of torch.cuda.max_memory_allocated over the request, all components resident",
                            resolution=RES[model], steps=20, batch=1),
                       rule("scale", "GiB to bytes", factor=GIB)))
    return se, mem


def memory_rule(w: dict, peak1: dict, batch: int, why: str = "") -> dict:
    """peak(b) = weights + b x (peak(1) - weights)."""
    act = der(rule("difference", "activation memory of one image: peak memory at batch 1 - the weights"), [peak1, w])
    return der(rule("affine", f"peak memory = weights + {batch} x the activation memory of one image (activations linear in "
                              f"batch; checked in docs/profiles.md){why}", factor=float(batch)), [w, act])


def torch2_profile(model: str, gpu_key: str, gpu: str, batches: list[int], interpolate: list[int], note: str,
                   gpu_memory_points: dict[int, str] | None = None, oom: list[dict] | None = None) -> dict:
    hw = GPUS[gpu_key]
    w = fp16_weights(model)
    steps = {b: torch2_step(model, gpu, b) for b in batches}
    for b in interpolate:
        lo = max(x for x in batches if x < b)
        hi = min(x for x in batches if x > b)
        steps[b] = der(rule("batch_interpolate", f"not published: linear in batch between the published batches {lo} and {hi} "
                                                 "(checked in docs/profiles.md)", batch_lo=lo, batch_hi=hi, to_batch=b),
                       [steps[lo], steps[hi]])
    se, mem = onediff_figures(model)
    k = der(rule("mean", "non-step time of a batch-1 request in steps (text encoding, VAE decode and the pipeline's other "
                         "work): the mean over OneDiff's three GPUs; a property of the model and pipeline, close on all three"), se)
    peak1 = der(rule("mean", "peak memory at batch 1 on three GPUs (OneDiff, PyTorch baseline): the same on each, so a property "
                             "of the model and software, not of the GPU"), mem)
    grid, text = [], []
    for b in sorted(steps):
        vae = der(rule("product", f"not published by the step-time source: text encoding, VAE decode and the pipeline's other "
                                  f"non-step work of {b} image(s) = {b} x k x this GPU's batch-1 step, k = the non-step time of a "
                                  "batch-1 request in steps (OneDiff, three GPUs); text encoding is counted here",
                       factor=float(b)), [k, steps[1]])
        if gpu_memory_points and b in gpu_memory_points:
            peak = der(rule("gpu_memory", gpu_memory_points[b]), memory=hw["memory_bytes"]["value"])
        elif b == 1:
            peak = peak1
        else:
            peak = memory_rule(w, peak1, b)
        grid.append(dict(resolution=RES[model], batch=b, step=steps[b], vae_decode=vae, peak_memory_bytes=peak))
        text.append(dict(batch=b, encode=incl("vae_decode")))
    model_d = dict(name=model, checkpoint="stable-diffusion-v1-5 (step times), runwayml/stable-diffusion-v1-5 (OneDiff)" if model == "sd15"
                   else "stable-diffusion-xl-base-1.0", precision="fp16", weights_bytes=w)
    return profile(hw, model_d, text, grid, note, oom)


# ---- MLPerf SDXL --------------------------------------------------------------------------------------------------
MLPERF_STEPS = ("20 Euler steps, guidance 8, 1024 px: the benchmark's constants (NVIDIA's harness, "
                "closed/NVIDIA/code/stable-diffusion-xl/tensorrt/utilities.py at the v4.1 commit: STEPS = 20, IMAGE_SIZE = 1024)")


def mlperf_single_stream(gpu_key: str, src: str, ns: int, gpu: str, software: str, precision: str, batches: list[int], note: str) -> dict:
    hw = GPUS[gpu_key]
    c = cond(gpu, precision, software, "the whole request: both CLIP text encoders, 20 UNet steps (x2 latents for guidance) and the VAE decode",
             resolution=1024, steps=20, batch=1, note=MLPERF_STEPS)
    step1 = pub([ns], "ns", src, "line 28, 'Mean latency (ns)' (SingleStream: one request at a time, one image each)", c,
                rule("split", "a whole request's time over its 20 steps: seconds per step with text encoding and VAE decode "
                              "included in it (a request of k steps then costs k/20 of the published time)", factor=1e-9, steps=20))
    w = denoiser8_weights("sdxl", "int8")
    _, mem = onediff_figures("sdxl")
    peak1_fp16 = der(rule("mean", "peak memory of SDXL at 1024 px, batch 1, fp16 PyTorch (OneDiff, three GPUs)"), mem)
    w16 = fp16_weights("sdxl")
    act = der(rule("difference", "activation memory of one image: fp16 PyTorch peak at batch 1 - fp16 weights (OneDiff and the "
                                 "zoo); this GPU's int8 TensorRT engine is not measured: an approximation"), [peak1_fp16, w16])
    grid, text = [], []
    for b in batches:
        step = step1 if b == 1 else der(rule("batch_linear", "not published: linear in batch above the largest published batch (1); "
                                                             "the submission's Offline run also batches one image at a time",
                                             from_batch=1, to_batch=b), [step1])
        peak = der(rule("affine", f"peak memory = this profile's weights + {b} x the activation memory of one image (fp16 PyTorch)",
                        factor=float(b)), [w, act])
        grid.append(dict(resolution=1024, batch=b, step=step, vae_decode=incl("step"), peak_memory_bytes=peak))
        text.append(dict(batch=b, encode=incl("step")))
    model_d = dict(name="sdxl", checkpoint="stable-diffusion-xl-base-1.0 (MLCommons' copy), UNet quantised to int8", precision="int8 UNet (TensorRT)",
                   weights_bytes=w)
    return profile(hw, model_d, text, grid, note)


def mlperf_offline(gpu_key: str, src: str, sps: float, gpu: str, note: str) -> dict:
    hw = GPUS[gpu_key]
    c = cond(f"8x {gpu}", "fp8 UNet (the submission's measurements file: weight_data_types fp8)",
             "TensorRT 10.2.0, CUDA 12.4 (system description)", "throughput of the whole 8-GPU system, requests of one image each",
             resolution=1024, steps=20,
             note=MLPERF_STEPS + "; Offline: all queries at once, NVIDIA's offline configuration "
                  "(closed/NVIDIA/configs/stable-diffusion-xl/Offline/__init__.py) runs the UNet on batches of 32 images (x2 for guidance)")
    step = pub([sps], "samples/s", src, "line 7, 'Samples per second'", c,
               rule("reciprocal", "derived from an MLPerf result, not an MLPerf result: one GPU's time per step of a batch of 32 "
                                  "images = 8 GPUs x 32 images / (system samples per second) / 20 steps (the system's throughput "
                                  "shared equally by its 8 GPUs, batches of 32 as in its offline configuration; text encoding and "
                                  "VAE decode included)", factor=8 * 32 / 20), basis="derived")
    w = denoiser8_weights("sdxl", "fp8")
    peak = der(rule("gpu_memory", "not published: the submission ran batches of 32 on this GPU, so the GPU's memory bounds the peak "
                                  "(the fp16 PyTorch activation rule would give more than the GPU has)"), memory=hw["memory_bytes"]["value"])
    grid = [dict(resolution=1024, batch=32, step=step, vae_decode=incl("step"), peak_memory_bytes=peak)]
    model_d = dict(name="sdxl", checkpoint="stable-diffusion-xl-base-1.0 (MLCommons' copy), UNet quantised to fp8", precision="fp8 UNet (TensorRT)",
                   weights_bytes=w)
    return profile(hw, model_d, [dict(batch=32, encode=incl("step"))], grid, note)


# ---- SD3-medium ----------------------------------------------------------------------------------------------------

def sd3_onediff_4090() -> dict:
    hw = GPUS["rtx4090"]
    c = cond("RTX 4090", "fp16", "PyTorch (no compile) with diffusers' StableDiffusion3Pipeline, data of 2024-06-29",
             "end-to-end: the three text encoders (CLIP-L, CLIP-G, T5-XXL), 28 steps and the VAE decode", resolution=1024, steps=28, batch=1,
             note="steps, resolution and dtype from the table's script (see the source's note)")
    step1 = pub([6.67], "it/s", "onediff-sd3", "table 'Testing on RTX 4090', row 'PyTorch iteration speed' (line 72)", c,
                rule("reciprocal", "seconds per step = 1 / (iterations per second)", factor=1.0))
    other1 = pub([4.90, 6.67], "s, it/s", "onediff-sd3", "table 'Testing on RTX 4090', rows 'PyTorch E2E time' (line 74) and 'PyTorch iteration speed' (line 72)", c,
                 rule("e2e_minus_steps", "the request's non-step time (text encoding with T5, VAE decode, pipeline work) = "
                                         "end-to-end time - 28 steps at the published it/s", steps=28))
    peak1 = pub([18.799], "GiB", "onediff-sd3", "table 'Testing on RTX 4090', row 'PyTorch Max Mem Used' (line 76)",
                cond("RTX 4090", "fp16", "as above", "torch.cuda.max_memory_allocated over the request, all components resident",
                     resolution=1024, steps=28, batch=1), rule("scale", "GiB to bytes", factor=GIB))
    w = fp16_weights("sd3-medium")
    grid = [dict(resolution=1024, batch=1, step=step1, vae_decode=other1, peak_memory_bytes=peak1)]
    for b in (2, 4, 8):
        grid.append(dict(resolution=1024, batch=b,
                         step=der(rule("batch_linear", "not published: linear in batch above the largest published batch (1)", from_batch=1, to_batch=b), [step1]),
                         vae_decode=der(rule("batch_linear", "not published: the non-step time linear in batch above batch 1", from_batch=1, to_batch=b), [other1]),
                         peak_memory_bytes=memory_rule(w, peak1, b)))
    text = [dict(batch=b, encode=incl("vae_decode")) for b in (1, 2, 4, 8)]
    model_d = dict(name="sd3-medium", checkpoint="stabilityai/stable-diffusion-3-medium-diffusers", precision="fp16", weights_bytes=w)
    return profile(hw, model_d, text, grid,
                   "SD3-medium with T5 on an RTX 4090 (OneDiff's PyTorch baseline). Batches 2, 4 and 8 are derived; by the "
                   "activation rule 4 and 8 images need more memory than the GPU has.")


def sd3_blog(model: str, gpu_key: str, row: str, seconds: float, gb: float, batches: list[int], note: str, offload: bool) -> dict:
    hw = GPUS[gpu_key]
    what = ("all components resident" if not offload else
            "enable_model_cpu_offload(): each component on the GPU only while it runs") + (", T5 dropped (text_encoder_3=None)" if "no-t5" in model else "")
    software = "PyTorch 2.3, diffusers StableDiffusion3Pipeline with its default arguments" + ("; enable_model_cpu_offload()" if offload else "")
    c = cond("A100 80GB", "fp16", software, f"the whole pipeline call (text encoders, 28 steps, VAE decode); {what}; mean of 10 calls after 3 warm-ups",
             resolution=1024, steps=28, batch=1)
    step1 = pub([seconds], "s", "hfblog-sd3", f"table 'Summary of Memory Optimizations', row '{row}', column 'Inference Time (secs)'", c,
                rule("split", "a whole request's time over its 28 steps: seconds per step with text encoding and VAE decode "
                              "included in it", factor=1.0, steps=28))
    peak1 = pub([gb], "GB", "hfblog-sd3", f"table 'Summary of Memory Optimizations', row '{row}', column 'Memory (GB)'", c,
                rule("scale", "read as GiB: OneDiff prints the same 18.765 as GiB (torch.cuda.max_memory_allocated / 1024**3) for "
                              "the default pipeline on an A100-PCIE-40GB", factor=GIB))
    w = fp16_weights(model)
    grid, text = [], []
    for b in batches:
        step = step1 if b == 1 else der(rule("batch_linear", "not published: linear in batch above the largest published batch (1)",
                                             from_batch=1, to_batch=b), [step1])
        peak = peak1 if b == 1 else memory_rule(w, peak1, b)
        grid.append(dict(resolution=1024, batch=b, step=step, vae_decode=incl("step"), peak_memory_bytes=peak))
        text.append(dict(batch=b, encode=incl("step")))
    model_d = dict(name=model, checkpoint="stable-diffusion-3-medium (2B), diffusers format" + (", without T5-XXL" if "no-t5" in model else ""),
                   precision="fp16", weights_bytes=w)
    return profile(hw, model_d, text, grid, note)


# ---- everything ----------------------------------------------------------------------------------------------------

def build() -> dict[str, dict]:
    out: dict[str, dict] = {}
    torch2_note = ("Step times of the diffusers PyTorch 2.0 benchmark (batch 1, 4, 16 published; 2 and 8 interpolated); the "
                   "non-step time and the peak memory derived from OneDiff's PyTorch rows (docs/profiles.md).")
    for key, gpu in (("t4", "T4"), ("rtx4090", "RTX 4090"), ("a100", "A100"), ("v100", "V100"), ("rtx3090", "RTX 3090")):
        out[f"{GPUS[key]['id']}/sd15"] = torch2_profile("sd15", key, gpu, [1, 4, 16], [2, 8], "SD 1.5 at 512 px. " + torch2_note)
    for key, gpu in (("rtx4090", "RTX 4090"), ("a100", "A100")):
        out[f"{GPUS[key]['id']}/sdxl"] = torch2_profile("sdxl", key, gpu, [1, 4, 16], [2, 8], "SDXL at 1024 px. " + torch2_note)
    out["cuda-t4-16gb/sdxl"] = torch2_profile(
        "sdxl", "t4", "T4", [1, 4], [2], "SDXL at 1024 px on a T4. " + torch2_note + " Batch 16 ran out of memory in the source; "
        "batch 8 is not filled (above the T4's memory by the activation rule).",
        gpu_memory_points={4: "not published; the activation rule gives 22.5 GiB, more than this GPU has, yet the source ran batch 4 "
                              "on it (it reports out of memory only at 16): the GPU's memory bounds the peak (the rule overestimates here)"},
        oom=[dict(point="1024px x16", citation=dict(source="diffusers-torch2",
                                                     locator="table 'T4 (batch size: 16)' (heading at line 359), row 'SDXL - txt2img': 'OOM'"))])
    out["cuda-jetson-agx-orin-64gb/sdxl"] = mlperf_single_stream(
        "orin", "mlperf41-orin", 9944364768, "Jetson AGX Orin 64G", "Jetpack 6.0, TensorRT 10.1, CUDA 12.2 (system description)",
        "int8 UNet (the submission's measurements file: weight_data_types int8)", [1, 2, 4, 8],
        "SDXL on a Jetson AGX Orin 64 GB: MLPerf v4.1 SingleStream latency (int8 TensorRT), per request of one image; larger "
        "batches derived linear in batch.")
    out["cuda-l4-24gb/sdxl"] = mlperf_single_stream(
        "l4", "mlperf40-l4", 5279261098, "NVIDIA L4 (Dell PowerEdge XR8620t)", "TensorRT 9.3.0, CUDA 12.2, driver 535.154.05 (system description)",
        "int8 UNet (the submission's measurements file: weight_data_types int8)", [1, 2, 4, 8],
        "SDXL on an L4 24 GB: MLPerf v4.0 SingleStream latency (Dell, int8 TensorRT), per request of one image; larger batches "
        "derived linear in batch.")
    out["cuda-h100-sxm-80gb/sdxl"] = mlperf_offline(
        "h100", "mlperf41-h100x8", 16.3484, "H100-SXM-80GB",
        "SDXL on an H100 SXM 80 GB, batches of 32 images: derived from the MLPerf v4.1 Offline throughput of an 8-GPU DGX H100 "
        "(fp8 TensorRT). Not a per-request latency.")
    out["cuda-h200-sxm-141gb/sdxl"] = mlperf_offline(
        "h200", "mlperf41-h200x8", 17.4186, "H200-SXM-141GB",
        "SDXL on an H200 SXM 141 GB, batches of 32 images: derived from the MLPerf v4.1 Offline throughput of an 8-GPU H200 "
        "system (fp8 TensorRT). Not a per-request latency.")
    out["cuda-rtx-4090-24gb/sd3-medium"] = sd3_onediff_4090()
    out["cuda-a100-sxm4-80gb/sd3-medium"] = sd3_blog(
        "sd3-medium", "a100", "Default", 4.762, 18.765, [1, 2, 4, 8], "SD3-medium with T5, every component on the GPU (the SD3 "
        "blog's default row); batches above 1 derived.", offload=False)
    for model, row, sec, gb in (("sd3-medium", "Offloading", 32.765, 12.0645), ("sd3-medium-no-t5", "Offloading + no T5", 19.110, 4.266)):
        out[f"cuda-a100-sxm4-80gb-offload/{model}"] = sd3_blog(
            model, "a100-offload", row, sec, gb, [1], "SD3-medium " + ("with" if model == "sd3-medium" else "without") + " T5, both "
            "with model CPU offload on the same A100 (the only like-for-like pair the SD3 blog publishes): compare these two, not "
            "either with a profile without offload.", offload=True)
    return out


def main(argv: list[str]) -> int:
    global GENTD26_MEAN
    from profiles import store

    GENTD26_MEAN = store.load_latency("gentd26-basemodel").distribution.mean_s
    for name, data in build().items():
        profile_from_dict(data, name)  # validated before anything is written
        hw, model = name.split("/")
        save_profile(profile_from_dict(data, name), ROOT / hw / f"{model}.json")
        print(f"wrote {hw}/{model}.json")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
