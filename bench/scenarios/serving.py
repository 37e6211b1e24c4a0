"""What a scheduler may decide beyond a server (docs/serving.md): which *variant* serves a request (model
checkpoint and steps, each with a published quality figure) and whether to *hold* it to batch it with later
requests of the same variant.

    [serving]
    max_hold_s = 2.0                      # > 0: a held request waits at most this long for its batch
    quality_protocol = "lightning-fid-whole"
    quality_floor = 22.5                  # in the protocol's scale and direction (FID: at most)

    [[serving.variants]]
    name = "lightning-4"
    model = "sdxl"                        # the architecture whose profile prices it
    checkpoint = "sdxl-lightning"         # its weights: a residency unit of its own (default: the architecture's)
    steps = 4
    guidance = false                      # no classifier-free guidance: one denoiser pass on n latents per step
    figure = "ByteDance/SDXL-Lightning (full UNet)"   # the `model` of its figure in profiles/data/quality.json

A request class lists the variants it may be served with (`tasks.mix[].variants`, the first its default: its own
model and steps). A class without that list is served by an implicit variant of its own model and steps, so
batching alone (`max_hold_s`) needs no variant table. Quality is a property of (figure, steps, resolution) in
the scenario's one protocol: a variant whose figure is not published under it is refused, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.core.config import option
from bench.core.errors import ConfigError

__all__ = ["ServingConfig", "VariantConfig", "check_serving"]

MAX_VARIANTS = 32  # a scenario may come from an untrusted bundle: its tables are variants x servers x job sizes
MAX_VARIANT_SERVERS = 65_536  # variants x servers (with 65 job sizes and three tables: about 100 MB at most)


@dataclass(frozen=True, kw_only=True)
class VariantConfig:
    name: str = option(help="short name the request classes use")
    model: str = option(help="the architecture (zoo model) whose profile prices it; a model some request class uses")
    checkpoint: str | None = option(None, help="its weights, a residency unit of its own (absent: the architecture's own weights)")
    steps: int = option(help="denoising steps", ge=1, le=1000)
    guidance: bool = option(True, help="classifier-free guidance: each step runs the denoiser on 2 x images latents (the profiles' setting); "
                            "false: on the images alone, priced as the profile's batch of ceil(images / 2)")
    figure: str | None = option(None, help="the `model` of its quality figure in profiles/data/quality.json (required with quality_protocol)")


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    variants: tuple[VariantConfig, ...] | None = option(None, help="the variants request classes may be served with (tasks.mix[].variants)")
    max_hold_s: float = option(0.0, help="> 0: a scheduler may hold a request to batch it with later ones of its variant on its server; "
                               "an open batch starts when released or when its first request has waited this long", ge=0, le=3600)
    quality_protocol: str | None = option(None, help="the protocol (profiles/data/quality.json) every variant's quality is read under")
    quality_floor: float | None = option(None, help="with quality_protocol: the quality a request must be served at, in the protocol's "
                                         "scale and direction (FID: at most; CLIP: at least)")

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants or ()]
        if len(names) > MAX_VARIANTS:
            raise ConfigError("serving.variants", f"{len(names)} variants", f"at most {MAX_VARIANTS}")
        if len(set(names)) != len(names):
            raise ConfigError("serving.variants", names, "each name once")
        if self.quality_floor is not None and self.quality_protocol is None:
            raise ConfigError("serving.quality_floor", self.quality_floor, "to be absent unless serving.quality_protocol is set")
        if self.quality_protocol is not None:
            for i, v in enumerate(self.variants or ()):
                if v.figure is None:
                    raise ConfigError(f"serving.variants[{i}].figure", None, f"the quality figure's model under {self.quality_protocol!r} "
                                      "(no figure, no variant)")


def check_serving(serving: ServingConfig, mix: Any, servers: int) -> None:
    """The variants agree with the request classes (a scenario's own checks; the quality figures are looked up when
    the costs are built, bench.engine.serving)."""
    implicit = {(c.model, c.steps[0], c.resolution) for c in mix if c.variants is None}
    if (len(serving.variants or ()) + len(implicit)) * servers > MAX_VARIANT_SERVERS:
        raise ConfigError("serving.variants", f"{len(serving.variants or ()) + len(implicit)} variants (listed and implicit) x {servers} servers",
                          f"at most {MAX_VARIANT_SERVERS:,} pairs (each prices every job size on every server)")
    by_name = {v.name: v for v in serving.variants or ()}
    models = {c.model for c in mix}
    for i, v in enumerate(serving.variants or ()):
        if v.model not in models:
            raise ConfigError(f"serving.variants[{i}].model", v.model, f"the architecture of some request class ({', '.join(sorted(models))})")
    for ci, c in enumerate(mix):
        if c.variants is None:
            continue
        for name in c.variants:
            if name not in by_name:
                raise ConfigError(f"tasks.mix[{ci}].variants", name, f"one of serving.variants ({', '.join(by_name) or 'none'})")
        first = by_name[c.variants[0]]
        if (first.model, first.steps, first.checkpoint or first.model, first.guidance) != (c.model, c.steps[0], c.model, True) or c.steps[0] != c.steps[1]:
            raise ConfigError(f"tasks.mix[{ci}].variants[0]", first.name, f"the class's own service: model {c.model}, its own weights, "
                              f"{c.steps[0]} steps with guidance (steps = [{c.steps[0]}, {c.steps[0]}]), so that a scheduler choosing "
                              "only a server gets what the class asks for")
        for name in c.variants:
            if by_name[name].model != c.model:
                raise ConfigError(f"tasks.mix[{ci}].variants", name, f"a variant of the class's architecture {c.model}")
    if serving.max_hold_s > 0:
        for ci, c in enumerate(mix):
            if c.steps[0] != c.steps[1]:
                raise ConfigError(f"tasks.mix[{ci}].steps", list(c.steps), "one step count [s, s] with serving.max_hold_s > 0 (a batch runs "
                                  "one step count)")
