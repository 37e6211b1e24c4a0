"""The profile file: what one model costs on one machine (docs/profiles.md has the field reference).

A profile is a JSON file, one per (hardware, model). Its `source` says where the numbers come from:

- `measured` (`Profile`): this suite's profiler ran the model; provenance (device, driver, CUDA,
  torch/diffusers/transformers versions, dtype, attention backend, date, suite version) and the
  measurements. Timings are over `repeats` measured calls after `warmup` unmeasured ones: the median,
  the quartiles, and the spread, defined as the relative interquartile range (p75 - p25) / median.
  Files of schema version 1 have no `source` field and are measured.
- `published` (`PublishedProfile`): figures that others published. Every number is a `Figure` that
  carries how it was obtained: `published` (a number printed in a cited document, at stated conditions,
  converted by a stated rule such as seconds per step = 1 / (it/s)), `derived` (filled by a stated rule
  from other figures or parameters: a batch or resolution nobody published, a part no source publishes)
  or `included_in` another part (a time the source folds into another one: absent, which is not zero).
  The loader recomputes every number from its rule, so a figure cannot disagree with its inputs.

Loading validates every field with the same typed loader as scenarios, so a malformed file is rejected
with the field, the bad value and what is allowed; a file of another schema or of a newer version is
rejected before its fields are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.core.config import from_dict, option, to_dict
from bench.core.errors import MISSING, ConfigError
from bench.core.io import read_text, write_json_atomic

SCHEMA = "aigc-edge-bench/profile"
SCHEMA_VERSION = 2  # 2 added `source` (measured or published); version 1 files are measured profiles
SOURCES = ("measured", "published")


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
class PointCosts:
    """What the cost model reads at one (resolution, batch) point, whatever the profile's source."""

    text_s: float  # text encoding of the request (0 where a published profile has it included in another part)
    step_s: float  # one denoising step
    vae_s: float  # VAE decode of the batch (published profiles: may also hold the other non-step time, see its rule)
    peak_bytes: float  # peak memory with the model resident
    energy_j_per_step: float | None  # joules per step, where the profile has it


class _Grid:
    """The grid lookups both profile kinds share (their `grid` holds points with `resolution` and `batch`)."""

    grid: tuple[Any, ...]

    @property
    def resolutions(self) -> list[int]:
        return sorted({p.resolution for p in self.grid})

    @property
    def batches(self) -> list[int]:
        return sorted({p.batch for p in self.grid})

    def has_point(self, resolution: int, batch: int) -> bool:
        return any(p.resolution == resolution and p.batch == batch for p in self.grid)


def _grid_point(profile: _Grid, resolution: int, batch: int, allowed: str) -> Any:
    for p in profile.grid:
        if p.resolution == resolution and p.batch == batch:
            return p
    have = ", ".join(f"{p.resolution}px x{p.batch}" for p in profile.grid)
    raise ConfigError("resolution", f"{resolution}px batch {batch}", f"{allowed} ({have})")


