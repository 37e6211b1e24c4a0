"""The costs and quality of serving variants, and batches of them (docs/serving.md; the config is
bench/scenarios/serving.py).

A *job* is what a server's worker runs: one request, or a batch of held requests of one variant, n images in all.
Its warm compute comes from the variant's architecture profile on the server's hardware, by two stated rules:

    padding:   a job of n images runs at the smallest profiled batch size >= n (static shapes, as Clockwork's and
               TensorRT's engines run); text encoding and VAE decode (the profile's non-step time) at that size
    guidance:  with classifier-free guidance (the profiles' setting) a step runs the denoiser on 2n latents; without
               (`guidance = false`, e.g. SDXL-Lightning) on n, priced as the profiled step at ceil(n / 2) images, an
               upper bound for odd n (the profiles have no step without guidance)

    warm_s(v, a, n) = non_step(a, pad(n)) + steps_v x step(a, pad(n) or pad(ceil(n / 2)))

and it runs where that point's peak memory fits the server. No batch size beyond the profile's grid is offered.
A variant's residency unit is its checkpoint (a distilled model's weights are loaded, kept and evicted like any
model, with its architecture's size and load time). Its quality is its published figure under the scenario's
protocol (profiles/quality.py): a figure or no variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.core.arrays import read_only_copy
from bench.core.errors import ConfigError

MAX_JOB_IMAGES = 64  # the largest job priced (profiled grids stop at 32 images)


@dataclass(frozen=True, eq=False)
class ServingTable:
    """Variants V (the scenario's, then one implicit per class without a list), servers B, images 0..N."""

    names: tuple[str, ...]
    arch: np.ndarray  # (V,) architecture index (ProfiledCosts.models)
    unit: np.ndarray  # (V,) residency unit
    steps: np.ndarray  # (V,)
    guidance: np.ndarray  # (V,) bool
    resolution: np.ndarray  # (V,)
    quality: np.ndarray  # (V,) the published figure under `protocol`, NaN without a protocol
    fixed_s: np.ndarray  # (V, B, N + 1) non-step time of a job of n images (inf: not offered)
    per_step_s: np.ndarray  # (V, B, N + 1)
    peak_bytes: np.ndarray  # (V, B, N + 1)
    class_variants: np.ndarray  # (C, V) bool: the variants each request class may be served with
    class_default: np.ndarray  # (C,) its default variant
    class_images: np.ndarray  # (C,) images per request
    max_hold_s: float
    protocol: str | None
    quality_floor: float | None
    lower_is_better: bool

    @property
    def n_variants(self) -> int:
        return len(self.names)

    def warm_s(self) -> np.ndarray:
        """(V, B, N + 1): warm compute of a job of n images (inf where not offered; [..., 0] = 0)."""
        return self.fixed_s + self.steps[:, None, None] * self.per_step_s

    def max_images(self) -> np.ndarray:
        """(V, B): the largest job each server runs with each variant (0: none)."""
        ok = np.isfinite(self.fixed_s)
        n = np.arange(ok.shape[2])
        return np.where(ok, n[None, None, :], 0).max(axis=2)

    def meets_floor(self, quality: np.ndarray) -> np.ndarray:
        """Whether each quality value meets the floor (True everywhere without one)."""
        q = np.asarray(quality, dtype=np.float64)
        if self.quality_floor is None:
            return np.ones(q.shape, dtype=bool)
        return q <= self.quality_floor if self.lower_is_better else q >= self.quality_floor


def build_serving(serving: Any, mix: Any, models: list[str], hardware: list[str], profiles: dict[tuple[str, str], Any],
                  memory_bytes: np.ndarray) -> ServingTable:
    """The table of a scenario's [serving] (module docstring); `profiles[(hardware, model)]` the loaded profiles."""
    variants = list(serving.variants or ())
    names = [v.name for v in variants]
    spec = [(v.model, v.checkpoint or v.model, v.steps, v.guidance, None) for v in variants]  # resolution from the classes
    class_variants: list[list[int]] = []
    for c in mix:
        if c.variants is not None:
            class_variants.append([names.index(n) for n in c.variants])
            continue
        key = (c.model, c.model, c.steps[0], True, c.resolution)
        if key not in spec:  # an implicit variant: the class's own model and steps
            spec.append(key)
            names.append(f"{c.model}-{c.steps[0]}-{c.resolution}px")
        class_variants.append([spec.index(key)])
    n_v, n_b, n_c = len(spec), len(hardware), len(mix)
    resolution = np.zeros(n_v, np.int64)
    for ci, c in enumerate(mix):
        for v in class_variants[ci]:
            if resolution[v] not in (0, c.resolution):
                raise ConfigError(f"tasks.mix[{ci}].resolution", c.resolution, f"{resolution[v]} px: variant {names[v]!r} is served at one "
                                  "resolution (its quality figure's)")
            resolution[v] = c.resolution
    checkpoints = sorted({s[1] for s in spec if s[1] not in models})
    unit = np.array([models.index(s[1]) if s[1] in models else len(models) + checkpoints.index(s[1]) for s in spec], np.int64)
    arch = np.array([models.index(s[0]) for s in spec], np.int64)
    steps = np.array([s[2] for s in spec], np.int64)
    guidance = np.array([s[3] for s in spec], bool)

    n_max = MAX_JOB_IMAGES
    fixed, per_step, peak = (np.full((n_v, n_b, n_max + 1), np.inf) for _ in range(3))
    fixed[:, :, 0] = per_step[:, :, 0] = peak[:, :, 0] = 0.0
    for v, (model, _, _, guided, _) in enumerate(spec):
        for a, hw in enumerate(hardware):
            profile = profiles.get((hw, model))
            if profile is None:
                continue
            sizes = sorted(p.batch for p in profile.grid if p.resolution == resolution[v])
            for n in range(1, n_max + 1):
                pad = next((b for b in sizes if b >= n), None)
                latents = n if guided else -(-n // 2)
                step_pad = next((b for b in sizes if b >= latents), None)
                if pad is None or step_pad is None:
                    break
                whole, step = profile.costs_at(int(resolution[v]), pad), profile.costs_at(int(resolution[v]), step_pad)
                need = max(whole.peak_bytes, step.peak_bytes)
                if need > memory_bytes[a]:
                    break
                fixed[v, a, n] = whole.text_s + whole.vae_s
                per_step[v, a, n] = step.step_s
                peak[v, a, n] = need

    quality = np.full(n_v, np.nan)
    lower = True
    if serving.quality_protocol is not None:
        from profiles.quality import load_quality

        table = load_quality()
        protocol = table.protocol(serving.quality_protocol)
        lower = protocol.lower_is_better
        figure_of = {v.name: v.figure for v in variants}
        for v in range(n_v):
            figure = figure_of.get(names[v])
            if figure is None:
                raise ConfigError(f"tasks.mix (variant {names[v]!r})", "no variants list", f"a class whose variants each have a figure under "
                                  f"{protocol.key!r} (with a quality protocol every class lists its variants)")
            found = table.figure(figure, int(steps[v]), int(resolution[v]), protocol.key)
            if found is None:
                have = sorted({(f.model, f.steps, f.resolution) for f in table.figures if f.protocol == protocol.key})
                raise ConfigError(f"serving.variants[{names[v]!r}].figure", f"{figure} at {steps[v]} steps, {resolution[v]} px",
                                  f"a figure published under {protocol.key!r}: {have} (no figure, no variant)")
            quality[v] = found.value

    offered = np.zeros((n_c, n_v), bool)
    for ci, vs in enumerate(class_variants):
        offered[ci, vs] = True
    images = np.array([c.batch for c in mix], np.int64)
    for ci, vs in enumerate(class_variants):
        for v in vs:
            if not np.isfinite(fixed[v, :, images[ci]]).any():
                raise ConfigError(f"tasks.mix[{ci}].variants", names[v], f"a variant some server runs at {images[ci]} image(s), "
                                  f"{resolution[v]} px (no profiled point fits)")
    return ServingTable(
        names=tuple(names), arch=read_only_copy(arch), unit=read_only_copy(unit), steps=read_only_copy(steps),
        guidance=read_only_copy(guidance), resolution=read_only_copy(resolution), quality=read_only_copy(quality),
        fixed_s=read_only_copy(fixed), per_step_s=read_only_copy(per_step), peak_bytes=read_only_copy(peak),
        class_variants=read_only_copy(offered), class_default=read_only_copy(np.array([vs[0] for vs in class_variants], np.int64)),
        class_images=read_only_copy(images), max_hold_s=float(serving.max_hold_s), protocol=serving.quality_protocol,
        quality_floor=serving.quality_floor, lower_is_better=lower,
    )
