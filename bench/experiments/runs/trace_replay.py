"""Replay a request trace through any scenario's servers and costs (`bench run --trace FILE`, sweeps' `trace`).

The scenario keeps its servers, costs and task attributes; its arrivals become the trace's (event time model),
an episode is a window of the trace as long as the scenario's episode, and time is compressed so that the work
arriving is the share of capacity the scenario itself offers (its offered load), unless stated otherwise.
Per-index attribute tables (the reference's quirk in `paper`) need per-slot arrivals, so a replay draws every
request's attributes from the same ranges instead.
"""

from __future__ import annotations

from typing import Any

from bench.engine.system import System
from bench.scenarios import Scenario, scenario_from_dict


def with_trace(scenario: Scenario, source: str, *, window_s: float | None = None, utilisation: float | None = None,
               train_fraction: float | None = None) -> Scenario:
    """`scenario` with its arrivals replaced by the trace `source` (a shipped trace's name or a trace file)."""
    data: dict[str, Any] = scenario.to_dict()
    if utilisation is None:
        utilisation = System.build(scenario, 0).offered_load()
    horizon = scenario.episode.slots * scenario.episode.slot_s
    trace = {"source": str(source), "window_s": float(window_s or horizon), "utilisation": float(utilisation)}
    if train_fraction is not None:
        trace["train_fraction"] = float(train_fraction)
    tasks = data["tasks"]
    for key in ("arrivals_per_bs", "arrivals", "trace", "per_index_legacy_seeds"):
        tasks.pop(key, None)
    tasks["attributes"] = "per-task"
    tasks["trace"] = trace
    data["episode"]["time_model"] = "event"
    data["name"] = f"{scenario.name}+trace"
    data["description"] = f"{scenario.name}'s servers and costs, arrivals replayed from the trace {source} at utilisation {utilisation:.3g}"
    return scenario_from_dict(data, source=f"{scenario.name} with --trace {source}")


def load_replayed(ref: str, overrides, trace: str | None = None) -> Scenario:
    """A preset or scenario file, its arrivals replaced by `trace` when given, then the `key=value` overrides
    (applied after the replay, so they may set tasks.trace fields such as window_s)."""
    from bench.core.config import apply_overrides
    from bench.scenarios import load_scenario

    overrides = list(overrides)
    if trace is None:
        return load_scenario(ref, overrides)
    replayed = with_trace(load_scenario(ref), trace)
    if not overrides:
        return replayed
    return scenario_from_dict(apply_overrides(replayed.to_dict(), overrides), source=f"{ref} with the trace {trace}")