@dataclass(frozen=True)
class Profile(_Grid):
    """A measured profile (`source = "measured"`)."""

    schema: str = option(help=f"always {SCHEMA!r}")
    schema_version: int = option(help=f"format version; this suite reads up to {SCHEMA_VERSION}", ge=1)
    model: ModelInfo = option(help="the model")
    hardware: Hardware = option(help="the machine")
    provenance: Provenance = option(help="versions, dtype, date")
    settings: Settings = option(help="how it was measured")
    text: tuple[TextPoint, ...] = option(help="text encoding time per batch size")
    grid: tuple[GridPoint, ...] = option(help="per (resolution, batch size): step time, VAE decode time, memory, energy")
    cold_start: ColdStart = option(help="model load time")
    source: Literal["measured"] = option("measured", help="measured by this suite's profiler (version 1 files: always)")

    # ---- lookups (what the cost model needs) ---------------------------------------------------------
    def point(self, resolution: int, batch: int) -> GridPoint:
        return _grid_point(self, resolution, batch, f"a point measured in the {self.model.name} profile on {self.hardware.id}")

    def text_s(self, batch: int) -> float:
        for t in self.text:
            if t.batch == batch:
                return t.encode.median_s
        raise ConfigError("batch", batch, f"a batch size measured in the {self.model.name} profile ({[t.batch for t in self.text]})")

    def request_s(self, resolution: int, batch: int, steps: int) -> float:
        """Warm compute time of one request: text encoding + steps x per-step + VAE decode (medians)."""
        p = self.point(resolution, batch)
        return self.text_s(batch) + steps * p.step.median_s + p.vae_decode.median_s

    def costs_at(self, resolution: int, batch: int) -> PointCosts:
        p = self.point(resolution, batch)
        return PointCosts(self.text_s(batch), p.step.median_s, p.vae_decode.median_s, float(p.peak_memory_bytes), p.energy_j_per_step)

    @property
    def weights_bytes(self) -> int:
        return self.model.weights_bytes

    @property
    def load_s(self) -> float:
        """Cold start: the median measured load."""
        return self.cold_start.load.median_s

    @property
    def load_distribution(self) -> str | None:
        """Measured loads are deterministic (the median)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


# ==== published profiles ==============================================================================

BASES = ("published", "derived", "included_in")
# How a figure's value follows from the numbers printed in the source (`published`), from other figures
# (`inputs`) or from the rule's parameters. The loader recomputes every value with these formulas.
RULES = {
    # conversions of printed numbers x (a figure printed at the profile point's own conditions is `published`)
    "scale": "x[0] * factor (a unit conversion)",
    "split": "x[0] * factor / steps (a whole-request time over its N steps; the other parts are then included in the step)",
    "reciprocal": "factor / x[0] (seconds per step = 1 / (it/s); seconds per request from a throughput)",
    "e2e_minus_steps": "x[0] - steps / x[1] (a request's end-to-end time minus its steps at x[1] it/s: the non-step time)",
    "step_equivalents": "x[0] * x[1] - steps (the non-step time of a request, in steps: end-to-end time x it/s - steps)",
    # derivations from other figures v (always `derived`)
    "batch_linear": "v[0] * to_batch / from_batch (linear in batch above the largest published batch)",
    "batch_interpolate": "v[0] + (v[1] - v[0]) * (to_batch - batch_lo) / (batch_hi - batch_lo) (linear between two published batches)",
    "pixels": "v[0] * (to_resolution / from_resolution)^2 (proportional to pixel count)",
    "mean": "mean of v",
    "product": "factor * v[0] * v[1] * ...",
    "difference": "v[0] - v[1]",
    "affine": "v[0] + factor * v[1]",
    "copy": "v[0] (the same quantity published at other conditions; the rule's text says why it carries over)",
    # from the rule's own parameters (always `derived`)
    "weights": "sum of params[i] * bytes_per_param[i] (the zoo's pinned parameter counts at the stated precision)",
    "distribution_mean": "the mean of the named load-latency distribution (profiles/data/load-latency/<name>.json)",
    "gpu_memory": "the GPU's memory (hardware.memory_bytes): an upper bound for a point that ran on it",
}
CONVERSIONS = ("scale", "split", "reciprocal", "e2e_minus_steps", "step_equivalents")
_FROM_INPUTS = ("batch_linear", "batch_interpolate", "pixels", "mean", "product", "difference", "affine", "copy")
_N_PUBLISHED = {"scale": 1, "split": 1, "reciprocal": 1, "e2e_minus_steps": 2, "step_equivalents": 2}
_N_INPUTS = {"batch_linear": 1, "batch_interpolate": 2, "pixels": 1, "difference": 2, "affine": 2, "copy": 1}
_RULE_FIELDS = {  # the rule parameters each kind needs
    "scale": ("factor",), "split": ("factor", "steps"), "reciprocal": ("factor",), "e2e_minus_steps": ("steps",),
    "step_equivalents": ("steps",), "batch_linear": ("from_batch", "to_batch"), "batch_interpolate": ("batch_lo", "batch_hi", "to_batch"),
    "pixels": ("from_resolution", "to_resolution"), "mean": (), "product": ("factor",), "difference": (), "affine": ("factor",), "copy": (),
    "weights": ("params", "bytes_per_param"), "distribution_mean": ("distribution",), "gpu_memory": (),
}


@dataclass(frozen=True)
class SourceDoc:
    key: str = option(help="short name the citations use")
    title: str = option(help="what the document is")
    repository: str | None = option(None, help="owner/name of the GitHub repository that holds it")
    path: str | None = option(None, help="path of the file in that repository")
    commit: str | None = option(None, help="the commit read (40 hex digits)")
    url: str | None = option(None, help="address of a document outside a repository")
    licence: str | None = option(None, help="the document's licence, where stated")
    note: str | None = option(None, help="what a reader should know (e.g. how MLCommons results may be quoted)")

    def __post_init__(self) -> None:
        if not (self.repository and self.path and self.commit) and not self.url:
            raise ConfigError("repository", self.repository, "repository, path and commit, or a url (where the document can be read)")
        if self.commit is not None and (len(self.commit) != 40 or any(c not in "0123456789abcdef" for c in self.commit)):
            raise ConfigError("commit", self.commit, "a full commit id (40 lower-case hex digits)")


@dataclass(frozen=True)
class Citation:
    source: str = option(help="key of the document in the profile's `sources`")
    locator: str = option(help="where in it: table, row and column, figure, section or line")


@dataclass(frozen=True)
class Conditions:
    gpu: str = option(help="the GPU as the source names it (variant included where it says)")
    precision: str = option(help="weights and activations (fp16, int8 UNet, ...)")
    software: str = option(help="stack: framework and versions, attention backend, compiler")
    includes: str = option(help="what the number covers (denoising steps only; text encoding + steps + VAE decode; ...)")
    resolution: int | None = option(None, help="image side in px (absent: not a per-resolution quantity)", ge=8)
    steps: int | None = option(None, help="denoising steps of the run (absent: not a per-request time)", ge=1)
    batch: int | None = option(None, help="images per request (absent: not a per-batch quantity)", ge=1)
    note: str | None = option(None, help="anything else that shapes the number (clocks, power mode, defaults read from code)")


@dataclass(frozen=True)
class Rule:
    kind: str = option(help="one of " + ", ".join(RULES))
    text: str = option(help="the rule in words, with its reason")
    factor: float | None = option(None, help="scale, split, reciprocal, product, affine: the factor")
    steps: int | None = option(None, help="split, e2e_minus_steps, step_equivalents: the steps of the run", ge=1)
    from_batch: int | None = option(None, help="batch_linear: the published batch", ge=1)
    to_batch: int | None = option(None, help="batch_linear, batch_interpolate: the batch filled", ge=1)
    batch_lo: int | None = option(None, help="batch_interpolate: the published batch below", ge=1)
    batch_hi: int | None = option(None, help="batch_interpolate: the published batch above", ge=1)
    from_resolution: int | None = option(None, help="pixels: the published resolution", ge=8)
    to_resolution: int | None = option(None, help="pixels: the resolution filled", ge=8)
    params: tuple[int, ...] | None = option(None, help="weights: parameters per component (profiles.zoo.PINNED_PARAMS)", ge=0)
    bytes_per_param: tuple[float, ...] | None = option(None, help="weights: bytes per parameter of each component", gt=0)
    distribution: str | None = option(None, help="distribution_mean: name of the load-latency distribution")

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ConfigError("kind", self.kind, "one of " + ", ".join(RULES))
        for name in _RULE_FIELDS[self.kind]:
            if getattr(self, name) is None:
                raise ConfigError(name, None, f"a value (rule {self.kind}: {RULES[self.kind]})")
        if self.kind == "batch_linear" and not self.to_batch > self.from_batch:
            raise ConfigError("to_batch", self.to_batch, f"a batch above the published one ({self.from_batch}): linear in batch only above it")
        if self.kind == "batch_interpolate" and not self.batch_lo < self.to_batch < self.batch_hi:
            raise ConfigError("to_batch", self.to_batch, f"a batch strictly between batch_lo ({self.batch_lo}) and batch_hi ({self.batch_hi})")
        if self.kind == "weights" and len(self.params) != len(self.bytes_per_param):
            raise ConfigError("bytes_per_param", list(self.bytes_per_param), f"one value per entry of params ({len(self.params)})")


@dataclass(frozen=True)
class Figure:
    """One number of a published profile and how it was obtained (module docstring)."""

    basis: Literal["published", "derived", "included_in"] = option(
        help="published: printed in a cited document at these conditions (converted by `rule`); derived: filled by `rule` "
        "from other figures or parameters; included_in: the source folds it into another part (absent, not zero)"
    )
    value: float | None = option(None, help="the number in the field's unit (seconds, bytes, joules); absent when included_in", ge=0)
    published: tuple[float, ...] | None = option(None, help="the numbers as printed in the source, in `unit`")
    unit: str | None = option(None, help="unit of the printed numbers (it/s, s, ns, GiB, MB, samples/s, ...)")
    citation: Citation | None = option(None, help="where the printed numbers are")
    conditions: Conditions | None = option(None, help="under which conditions they were obtained")
    rule: Rule | None = option(None, help="how `value` follows from the printed numbers, the inputs or the rule's parameters")
    inputs: tuple[Figure, ...] | None = option(None, help="derived: the figures it comes from (each with its own citation or rule)")
    included_in: str | None = option(None, help="included_in: the part that holds it (step, vae_decode, ...)")

    @property
    def median_s(self) -> float:
        """The value as a time (0 where included in another part), for code written for measured timings."""
        return 0.0 if self.value is None else self.value

    @property
    def spread(self) -> float:
        """Sources publish no spread: not a number."""
        return float("nan")


@dataclass(frozen=True)
class PublishedModel:
    name: str = option(help="zoo name (profiles.zoo): the architecture the figures are for")
    checkpoint: str = option(help="what the sources ran (a checkpoint of this architecture)")
    precision: str = option(help="precision of the weights in the sources' runs (fp16, int8 UNet, ...)")
    weights_bytes: Figure = option(help="bytes of the weights resident on the GPU")


@dataclass(frozen=True)
class PublishedHardware:
    id: str = option(help="identifier used by scenarios; names the variant (memory, form factor)")
    kind: Literal["cuda"] = option(help="device type")
    name: str = option(help="the GPU")
    variant: str = option(help="memory and form factor of the GPU the figures are for")
    variant_assumed: bool = option(help="true when the sources do not say which variant ran")
    memory_bytes: Figure = option(help="the GPU's memory")
    variant_note: str | None = option(None, help="why this variant (required when assumed)")

    def __post_init__(self) -> None:
        if self.variant_assumed and not self.variant_note:
            raise ConfigError("variant_note", None, "the reason for the assumed variant (required with variant_assumed = true)")


@dataclass(frozen=True)
class PublishedText:
    batch: int = option(help="images per request", ge=1)
    encode: Figure = option(help="all text encoders of the model (or included_in another part)")


@dataclass(frozen=True)
class PublishedPoint:
    resolution: int = option(help="image side in pixels (square images)", ge=8)
    batch: int = option(help="images per request", ge=1)
    step: Figure = option(help="one denoising step of the batch (seconds)")
    vae_decode: Figure = option(help="decoding the batch (seconds), or included_in another part")
    peak_memory_bytes: Figure = option(help="peak memory of a request of this size with the model resident")
    energy_j_per_step: Figure | None = option(None, help="joules per step, where a source publishes energy")


@dataclass(frozen=True)
class PublishedColdStart:
    load: Figure = option(help="loading the model onto the GPU (seconds): published, or derived (e.g. the mean of a load-latency distribution)")


@dataclass(frozen=True)
class OutOfMemory:
    point: str = option(help="resolution and batch that ran out of memory in the source, e.g. '1024px x16'")
    citation: Citation = option(help="where the source says so")


@dataclass(frozen=True)
class Compilation:
    date: str = option(help="when the figures were compiled into this file (ISO 8601 date)")
    suite_version: str = option(help="aigc-edge-bench version")
    note: str | None = option(None, help="what this profile stands for and its main caveats")

    @property
    def dtype(self) -> str:  # noqa: D401 - parity with measured provenance for listings
        return "published"


@dataclass(frozen=True)
class PublishedProfile(_Grid):
    """A profile of published figures (`source = "published"`); see the module docstring."""

    schema: str = option(help=f"always {SCHEMA!r}")
    schema_version: int = option(help=f"format version; published profiles need {SCHEMA_VERSION}", ge=2)
    source: Literal["published"] = option(help="published figures (each with its citation or rule)")
    model: PublishedModel = option(help="the architecture and what the sources ran")
    hardware: PublishedHardware = option(help="the GPU and its variant")
    provenance: Compilation = option(help="when and by what this file was compiled")
    sources: tuple[SourceDoc, ...] = option(help="the documents cited, each with a key")
    text: tuple[PublishedText, ...] = option(help="text encoding per batch size")
    grid: tuple[PublishedPoint, ...] = option(help="per (resolution, batch): step, VAE decode, peak memory")
    cold_start: PublishedColdStart = option(help="model load time")
    out_of_memory: tuple[OutOfMemory, ...] | None = option(None, help="points a source reports as out of memory on this GPU")

    def point(self, resolution: int, batch: int) -> PublishedPoint:
        return _grid_point(self, resolution, batch, f"a point of the published {self.model.name} profile on {self.hardware.id}")

    def text_figure(self, batch: int) -> Figure:
        for t in self.text:
            if t.batch == batch:
                return t.encode
        raise ConfigError("batch", batch, f"a batch size of the published {self.model.name} profile ({[t.batch for t in self.text]})")

    def text_s(self, batch: int) -> float:
        return self.text_figure(batch).median_s

    def request_s(self, resolution: int, batch: int, steps: int) -> float:
        """Warm compute time of one request: text encoding + steps x per-step + VAE decode (parts included in
        another one count there only)."""
        p = self.point(resolution, batch)
        return self.text_s(batch) + steps * p.step.median_s + p.vae_decode.median_s

    def costs_at(self, resolution: int, batch: int) -> PointCosts:
        p = self.point(resolution, batch)
        energy = p.energy_j_per_step.value if p.energy_j_per_step is not None else None
        return PointCosts(self.text_s(batch), p.step.median_s, p.vae_decode.median_s, float(p.peak_memory_bytes.value), energy)

    @property
    def weights_bytes(self) -> float:
        return float(self.model.weights_bytes.value)

    @property
    def load_s(self) -> float:
        """Cold start: the load time's value (for a distribution, its mean: what a scheduler expects)."""
        return float(self.cold_start.load.value)

    @property
    def load_distribution(self) -> str | None:
        """The load-latency distribution cold starts draw from, when the load time is one's mean."""
        rule = self.cold_start.load.rule
        return rule.distribution if rule is not None and rule.kind == "distribution_mean" else None

    def figures(self) -> list[tuple[str, Figure]]:
        """Every top-level figure with its dotted field name (inputs are reached through them)."""
        out = [("model.weights_bytes", self.model.weights_bytes), ("hardware.memory_bytes", self.hardware.memory_bytes)]
        out += [(f"text[{i}].encode", t.encode) for i, t in enumerate(self.text)]
        for i, g in enumerate(self.grid):
            out += [(f"grid[{i}].{name}", f) for name in ("step", "vae_decode", "peak_memory_bytes", "energy_j_per_step")
                    if (f := getattr(g, name)) is not None]
        out.append(("cold_start.load", self.cold_start.load))
        return out

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


