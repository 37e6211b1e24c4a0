"""What a variant's images are worth: published quality figures of (model, steps, resolution), each cited.

A scheduler that may pick a request's model and steps trades quality for latency (DiffServe's light/heavy cascades,
few-step distilled models, step choice). The latency side comes from the profiles; this file holds the other side:
every number printed in an evaluation, with the document, the table and row, and the protocol it was measured under.

Two rules keep the numbers honest:
- **A figure is comparable only within its protocol** (one table of one document): FID depends on the prompt set,
  the number of images and the reference statistics, CLIP score on the CLIP model and its scale (a cosine ~0.3, or
  x100 ~26-36). So every figure names its protocol, and `compare` refuses figures of two protocols.
- **No figure, no variant**: a variant without a published figure under a scenario's protocol is not offered
  (`figure` answers None). Nothing is interpolated between steps or resolutions.

A protocol may also publish an acceptance window (MLPerf's SDXL accuracy: FID and CLIP within stated bounds of the
reference run), the suite's model of a quality floor; `QualityWindow` holds it with the rule that defines it, and
a test recomputes the bounds from that rule.

Data: profiles/data/quality.json (schema "aigc-edge-bench/quality"). List every figure with its citation:
`python -m profiles.report profiles/data --figures`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench.core.config import from_dict, option
from bench.core.errors import ConfigError
from bench.core.io import read_text
from profiles.schema import Citation, SourceDoc

SCHEMA = "aigc-edge-bench/quality"
SCHEMA_VERSION = 1
DEFAULT_PATH = Path(__file__).with_name("data") / "quality.json"


@dataclass(frozen=True)
class QualityProtocol:
    key: str = option(help="short name the figures use")
    metric: Literal["fid", "clip"] = option(help="fid: Fréchet Inception distance (lower is better); clip: CLIP score (higher is better)")
    definition: str = option(help="how the source computes it: the network, the scale, the reference statistics")
    prompts: str = option(help="the prompt set and how many images were generated")
    source: str = option(help="key of the document in `sources` that defines it")

    @property
    def lower_is_better(self) -> bool:
        return self.metric == "fid"


@dataclass(frozen=True)
class QualityFigure:
    model: str = option(help="what was evaluated, as the source names it (a checkpoint)")
    architecture: str = option(help="the zoo architecture whose step times price it (profiles.zoo): sd15, sdxl, ...")
    steps: int = option(help="denoising steps of the evaluated run", ge=1)
    resolution: int = option(help="image side in px of the evaluated run", ge=8)
    guidance: str = option(help="classifier-free guidance of the run as the source gives it ('none': no CFG, one UNet pass per step)")
    protocol: str = option(help="key of the protocol in `protocols`")
    value: float = option(help="the number as printed, in the protocol's scale")
    citation: Citation = option(help="where it is printed")
    note: str | None = option(None, help="what a reader should know (how the row was read, settings stated elsewhere)")


@dataclass(frozen=True)
class QualityWindow:
    """A published acceptance window of one protocol: a figure inside [low, high] passes the source's quality bar."""

    protocol: str = option(help="key of the protocol")
    low: float = option(help="lower bound as printed")
    high: float = option(help="upper bound as printed")
    reference: float = option(help="the reference run's figure the bounds are derived from, as printed")
    tolerance: float = option(help="the relative tolerance the source states (0.02: within 2% of the reference)", gt=0, le=1)
    citation: Citation = option(help="where the window is printed")

    def __post_init__(self) -> None:
        if not self.low <= self.reference <= self.high:
            raise ConfigError("reference", self.reference, f"a figure inside its window [{self.low}, {self.high}]")

    def admits(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class QualityTable:
    schema: str = option(help=f"{SCHEMA!r}")
    schema_version: int = option(help="version of this file's format", ge=1)
    sources: tuple[SourceDoc, ...] = option(help="the documents cited")
    protocols: tuple[QualityProtocol, ...] = option(help="how each metric was measured, one entry per table of a document")
    figures: tuple[QualityFigure, ...] = option(help="the quality of each evaluated (model, steps, resolution)")
    windows: tuple[QualityWindow, ...] = option((), help="published acceptance windows (quality floors)")

    def __post_init__(self) -> None:
        keys = [s.key for s in self.sources]
        if len(set(keys)) != len(keys):
            raise ConfigError("sources", keys, "each key once")
        protocols = {p.key: p for p in self.protocols}
        if len(protocols) != len(self.protocols):
            raise ConfigError("protocols", [p.key for p in self.protocols], "each key once")
        for p in self.protocols:
            if p.source not in keys:
                raise ConfigError(f"protocols[{p.key}].source", p.source, f"one of the sources' keys {keys}")
        seen = set()
        for i, f in enumerate(self.figures):
            if f.protocol not in protocols:
                raise ConfigError(f"figures[{i}].protocol", f.protocol, f"one of {sorted(protocols)}")
            if f.citation.source not in keys:
                raise ConfigError(f"figures[{i}].citation.source", f.citation.source, f"one of the sources' keys {keys}")
            key = (f.model, f.steps, f.resolution, f.protocol)
            if key in seen:
                raise ConfigError(f"figures[{i}]", key, "each (model, steps, resolution, protocol) once")
            seen.add(key)
        for i, w in enumerate(self.windows):
            if w.protocol not in protocols:
                raise ConfigError(f"windows[{i}].protocol", w.protocol, f"one of {sorted(protocols)}")
            if w.citation.source not in keys:
                raise ConfigError(f"windows[{i}].citation.source", w.citation.source, f"one of the sources' keys {keys}")

    def protocol(self, key: str) -> QualityProtocol:
        for p in self.protocols:
            if p.key == key:
                return p
        raise ConfigError("protocol", key, f"one of {[p.key for p in self.protocols]}")

    def figure(self, model: str, steps: int, resolution: int, protocol: str) -> QualityFigure | None:
        """The published figure of this variant under `protocol`, or None: then the variant is not offered."""
        for f in self.figures:
            if (f.model, f.steps, f.resolution, f.protocol) == (model, steps, resolution, protocol):
                return f
        return None

    def compare(self, a: QualityFigure, b: QualityFigure) -> float:
        """How much better `a` is than `b` in the protocol's direction (positive: a is better); only within one protocol."""
        if a.protocol != b.protocol:
            raise ConfigError("protocol", f"{a.protocol} vs {b.protocol}", "two figures of one protocol (figures of different tables are not comparable)")
        d = a.value - b.value
        return -d if self.protocol(a.protocol).lower_is_better else d

    def source(self, key: str) -> SourceDoc:
        return next(s for s in self.sources if s.key == key)


def quality_from_dict(data: Any, source: str) -> QualityTable:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfigError("schema", data.get("schema") if isinstance(data, dict) else type(data).__name__, f"{SCHEMA!r} (a quality file)", source=source)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError("schema_version", data.get("schema_version"), str(SCHEMA_VERSION), source=source)
    return from_dict(QualityTable, data, source=source)


def load_quality(path: str | Path = DEFAULT_PATH) -> QualityTable:
    path = Path(path)
    text = read_text(path, "quality file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("quality file", str(path), f"valid JSON ({exc})") from None
    return quality_from_dict(data, str(path))


__all__ = ["QualityFigure", "QualityProtocol", "QualityTable", "QualityWindow", "load_quality", "quality_from_dict"]
