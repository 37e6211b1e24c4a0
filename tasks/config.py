"""The task stream's configuration: the `[tasks]` table of a scenario (arrivals, task attributes, request classes,
model popularity). It lives with the streams it configures; `bench.scenarios` composes it into a scenario."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.core.config import option, to_dict
from bench.core.errors import ConfigError
from tasks.arrivals import ArrivalConfig
from tasks.traces import TraceConfig

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # model names become file names

__all__ = ["CheckpointsConfig", "LegacySeeds", "TaskClass", "TasksConfig"]


@dataclass(frozen=True)
class LegacySeeds:
    density: int = option(help="numpy RandomState seed for the per-index compute densities", ge=0, le=2**32 - 1)
    steps: int = option(help="numpy RandomState seed for the per-index denoising steps", ge=0, le=2**32 - 1)
    result: int = option(help="numpy RandomState seed for the per-index result sizes", ge=0, le=2**32 - 1)


@dataclass(frozen=True, kw_only=True)
class TaskClass:
    model: str = option(help="zoo model name (bench list models); every server's hardware needs a profile of it")
    weight: float = option(1.0, help="relative frequency of this class in the mix", gt=0)
    steps: tuple[int, int] = option(help="denoising steps, integer-uniform in [low, high]", ge=1, interval="closed")
    resolution: int = option(512, help="image side in px (a resolution measured in the profiles)", ge=8)
    batch: int = option(1, help="images per request (a batch size measured in the profiles)", ge=1)
    deadline_s: float | None = option(None, help="service-level objective: the delay a request should not exceed (SLO attainment)", gt=0)
    variants: tuple[str, ...] | None = option(
        None, help="scenarios with [serving]: the names of the serving.variants a scheduler may serve this class with; the "
        "first is the default (it must be the class's own model and steps)"
    )

    def __post_init__(self) -> None:
        if not NAME.match(self.model) or ".." in self.model:
            raise ConfigError("model", self.model, "a zoo model name of letters, digits, '.', '_' and '-' (bench list models)")
        if self.variants is not None and (not self.variants or len(set(self.variants)) != len(self.variants)):
            raise ConfigError("variants", list(self.variants), "one or more distinct variant names (the first is the default)")


@dataclass(frozen=True, kw_only=True)
class CheckpointsConfig:
    """Model popularity: each request is for one of `count` checkpoints of its class's architecture, checkpoint r
    (1 = the most requested) with probability proportional to (r + offset)^-exponent (Zipf-Mandelbrot). Each
    checkpoint is its own model for residency (loaded, kept and evicted on its own), costed as its architecture."""

    count: int = option(help="checkpoints per architecture", ge=1, le=100_000)
    exponent: float = option(help="Zipf-Mandelbrot exponent s of the popularity (r + offset)^-s", ge=0)
    offset: float = option(0.0, help="Zipf-Mandelbrot offset (0: plain Zipf)", gt=-1)

    def shares(self) -> np.ndarray:
        r = np.arange(1, self.count + 1, dtype=np.float64)
        w = (r + self.offset) ** -self.exponent
        return w / w.sum()


@dataclass(frozen=True, kw_only=True)
class TasksConfig:
    arrivals_per_bs: tuple[int, int] | None = option(
        None, help="tasks arriving at each base station in each slot, integer-uniform in [low, high] (in the event time "
        "model they arrive at the slot's start); or give arrivals or trace", ge=0, interval="closed"
    )
    size_mbit: tuple[float, float] = option(help="input size d in Mbit, uniform in [low, high)", ge=0, interval="half-open")
    density_gcycles_per_step: tuple[float, float] | None = option(
        None, help="cycle-cost scenarios: compute density c in Gcycles per denoising step, uniform in [low, high)", gt=0, interval="half-open"
    )
    steps: tuple[int, int] | None = option(
        None, help="cycle-cost scenarios: denoising steps k, integer-uniform in [low, high]", ge=1, interval="closed"
    )
    result_mbit: tuple[float, float] = option(help="result size o in Mbit, uniform in [low, high)", ge=0, interval="half-open")
    attributes: Literal["per-task", "per-index"] = option(
        "per-task",
        help="per-task: density, steps and result size drawn for every task; per-index: drawn once per arrival "
        "index n and reused for the n-th task of every BS, slot and episode (the reference code's quirk)",
    )
    per_index_legacy_seeds: LegacySeeds | None = option(
        None, help="per-index only: draw the per-index tables with numpy's legacy RandomState(seed), as the reference did"
    )
    mix: tuple[TaskClass, ...] | None = option(
        None, help="profile-driven scenarios: the request classes (model, steps, resolution, batch, deadline), "
        "each task drawn from them by weight"
    )
    checkpoints: CheckpointsConfig | None = option(
        None, help="profile-driven scenarios: model popularity over many checkpoints per architecture, each its own model "
        "for residency (absent: one model per architecture)"
    )
    arrivals: ArrivalConfig | None = option(
        None, help="event time model: an arrival process (Poisson, Gamma renewal, MMPP, optionally diurnal) over the "
        "episode's slots x slot_s seconds, instead of arrivals_per_bs (docs/workloads.md)"
    )
    trace: TraceConfig | None = option(
        None, help="event time model: replay a request trace; an episode is a window of it (docs/workloads.md)"
    )

    def __post_init__(self) -> None:
        if self.mix is None:
            for name in ("density_gcycles_per_step", "steps"):
                if getattr(self, name) is None:
                    raise ConfigError(name, None, "[low, high] (required unless the tasks come from a profile-driven mix)")
        else:
            for name in ("density_gcycles_per_step", "steps"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, list(getattr(self, name)), "to be absent with mix (each class sets its steps; profiles give the costs)")
            if self.attributes != "per-task":
                raise ConfigError("attributes", self.attributes, '"per-task" with mix')
        given = [name for name in ("arrivals_per_bs", "arrivals", "trace") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigError("arrivals_per_bs", given or None, "exactly one of arrivals_per_bs (per slot), arrivals (a process) and trace")
        if self.arrivals_per_bs is not None and self.arrivals_per_bs[1] < 1:
            raise ConfigError("arrivals_per_bs", list(self.arrivals_per_bs), "a range whose high is >= 1 (no task would ever arrive)")
        if self.attributes == "per-index" and self.arrivals_per_bs is None:
            raise ConfigError("attributes", self.attributes, '"per-task" with arrivals or trace (per-index tables need arrivals_per_bs)')
        if self.checkpoints is not None and self.mix is None:
            raise ConfigError("checkpoints", to_dict(self.checkpoints), "to be absent unless the tasks come from a profile-driven mix")
        if self.per_index_legacy_seeds is not None and self.attributes != "per-index":
            raise ConfigError("per_index_legacy_seeds", to_dict(self.per_index_legacy_seeds), 'to be absent unless attributes = "per-index"')