# ---- checking a published profile ----------------------------------------------------------------------

_PARTS = ("step", "vae_decode", "text")  # what `included_in` may name: another time of the same request


def _check_figure(f: Figure, path: str, keys: set[str], memory: float | None, source: str | None) -> None:
    """Every rule of the module docstring: what each basis needs, and the value its rule gives."""

    def fail(field: str, value: Any, allowed: str) -> None:
        raise ConfigError(f"{path}.{field}", value, allowed, source=source)

    if f.basis == "included_in":
        if f.included_in not in _PARTS:
            fail("included_in", f.included_in if f.included_in is not None else MISSING, "the part that holds it: " + ", ".join(_PARTS))
        for name in ("value", "published", "unit", "citation", "conditions", "rule", "inputs"):
            if getattr(f, name) is not None:
                fail(name, getattr(f, name), "to be absent: an included part has no number of its own")
        return
    if f.included_in is not None:
        fail("included_in", f.included_in, f"to be absent with basis {f.basis!r}")
    if f.value is None:
        fail("value", MISSING, "a number (absent only with basis 'included_in')")
    if f.rule is None:
        why = "a figure derived without its rule is not allowed" if f.basis == "derived" else "how the value follows from the printed numbers"
        fail("rule", MISSING, f"a rule ({why}): one of " + ", ".join(RULES))
    kind = f.rule.kind
    if f.basis == "published" and kind not in CONVERSIONS:
        fail("rule.kind", kind, f"a conversion of the printed numbers ({', '.join(CONVERSIONS)}) for a published figure; other rules make it 'derived'")
    if kind in CONVERSIONS:  # needs printed numbers with their citation and conditions
        if f.published is None:
            fail("published", MISSING, f"the numbers as printed ({_N_PUBLISHED[kind]} for rule {kind})")
        if len(f.published) != _N_PUBLISHED[kind]:
            fail("published", list(f.published), f"{_N_PUBLISHED[kind]} numbers for rule {kind}")
        if f.unit is None:
            fail("unit", MISSING, "the unit of the printed numbers")
        if f.citation is None:
            fail("citation", MISSING, "a citation (source key and locator): every published number needs one")
        if f.citation.source not in keys:
            fail("citation.source", f.citation.source, "a key of `sources`: " + ", ".join(sorted(keys)))
        if f.conditions is None:
            fail("conditions", MISSING, "the conditions of the printed numbers (GPU, precision, software, what is included)")
        if f.inputs is not None:
            fail("inputs", "...", f"to be absent for rule {kind} (it converts printed numbers)")
    else:
        for name in ("published", "unit", "citation", "conditions"):
            if getattr(f, name) is not None:
                fail(name, getattr(f, name), f"to be absent for rule {kind} (the cited numbers are in its inputs)")
        if kind in _FROM_INPUTS:
            need = _N_INPUTS.get(kind)
            if f.inputs is None or (need is not None and len(f.inputs) != need):
                fail("inputs", MISSING if f.inputs is None else len(f.inputs), f"{need or 'one or more'} figures for rule {kind}")
            for i, g in enumerate(f.inputs):
                if g.basis == "included_in":
                    fail(f"inputs[{i}].basis", g.basis, "a figure with a value")
                _check_figure(g, f"{path}.inputs[{i}]", keys, memory, source)
        elif f.inputs is not None:
            fail("inputs", "...", f"to be absent for rule {kind}")
    expected = rule_value(f, memory)
    if expected is not None and not _close(f.value, expected):
        fail("value", f.value, f"{expected!r}, what its rule gives ({kind}: {RULES[kind]})")


