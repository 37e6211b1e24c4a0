"""What software and precision stand behind a profile-driven scenario's costs, per (GPU or CPU, model): a published
figure carries its conditions (profiles/schema.py `Conditions`), a measured profile its provenance. A scenario that
mixes stacks (TensorRT int8 on some GPUs, PyTorch fp16 on others) compares servers partly by their software, and
the leaderboard says so on its pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles import store


@dataclass(frozen=True)
class Stack:
    hardware: str
    model: str
    precision: str
    software: str
    source: str  # "published" or "measured"


def _software(figure: Any) -> str | None:
    """The software of a published figure: its own conditions, else those of the first figure it was derived from."""
    conditions = getattr(figure, "conditions", None)
    if conditions is not None and getattr(conditions, "software", None) not in (None, "-"):
        return conditions.software
    for inner in getattr(figure, "inputs", None) or ():
        found = _software(inner)
        if found:
            return found
    return None


def stack_of(profile: Any) -> tuple[str, str]:
    """(precision, software) of the step times, which rank the servers."""
    if getattr(profile, "source", "measured") == "published":
        software = next((s for p in profile.grid if (s := _software(p.step))), "not stated")
        return profile.model.precision, software
    p = profile.provenance
    return p.dtype, f"PyTorch {p.torch}, diffusers {p.diffusers} (measured by this suite's profiler)"


def stacks(servers: Any, mix: Any) -> list[Stack]:
    """One row per (hardware, model) pair a scenario's servers run, in hardware order."""
    refs = store.for_servers(list(servers.hardware), mix, servers.profile_dirs or ())
    out = []
    for (hw, model), ref in sorted(refs.items(), key=lambda kv: (list(servers.hardware).index(kv[0][0]), kv[0][1])):
        profile = store.load(ref)
        precision, software = stack_of(profile)
        out.append(Stack(hw, model, precision, software, getattr(profile, "source", "measured")))
    return out


def mixes(rows: list[Stack]) -> bool:
    """Whether the step times come from more than one precision or software stack."""
    return len({r.precision for r in rows}) > 1 or len({r.software.split(",")[0] for r in rows}) > 1
