"""The profiler: run a zoo model's components on a device and record what a request costs.

For each measured quantity: `warmup` unmeasured calls, then `repeats` calls each timed on its own,
with the device synchronised before the clock starts and after the call returns (CUDA work is
asynchronous; without the synchronisation one would time the launch, not the work). Inputs have the
shapes the real pipelines use: with classifier-free guidance the denoiser sees 2 x batch latents and
2 x batch prompts are encoded; text sequences are padded to each encoder's length; the VAE decodes
the batch. Inputs are random: the cost of a dense network does not depend on the values.

Memory: on CUDA torch's peak allocation (`max_memory_allocated`, reset per grid point) and NVML's view of
the device (largest `used` seen); on CPU the process's peak resident set (VmHWM, reset per grid point
through /proc/self/clear_refs on Linux). Energy (NVIDIA only): NVML's total-energy counter before and
after the measured steps. Nothing here changes a device setting (clocks, power limits, persistence).

Cold start: each component is written once with `save_pretrained` (safetensors) to a temporary
directory, then loaded back with `from_pretrained` and moved to the device, as a server would do.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from bench.core.errors import ConfigError
from profiles.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    ColdStart,
    ComponentInfo,
    GridPoint,
    Hardware,
    ModelInfo,
    Profile,
    Provenance,
    Settings,
    TextPoint,
    Timing,
)
from profiles.zoo import ModelSpec, build, component_class, config_hash

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ProfileRequest:
    """What to measure. Defaults: see `default_request`."""

    spec: ModelSpec
    device: str
    dtype: str
    resolutions: tuple[int, ...]
    batches: tuple[int, ...]
    repeats: int
    warmup: int
    guidance: bool = True
    weights: Path | None = None
    threads: int | None = None
    cold_repeats: int = 3
    command: str = ""


def default_request(spec: ModelSpec, device: str = "cpu", **overrides: Any) -> ProfileRequest:
    """The issue's defaults: fp16 on CUDA, fp32 on CPU; 512 and 1024 px at batch 1, 2, 4 for real models on
    CUDA, 256 px at batch 1, 2 for real models on CPU, 64 and 128 px at batch 1, 2 for tiny models."""
    if spec.tiny:
        res, batches = (64, 128), (1, 2)
    elif device.startswith("cuda"):
        res, batches = (512, 1024), (1, 2, 4)
    else:
        res, batches = (256,), (1, 2)
    base = dict(spec=spec, device=device, dtype="float16" if device.startswith("cuda") else "float32",
                resolutions=res, batches=batches, repeats=30 if spec.tiny else 20, warmup=2)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ProfileRequest(**base)


def check_request(req: ProfileRequest) -> None:
    if req.dtype not in DTYPES:
        raise ConfigError("--dtype", req.dtype, ", ".join(DTYPES))
    if not re.fullmatch(r"cpu|cuda(:\d+)?", req.device):
        raise ConfigError("--device", req.device, "cpu, cuda or cuda:N")
    if req.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device", req.device, "cpu on this machine (torch sees no CUDA device)")
        index = int(req.device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError("--device", req.device, f"cuda:0..cuda:{torch.cuda.device_count() - 1} (the devices torch sees)")
    for name, values in (("--resolutions", req.resolutions), ("--batch-sizes", req.batches)):
        if not values or len(set(values)) != len(values):
            raise ConfigError(name, list(values), "one or more distinct values")
    if req.device == "cpu" and req.dtype == "float16":
        raise ConfigError("--dtype", req.dtype, "float32 or bfloat16 on CPU (float16 convolutions are not implemented there)")
    step = req.spec.vae_scale_factor * req.spec.patch_size
    largest = req.spec.denoiser.config.get("pos_embed_max_size")  # SD3: a fixed grid of position embeddings
    for r in req.resolutions:
        if r <= 0 or r % step:
            raise ConfigError("--resolutions", r, f"positive multiples of {step} for {req.spec.name} (VAE factor x patch size)")
        if largest is not None and r // step > largest:
            raise ConfigError("--resolutions", r, f"at most {largest * step} px for {req.spec.name} (its position-embedding grid)")
    for b in req.batches:
        if b < 1:
            raise ConfigError("--batch-sizes", b, "integers >= 1")
    if req.repeats < 3:
        raise ConfigError("--repeats", req.repeats, "an integer >= 3 (quartiles need several calls)")
    if req.warmup < 0:
        raise ConfigError("--warmup", req.warmup, "an integer >= 0")
    if req.threads is not None and req.threads < 1:
        raise ConfigError("--threads", req.threads, "an integer >= 1")
    if req.cold_repeats < 1:
        raise ConfigError("cold_repeats", req.cold_repeats, "an integer >= 1")


# ---- the device --------------------------------------------------------------------------------------

class Device:
    """Synchronisation, memory and energy readings of one device; NVML only where it is present."""

    def __init__(self, name: str):
        self.torch_device = torch.device(name)
        self.cuda = self.torch_device.type == "cuda"
        self._nvml = None
        if self.cuda:
            try:
                import pynvml

                pynvml.nvmlInit()
                index = self.torch_device.index if self.torch_device.index is not None else torch.cuda.current_device()
                props = torch.cuda.get_device_properties(index)
                if hasattr(props, "pci_bus_id"):  # the same GPU as torch's even under CUDA_VISIBLE_DEVICES
                    bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
                    handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus)
                else:
                    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._nvml = (pynvml, handle)
            except Exception:  # noqa: BLE001 - no NVML (e.g. not NVIDIA): no NVML readings, said in the profile
                self._nvml = None

    @property
    def has_nvml(self) -> bool:
        return self._nvml is not None

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.torch_device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.torch_device)
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")

    def peak_bytes(self) -> int:
        if self.cuda:
            return int(torch.cuda.max_memory_allocated(self.torch_device))
        return _vm_hwm()

    def nvml_used(self) -> int | None:
        if self._nvml is None:
            return None
        nv, h = self._nvml
        return int(nv.nvmlDeviceGetMemoryInfo(h).used)

    def energy_mj(self) -> int | None:
        if self._nvml is None:
            return None
        nv, h = self._nvml
        try:
            return int(nv.nvmlDeviceGetTotalEnergyConsumption(h))
        except Exception:  # noqa: BLE001 - older GPUs have no energy counter
            return None

    def hardware(self, threads: int) -> Hardware:
        if self.cuda:
            props = torch.cuda.get_device_properties(self.torch_device)
            driver = None
            if self._nvml is not None:
                nv, _ = self._nvml
                driver = _text(nv.nvmlSystemGetDriverVersion())
            return Hardware(id="cuda-" + _slug(props.name), kind="cuda", name=props.name, memory_bytes=int(props.total_memory),
                            threads=threads, driver=driver, cuda=torch.version.cuda)
        name = _cpu_name()
        return Hardware(id=f"cpu-{_slug(name)}-{threads}t", kind="cpu", name=name, memory_bytes=_total_memory(), threads=threads)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _slug(name: str) -> str:
    keep = "".join(ch.lower() if ch.isalnum() else "-" for ch in name.replace("(R)", "").replace("(TM)", ""))
    return "-".join(p for p in keep.split("-") if p and p not in ("processor", "cpu"))


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _total_memory() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _vm_hwm() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource  # not Linux: the running maximum

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


# ---- inputs of each model kind -------------------------------------------------------------------------

def _text_inputs(spec: ModelSpec, comps: dict[str, torch.nn.Module], prompts: int, device: torch.device) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for c in spec.component("text"):
        vocab = int(comps[c.name].config.vocab_size)
        ids = torch.randint(3, vocab, (prompts, spec.text_tokens[c.name]), generator=g).to(device)
        out.append((comps[c.name], ids))
    return out


def _denoiser_call(spec: ModelSpec, comps: dict[str, torch.nn.Module], latents: int, resolution: int,
                   device: torch.device, dtype: torch.dtype) -> Callable[[], Any]:
    """A closure running one denoising step of `latents` latents at `resolution`."""
    g = torch.Generator().manual_seed(1)
    side = resolution // spec.vae_scale_factor
    den = comps[spec.denoiser.name]
    cfg = den.config

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    x = rand(latents, spec.latent_channels, side, side)
    t = torch.full((latents,), 500.0, device=device)
    if spec.kind in ("unet", "unet-xl"):
        ctx = rand(latents, 77, int(cfg.cross_attention_dim))
        kwargs: dict[str, Any] = {}
        if spec.kind == "unet-xl":
            text_dim = int(cfg.projection_class_embeddings_input_dim) - 6 * int(cfg.addition_time_embed_dim)
            kwargs["added_cond_kwargs"] = {"text_embeds": rand(latents, text_dim), "time_ids": rand(latents, 6)}
        return lambda: den(x, t, encoder_hidden_states=ctx, return_dict=False, **kwargs)
    if spec.kind == "sd3":
        tokens = 77 + (spec.text_tokens.get("text_encoder_3", 0) or spec.t5_zeros_tokens)
        ctx = rand(latents, tokens, int(cfg.joint_attention_dim))
        pooled = rand(latents, int(cfg.pooled_projection_dim))
        return lambda: den(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=t, return_dict=False)
    if spec.kind == "pixart":
        ctx = rand(latents, spec.text_tokens["text_encoder"], int(cfg.caption_channels))
        cond = {"resolution": None, "aspect_ratio": None}
        return lambda: den(x, encoder_hidden_states=ctx, timestep=t, added_cond_kwargs=cond, return_dict=False)
    raise ValueError(f"unknown model kind {spec.kind!r}")


def _vae_call(spec: ModelSpec, comps: dict[str, torch.nn.Module], batch: int, resolution: int,
              device: torch.device, dtype: torch.dtype) -> Callable[[], Any]:
    g = torch.Generator().manual_seed(2)
    side = resolution // spec.vae_scale_factor
    z = torch.randn(batch, spec.latent_channels, side, side, generator=g).to(device=device, dtype=dtype)
    vae = comps["vae"]
    return lambda: vae.decode(z, return_dict=False)


# ---- measurement ---------------------------------------------------------------------------------------

def _time(fn: Callable[[], Any], dev: Device, warmup: int, repeats: int, after: Callable[[], None] | None = None) -> list[float]:
    """Seconds of each of `repeats` calls after `warmup` calls; Python's garbage collector paused meanwhile.
    `after` runs after each measured call, outside the timed part."""
    for _ in range(warmup):
        fn()
    dev.sync()
    out = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            dev.sync()
            t0 = time.perf_counter()
            fn()
            dev.sync()
            out.append(time.perf_counter() - t0)
            if after is not None:
                after()
    finally:
        gc.enable()
    return out


def _attention_backend() -> str:
    parts = ["torch.sdpa"]
    if torch.cuda.is_available():
        flags = {"flash": torch.backends.cuda.flash_sdp_enabled(), "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                 "math": torch.backends.cuda.math_sdp_enabled()}
        parts.append("enabled: " + ",".join(k for k, v in flags.items() if v))
    return " ".join(parts)


def _git_commit() -> str | None:
    """The suite's commit, with "-dirty" when the checkout has uncommitted changes (None outside git)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import bench

    out = {"aigc-edge-bench": bench.__version__}  # also when run from a checkout that is not installed
    for dist in ("diffusers", "transformers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[int]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _component_bytes(m: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])


def _load_seconds(spec: ModelSpec, directory: Path, dev: Device, dtype: torch.dtype, repeats: int) -> ColdStart:
    """Time `from_pretrained` of every component from `directory` plus the move to the device."""
    times = []
    for _ in range(repeats):
        gc.collect()
        dev.sync()
        t0 = time.perf_counter()
        loaded = [component_class(c.cls).from_pretrained(directory / c.name, local_files_only=True, torch_dtype=dtype).to(dev.torch_device)
                  for c in spec.components]
        dev.sync()
        times.append(time.perf_counter() - t0)
        del loaded
    return ColdStart(load=Timing.of(times), first_s=times[0])


def _cold_start(spec: ModelSpec, comps: dict[str, torch.nn.Module], weights: Path | None, dev: Device, dtype: torch.dtype,
                repeats: int) -> ColdStart:
    """Load time with nothing else resident: the measured components are written out (random weights) and
    released first, so a large model is never in memory twice. Empties `comps`."""
    with tempfile.TemporaryDirectory(prefix="aigc-profile-") as tmp:
        if weights is None:
            for name, m in comps.items():
                m.save_pretrained(Path(tmp) / name, safe_serialization=True)
        comps.clear()
        gc.collect()
        if dev.cuda:
            torch.cuda.empty_cache()
        return _load_seconds(spec, Path(weights) if weights is not None else Path(tmp), dev, dtype, repeats)


ENERGY_WINDOW_S = 1.0  # NVML's energy counter updates every few tens of ms: integrate over at least this long


def _text_point(spec: ModelSpec, comps: dict[str, torch.nn.Module], dev: Device, b: int, mult: int,
                req: ProfileRequest) -> TextPoint:
    calls = _text_inputs(spec, comps, mult * b, dev.torch_device)
    times = _time(lambda: [enc(ids) for enc, ids in calls], dev, req.warmup, req.repeats)
    return TextPoint(batch=b, encode=Timing.of(times))


def _grid_point(spec: ModelSpec, comps: dict[str, torch.nn.Module], dev: Device, dtype: torch.dtype, r: int, b: int,
                mult: int, req: ProfileRequest) -> GridPoint:
    step = _denoiser_call(spec, comps, mult * b, r, dev.torch_device, dtype)
    vae = _vae_call(spec, comps, b, r, dev.torch_device, dtype)
    gc.collect()
    dev.reset_peak()
    seen: list[int] = []
    sample = (lambda: seen.append(dev.nvml_used())) if dev.has_nvml else None
    step_times = _time(step, dev, req.warmup, req.repeats, after=sample)
    vae_times = _time(vae, dev, req.warmup, req.repeats, after=sample)
    peak = dev.peak_bytes()
    return GridPoint(
        resolution=r, batch=b, step=Timing.of(step_times), vae_decode=Timing.of(vae_times), peak_memory_bytes=peak,
        nvml_peak_used_bytes=max(seen) if seen else None, energy_j_per_step=_energy_per_step(step, dev),
    )


def _energy_per_step(step: Callable[[], Any], dev: Device) -> float | None:
    """NVML energy per step over back-to-back steps lasting at least ENERGY_WINDOW_S (None without NVML)."""
    e0 = dev.energy_mj()
    if e0 is None:
        return None
    dev.sync()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < ENERGY_WINDOW_S:
        step()
        n += 1
    dev.sync()
    e1 = dev.energy_mj()
    return (e1 - e0) / 1000.0 / n if e1 is not None else None


def grid_size(req: ProfileRequest) -> int:
    """Progress stages of a run: building, text encoding per batch size, each grid point, cold start."""
    return 2 + len(req.batches) + len(req.resolutions) * len(req.batches)


def profile_model(req: ProfileRequest, progress: Callable[[str], None] | None = None) -> Profile:
    """Measure `req` and return the profile (not yet written; see `profiles.schema.save_profile`)."""
    check_request(req)
    commit = _git_commit()  # of the code that runs, read before measuring
    spec, dtype = req.spec, DTYPES[req.dtype]
    dev = Device(req.device)
    say = progress or (lambda _msg: None)  # called as each stage starts
    with _threads(req.threads) as threads, torch.inference_mode():
        torch.manual_seed(0)
        say("building")
        comps = build(spec, dev.torch_device, dtype, weights=req.weights)  # initialised on the device: fast on a GPU
        model = ModelInfo(
            name=spec.name, config_hash=config_hash(spec), weights="local" if req.weights else "random",
            components=tuple(ComponentInfo(c.name, c.cls, sum(p.numel() for p in comps[c.name].parameters()), _component_bytes(comps[c.name]))
                             for c in spec.components),
        )
        mult = 2 if req.guidance else 1
        text = []
        for b in req.batches:
            say(f"text encoders, batch {b}")
            text.append(_text_point(spec, comps, dev, b, mult, req))
        grid: list[GridPoint] = []
        out_of_memory: list[str] = []
        for r in sorted(req.resolutions):
            for b in sorted(req.batches):
                say(f"{r}px batch {b}")
                try:
                    grid.append(_grid_point(spec, comps, dev, dtype, r, b, mult, req))
                except torch.cuda.OutOfMemoryError:  # a larger point will not fit either: keep what fits, say what did not
                    out_of_memory.append(f"{r}px x{b}")
                    gc.collect()
                    if dev.cuda:
                        torch.cuda.empty_cache()
        if not grid:
            raise ConfigError("--resolutions", list(req.resolutions), f"at least one point that fits in memory ({', '.join(out_of_memory)} did not)")
        say("cold start")  # the timing closures (holding components) ended with their helpers
        cold = _cold_start(spec, comps, req.weights, dev, dtype, req.cold_repeats)
    versions = _versions()
    provenance = Provenance(
        date=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        suite_version=versions["aigc-edge-bench"], git_commit=commit,
        python=platform.python_version(), platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        torch=torch.__version__, diffusers=versions["diffusers"], transformers=versions["transformers"],
        dtype=req.dtype, attention=_attention_backend(), command=req.command or "profiles.profiler.profile_model",
    )
    settings = Settings(warmup=req.warmup, repeats=req.repeats, guidance=req.guidance, out_of_memory=tuple(out_of_memory) or None,
                        text_tokens=tuple(spec.text_tokens[c.name] for c in spec.component("text")),
                        t5_zeros_tokens=spec.t5_zeros_tokens)
    return Profile(schema=SCHEMA, schema_version=SCHEMA_VERSION, model=model, hardware=dev.hardware(threads),
                   provenance=provenance, settings=settings, text=tuple(text), grid=tuple(grid), cold_start=cold)