def rule_value(f: Figure, memory: float | None = None) -> float | None:
    """The value a figure's rule gives (None where the loader cannot compute it here: distribution_mean)."""
    r, x = f.rule, f.published
    v = [g.value for g in f.inputs] if f.inputs else []
    k = r.kind
    if k == "scale":
        return x[0] * r.factor
    if k == "split":
        return x[0] * r.factor / r.steps
    if k == "reciprocal":
        return r.factor / x[0]
    if k == "e2e_minus_steps":
        return x[0] - r.steps / x[1]
    if k == "step_equivalents":
        return x[0] * x[1] - r.steps
    if k == "batch_linear":
        return v[0] * r.to_batch / r.from_batch
    if k == "batch_interpolate":
        return v[0] + (v[1] - v[0]) * (r.to_batch - r.batch_lo) / (r.batch_hi - r.batch_lo)
    if k == "pixels":
        return v[0] * (r.to_resolution / r.from_resolution) ** 2
    if k == "mean":
        return float(np.mean(v))
    if k == "product":
        return r.factor * float(np.prod(v))
    if k == "difference":
        return v[0] - v[1]
    if k == "affine":
        return v[0] + r.factor * v[1]
    if k == "copy":
        return v[0]
    if k == "weights":
        return float(sum(p * b for p, b in zip(r.params, r.bytes_per_param)))
    if k == "gpu_memory":
        return memory
    return None  # distribution_mean: checked where distributions are found (profiles.store)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b)) + 1e-15  # the same formulas give the same bits; JSON round-trips floats


