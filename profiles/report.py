"""A Markdown table of the profiles in a directory (<hardware>/<model>.json), for docs and job logs.

    python -m profiles.report profiles/data
"""

from __future__ import annotations

import sys
from pathlib import Path

from profiles.schema import Profile, load_profile

GIB = 2**30


def table(profiles: list[Profile]) -> str:
    head = ("| hardware | model | dtype | point | step (median) | spread | text encoding | VAE decode | load | "
            "peak memory | NVML used (peak) | energy / step | weights |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in profiles:
        for g in p.grid:
            nvml = f"{g.nvml_peak_used_bytes / GIB:.2f} GiB" if g.nvml_peak_used_bytes is not None else "-"  # NVML: context included
            energy = f"{g.energy_j_per_step:.1f} J" if g.energy_j_per_step is not None else "-"
            lines.append(
                f"| `{p.hardware.id}` | `{p.model.name}` | {p.provenance.dtype} | {g.resolution} px x {g.batch} | "
                f"{g.step.median_s * 1e3:.1f} ms | {g.step.spread:.1%} | {p.text_s(g.batch) * 1e3:.1f} ms | "
                f"{g.vae_decode.median_s * 1e3:.1f} ms | {p.cold_start.load.median_s:.2f} s | {g.peak_memory_bytes / GIB:.2f} GiB | "
                f"{nvml} | {energy} | {p.model.weights_bytes / GIB:.2f} GiB |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path("profiles/data")
    files = sorted(root.glob("*/*.json"))
    if not files:
        print(f"no profiles under {root}", file=sys.stderr)
        return 1
    from bench.core.errors import BenchError

    try:
        print(table([load_profile(f) for f in files]))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
