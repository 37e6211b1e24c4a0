"""The profile file: what one model costs on one machine (docs/profiles.md has the field reference).

A profile is a JSON file, one per (hardware, model), with a schema name and version, provenance (device,
driver, CUDA, torch/diffusers/transformers versions, dtype, attention backend, date, suite version) and
the measurements. Loading validates every field with the same typed loader as scenarios, so a malformed
file is rejected with the field, the bad value and what is allowed; a file of another schema or of a
newer version is rejected before its fields are read.

Timings are over `repeats` measured calls after `warmup` unmeasured ones: the median, the quartiles,
and the spread, defined as the relative interquartile range (p75 - p25) / median.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.core.config import from_dict, option, to_dict
from bench.core.errors import ConfigError

SCHEMA = "aigc-edge-bench/profile"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Timing:
    median_s: float = option(help="median seconds of one call", ge=0)
    p25_s: float = option(help="25th percentile", ge=0)
    p75_s: float = option(help="75th percentile", ge=0)
    spread: float = option(help="relative interquartile range (p75 - p25) / median", ge=0)
    repeats: int = option(help="measured calls", ge=1)

    @classmethod
    def of(cls, seconds: list[float] | np.ndarray) -> "Timing":
        s = np.asarray(seconds, dtype=np.float64)
        p25, med, p75 = np.percentile(s, [25.0, 50.0, 75.0])
        return cls(float(med), float(p25), float(p75), float((p75 - p25) / med) if med > 0 else 0.0, int(s.size))


@dataclass(frozen=True)
class TextPoint:
    batch: int = option(help="images per request (prompts encoded: batch, x2 with classifier-free guidance)", ge=1)
    encode: Timing = option(help="all text encoders of the model, one call each")


@dataclass(frozen=True)
class GridPoint:
    resolution: int = option(help="image side in pixels (square images)", ge=8)
    batch: int = option(help="images per request", ge=1)
    step: Timing = option(help="one denoising step: one denoiser call (on 2 x batch latents with guidance)")
    vae_decode: Timing = option(help="decoding the batch's latents to images")
    peak_memory_bytes: int = option(
        help="peak memory while running a request of this size with every component resident: torch's allocator "
        "(max_memory_allocated) on CUDA, the process's peak resident set (VmHWM) on CPU", ge=0
    )
    nvml_peak_used_bytes: int | None = option(
        None, help="NVIDIA only: largest device memory in use (NVML: context and allocator cache included) after each step and decode", ge=0
    )
    energy_j_per_step: float | None = option(
        None, help="NVIDIA only: NVML energy counter difference over back-to-back steps lasting at least 1 s, per step (whole GPU)", ge=0
    )


@dataclass(frozen=True)
class ComponentInfo:
    name: str = option(help="pipeline component (text_encoder, unet, transformer, vae, ...)")
    cls: str = option(help="library:Class that builds it")
    params: int = option(help="parameters", ge=0)
    bytes: int = option(help="bytes of its parameters and buffers in the profiled dtype", ge=0)


@dataclass(frozen=True)
class ModelInfo:
    name: str = option(help="zoo name (profiles.zoo)")
    config_hash: str = option(help="hash of the architecture configuration (profiles.zoo.config_hash)")
    weights: Literal["random", "local"] = option(help="random initialisation from the configuration, or a local weights directory")
    components: tuple[ComponentInfo, ...] = option(help="per component: class, parameters, bytes")

    @property
    def weights_bytes(self) -> int:
        return sum(c.bytes for c in self.components)


@dataclass(frozen=True)
class Hardware:
    id: str = option(help="short identifier used by scenarios: kind, device name and, on CPU, threads")
    kind: Literal["cpu", "cuda"] = option(help="device type")
    name: str = option(help="device name (CPU model or GPU name)")
    memory_bytes: int = option(help="device memory (GPU) or system memory (CPU)", ge=0)
    threads: int = option(help="torch intra-op threads", ge=1)
    driver: str | None = option(None, help="NVIDIA driver version")
    cuda: str | None = option(None, help="CUDA version torch was built with")


@dataclass(frozen=True)
class Provenance:
    date: str = option(help="UTC time of the measurement, ISO 8601")
    suite_version: str = option(help="aigc-edge-bench version")
    python: str = option(help="Python version")
    platform: str = option(help="operating system and machine")
    torch: str = option(help="torch version")
    diffusers: str = option(help="diffusers version")
    transformers: str = option(help="transformers version")
    dtype: Literal["float32", "float16", "bfloat16"] = option(help="parameter and activation dtype")
    attention: str = option(help="attention backend (torch scaled_dot_product_attention and its enabled kernels)")
    command: str = option(help="the command that produced the file")
    git_commit: str | None = option(None, help="commit of the suite, when run from a git checkout")


@dataclass(frozen=True)
class Settings:
    warmup: int = option(help="unmeasured calls before each measurement", ge=0)
    repeats: int = option(help="measured calls per timing", ge=1)
    guidance: bool = option(help="classifier-free guidance: the denoiser runs on 2 x batch latents, 2 x batch prompts are encoded")
    text_tokens: tuple[int, ...] = option(help="sequence length of each text encoder, in component order", ge=1)
    t5_zeros_tokens: int = option(help="SD3 without T5: zero T5 tokens fed to the denoiser in place of T5's output", ge=0)
    out_of_memory: tuple[str, ...] | None = option(None, help="grid points that ran out of device memory and are not in the grid")


@dataclass(frozen=True)
class ColdStart:
    load: Timing = option(help="building the components and loading their weights from local safetensors files, then moving them to the device")
    first_s: float = option(help="the first load (the files fresh from being written; later loads may find them in the page cache)", ge=0)


@dataclass(frozen=True)
class Profile:
    schema: str = option(help=f"always {SCHEMA!r}")
    schema_version: int = option(help=f"format version; this suite reads {SCHEMA_VERSION}", ge=1)
    model: ModelInfo = option(help="the model")
    hardware: Hardware = option(help="the machine")
    provenance: Provenance = option(help="versions, dtype, date")
    settings: Settings = option(help="how it was measured")
    text: tuple[TextPoint, ...] = option(help="text encoding time per batch size")
    grid: tuple[GridPoint, ...] = option(help="per (resolution, batch size): step time, VAE decode time, memory, energy")
    cold_start: ColdStart = option(help="model load time")

    # ---- lookups (what the cost model needs) ---------------------------------------------------------
    @property
    def resolutions(self) -> list[int]:
        return sorted({p.resolution for p in self.grid})

    @property
    def batches(self) -> list[int]:
        return sorted({p.batch for p in self.grid})

    def point(self, resolution: int, batch: int) -> GridPoint:
        for p in self.grid:
            if p.resolution == resolution and p.batch == batch:
                return p
        have = ", ".join(f"{p.resolution}px x{p.batch}" for p in self.grid)
        raise ConfigError("resolution", f"{resolution}px batch {batch}", f"a point measured in the {self.model.name} profile on {self.hardware.id} ({have})")

    def text_s(self, batch: int) -> float:
        for t in self.text:
            if t.batch == batch:
                return t.encode.median_s
        raise ConfigError("batch", batch, f"a batch size measured in the {self.model.name} profile ({[t.batch for t in self.text]})")

    def request_s(self, resolution: int, batch: int, steps: int) -> float:
        """Warm compute time of one request: text encoding + steps x per-step + VAE decode (medians)."""
        p = self.point(resolution, batch)
        return self.text_s(batch) + steps * p.step.median_s + p.vae_decode.median_s

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def profile_from_dict(data: Any, source: str) -> Profile:
    """Validate plain data as a profile; the schema name and version are checked first."""
    if not isinstance(data, dict):
        raise ConfigError("<root>", type(data).__name__, "a JSON object (a profile file)", source=source)
    if data.get("schema") != SCHEMA:
        raise ConfigError("schema", data.get("schema"), f"{SCHEMA!r} (not a profile file)", source=source)
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        allowed = f"{SCHEMA_VERSION}" + (" (the file was written by a newer aigc-edge-bench; upgrade to read it)" if newer else "")
        raise ConfigError("schema_version", version, allowed, source=source)
    profile = from_dict(Profile, data, source=source)
    keys = [(p.resolution, p.batch) for p in profile.grid]
    if len(set(keys)) != len(keys):
        raise ConfigError("grid", keys, "each (resolution, batch) at most once", source=source)
    text_batches = [t.batch for t in profile.text]
    if len(set(text_batches)) != len(text_batches) or not {b for _, b in keys} <= set(text_batches):
        raise ConfigError("text", text_batches, f"one entry per batch size of the grid ({sorted({b for _, b in keys})})", source=source)
    return profile


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("profile", str(path), "an existing profile file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError("profile", str(path), f"valid JSON ({exc})") from None
    return profile_from_dict(data, str(path))


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write atomically (temporary file, then rename): an existing file is never left half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(profile.to_dict(), indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: profiles are shared (servers.profile_dirs)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