def _check_published(profile: PublishedProfile, source: str | None) -> None:
    keys = [s.key for s in profile.sources]
    if len(set(keys)) != len(keys):
        raise ConfigError("sources", keys, "each key at most once", source=source)
    memory_figure = profile.hardware.memory_bytes
    if memory_figure.rule is not None and memory_figure.rule.kind == "gpu_memory":
        raise ConfigError("hardware.memory_bytes.rule.kind", "gpu_memory", "a rule that does not refer to itself", source=source)
    _check_figure(memory_figure, "hardware.memory_bytes", set(keys), None, source)
    memory = memory_figure.value
    for where, figure in profile.figures():
        if where != "hardware.memory_bytes":
            _check_figure(figure, where, set(keys), memory, source)
    for i, g in enumerate(profile.grid):  # a published figure was printed at this very point; anything else is derived
        for name in ("step", "vae_decode", "peak_memory_bytes", "energy_j_per_step"):
            f = getattr(g, name)
            if f is None or f.basis != "published":
                continue
            for field, want in (("resolution", g.resolution), ("batch", g.batch)):
                have = getattr(f.conditions, field)
                if have is not None and have != want:
                    raise ConfigError(f"grid[{i}].{name}.conditions.{field}", have,
                                      f"{want}, the point's {field} (a figure printed at another {field} is 'derived', by a rule)", source=source)
    for i, t in enumerate(profile.text):
        f = t.encode
        if f.basis == "published" and f.conditions.batch is not None and f.conditions.batch != t.batch:
            raise ConfigError(f"text[{i}].encode.conditions.batch", f.conditions.batch,
                              f"{t.batch}, the entry's batch (a figure printed at another batch is 'derived', by a rule)", source=source)
    for i, t in enumerate(profile.text):  # an included part names a part of the same request that holds a number
        target = t.encode.included_in
        if target is not None:
            if target == "text":
                raise ConfigError(f"text[{i}].encode.included_in", target, "step or vae_decode (a time of the same request)", source=source)
            for g in profile.grid:
                if g.batch == t.batch and getattr(g, target).basis == "included_in":
                    raise ConfigError(f"text[{i}].encode.included_in", target, f"a part with a number of its own ({g.resolution}px x{g.batch} has none)", source=source)
    for i, g in enumerate(profile.grid):
        target = g.vae_decode.included_in
        if target is not None:
            if target not in ("step", "text"):
                raise ConfigError(f"grid[{i}].vae_decode.included_in", target, "step or text (a time of the same request)", source=source)
            if target == "text" and profile.text_figure(g.batch).basis == "included_in":
                raise ConfigError(f"grid[{i}].vae_decode.included_in", target, "a part with a number of its own (text encoding is included elsewhere)", source=source)
    for name in ("model.weights_bytes", "hardware.memory_bytes", "cold_start.load"):
        figure = dict(profile.figures())[name]
        if figure.basis == "included_in":
            raise ConfigError(f"{name}.basis", "included_in", "'published' or 'derived' (a number of its own)", source=source)
    for i, g in enumerate(profile.grid):
        if g.step.basis == "included_in" or g.peak_memory_bytes.basis == "included_in":
            bad = "step" if g.step.basis == "included_in" else "peak_memory_bytes"
            raise ConfigError(f"grid[{i}].{bad}.basis", "included_in", "'published' or 'derived' (a number of its own)", source=source)
    if profile.load_distribution is None and profile.cold_start.load.rule is not None and profile.cold_start.load.rule.kind == "distribution_mean":
        raise ConfigError("cold_start.load.rule.distribution", None, "a load-latency distribution name", source=source)


# ---- loading and saving --------------------------------------------------------------------------------

AnyProfile = Profile | PublishedProfile


def profile_from_dict(data: Any, source: str) -> AnyProfile:
    """Validate plain data as a profile; the schema name and version are checked first, then the source kind."""
    if not isinstance(data, dict):
        raise ConfigError("<root>", type(data).__name__, "a JSON object (a profile file)", source=source)
    if data.get("schema") != SCHEMA:
        raise ConfigError("schema", data.get("schema"), f"{SCHEMA!r} (not a profile file)", source=source)
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        allowed = f"1 to {SCHEMA_VERSION}" + (" (the file was written by a newer aigc-edge-bench; upgrade to read it)" if newer else "")
        raise ConfigError("schema_version", version, allowed, source=source)
    kind = data.get("source", "measured")
    if kind not in SOURCES:
        raise ConfigError("source", kind, " or ".join(repr(s) for s in SOURCES), source=source)
    if kind == "published":
        if version < 2:
            raise ConfigError("schema_version", version, "2 or later for a published profile (version 1 has measured profiles only)", source=source)
        profile: AnyProfile = from_dict(PublishedProfile, data, source=source)
    else:
        profile = from_dict(Profile, data, source=source)
    keys = [(p.resolution, p.batch) for p in profile.grid]
    if len(set(keys)) != len(keys):
        raise ConfigError("grid", keys, "each (resolution, batch) at most once", source=source)
    text_batches = [t.batch for t in profile.text]
    if len(set(text_batches)) != len(text_batches) or not {b for _, b in keys} <= set(text_batches):
        raise ConfigError("text", text_batches, f"one entry per batch size of the grid ({sorted({b for _, b in keys})})", source=source)
    if isinstance(profile, PublishedProfile):
        _check_published(profile, source)
    return profile


def load_profile(path: str | Path) -> AnyProfile:
    path = Path(path)
    text = read_text(path, "profile")  # one line for a missing, huge or binary file
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("profile", str(path), f"valid JSON ({exc})") from None
    return profile_from_dict(data, str(path))


def save_profile(profile: AnyProfile, path: str | Path) -> Path:
    """Write atomically (temporary file, then rename): an existing file is never left half-written."""
    return _write_json(profile.to_dict(), path)


def _write_json(data: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, data)  # usual permissions: profiles are shared (servers.profile_dirs)


# ==== load-latency distributions (profiles/data/load-latency/<name>.json) ================================

LOAD_LATENCY_SCHEMA = "aigc-edge-bench/load-latency"
LOAD_LATENCY_VERSION = 1


@dataclass(frozen=True)
class LatencySample:
    file: str = option(help="the file read (inside the cited archive)")
    archive_sha256: str = option(help="SHA-256 of the archive the fit read (the cited file at the cited commit)")
    column: str = option(help="the column of latencies")
    unit: str = option(help="unit of that column")
    rows: int = option(help="rows of the file", ge=1)
    used: int = option(help="rows the fit used", ge=1)
    filter: str = option(help="which rows the fit used")
    note: str = option(help="what one row is (e.g. a per-minute monitoring sample of one container)")


@dataclass(frozen=True)
class LognormalMixture:
    """pdf(x) = sum_k weights[k] * lognormal(x; mu[k], sigma[k]), x in seconds, mu and sigma of ln(x)."""

    weights: tuple[float, ...] = option(help="component weights (sum to 1)", gt=0)
    mu: tuple[float, ...] = option(help="mean of ln(seconds) of each component")
    sigma: tuple[float, ...] = option(help="standard deviation of ln(seconds) of each component", gt=0)
    family: Literal["lognormal-mixture"] = option("lognormal-mixture", help="the distribution family")

    def __post_init__(self) -> None:
        if not len(self.weights) == len(self.mu) == len(self.sigma):
            raise ConfigError("mu", list(self.mu), f"one value per weight ({len(self.weights)}), as sigma")
        if abs(sum(self.weights) - 1.0) > 1e-9:
            raise ConfigError("weights", list(self.weights), "weights that sum to 1")

    @property
    def mean_s(self) -> float:
        return float(sum(w * np.exp(m + s * s / 2) for w, m, s in zip(self.weights, self.mu, self.sigma)))

    def cdf(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import ndtr

        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        return sum(w * ndtr((np.log(x) - m) / s) for w, m, s in zip(self.weights, self.mu, self.sigma))


@dataclass(frozen=True)
class QuantileCheck:
    q: float = option(help="probability", gt=0, le=1)
    empirical_s: float = option(help="quantile of the sample (seconds)", ge=0)
    fitted_s: float = option(help="quantile of the fitted distribution (seconds)", ge=0)


@dataclass(frozen=True)
class FitAlternative:
    components: int = option(help="lognormal components (1: a single lognormal)", ge=1)
    ks_d: float = option(help="Kolmogorov-Smirnov distance to the sample", ge=0)
    aic: float = option(help="Akaike information criterion (lower is better)")


@dataclass(frozen=True)
class LatencyFit:
    method: str = option(help="how the parameters were fitted")
    ks_d: float = option(help="Kolmogorov-Smirnov distance of the chosen fit to the sample", ge=0)
    aic: float = option(help="its Akaike information criterion")
    mean_empirical_s: float = option(help="mean of the sample (seconds)", ge=0)
    mean_fitted_s: float = option(help="mean of the fitted distribution (seconds)", ge=0)
    quantiles: tuple[QuantileCheck, ...] = option(help="fitted against empirical quantiles")
    alternatives: tuple[FitAlternative, ...] = option(help="other numbers of components, for comparison")
    script: str = option(help="the script that reproduces the fit from the user's copy of the data")


@dataclass(frozen=True)
class LoadLatency:
    """A distribution of model load times fitted to a real service's measurements."""

    schema: str = option(help=f"always {LOAD_LATENCY_SCHEMA!r}")
    schema_version: int = option(help=f"format version; this suite reads {LOAD_LATENCY_VERSION}", ge=1)
    name: str = option(help="what profiles name it by (cold_start.load.rule.distribution)")
    description: str = option(help="what the latencies are and why this file stands for a cold start")
    source: SourceDoc = option(help="where the data are (not redistributed: read from the user's copy)")
    sample: LatencySample = option(help="what was fitted")
    distribution: LognormalMixture = option(help="the fitted distribution, in seconds")
    fit: LatencyFit = option(help="how well it fits")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_latency_from_dict(data: Any, source: str) -> LoadLatency:
    if not isinstance(data, dict):
        raise ConfigError("<root>", type(data).__name__, "a JSON object (a load-latency file)", source=source)
    if data.get("schema") != LOAD_LATENCY_SCHEMA:
        raise ConfigError("schema", data.get("schema"), f"{LOAD_LATENCY_SCHEMA!r} (not a load-latency file)", source=source)
    if data.get("schema_version") != LOAD_LATENCY_VERSION:
        raise ConfigError("schema_version", data.get("schema_version"), f"{LOAD_LATENCY_VERSION}", source=source)
    dist = from_dict(LoadLatency, data, source=source)
    if not _close(dist.fit.mean_fitted_s, dist.distribution.mean_s):
        raise ConfigError("fit.mean_fitted_s", dist.fit.mean_fitted_s, f"{dist.distribution.mean_s!r}, the mean of the distribution", source=source)
    return dist


def load_load_latency(path: str | Path) -> LoadLatency:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("load-latency distribution", str(path), "an existing file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError("load-latency distribution", str(path), f"valid JSON ({exc})") from None
    return load_latency_from_dict(data, str(path))


def save_load_latency(dist: LoadLatency, path: str | Path) -> Path:
    return _write_json(dist.to_dict(), path)
