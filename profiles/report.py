"""Markdown tables of the profiles in a directory (<hardware>/<model>.json), for docs and job logs.

    python -m profiles.report profiles/data             # one row per grid point, measured and published
    python -m profiles.report profiles/data --figures   # every published figure used, with its conditions and citation,
                                                        # and the quality figures of variants (profiles/data/quality.json)
"""

from __future__ import annotations

import sys
from pathlib import Path

from profiles.schema import AnyProfile, Figure, PublishedProfile, load_profile

GIB = 2**30
LOAD_LATENCY_DIR = "load-latency"


def table(profiles: list[AnyProfile]) -> str:
    head = ("| hardware | model | source | dtype | point | step (median) | spread | text encoding | VAE decode | load | "
            "peak memory | NVML used (peak) | energy / step | weights |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in profiles:
        published = isinstance(p, PublishedProfile)
        dtype = p.model.precision if published else p.provenance.dtype
        for g in p.grid:
            c = p.costs_at(g.resolution, g.batch)
            nvml = "-" if published or g.nvml_peak_used_bytes is None else f"{g.nvml_peak_used_bytes / GIB:.2f} GiB"  # NVML: context included
            energy = f"{c.energy_j_per_step:.1f} J" if c.energy_j_per_step is not None else "-"
            spread = "-" if published else f"{g.step.spread:.1%}"
            text = _part(p.text_figure(g.batch)) if published else f"{c.text_s * 1e3:.1f} ms"
            vae = _part(g.vae_decode) if published else f"{c.vae_s * 1e3:.1f} ms"
            lines.append(
                f"| `{p.hardware.id}` | `{p.model.name}` | {p.source} | {dtype} | {g.resolution} px x {g.batch} | "
                f"{c.step_s * 1e3:.1f} ms{_mark(g.step) if published else ''} | {spread} | {text} | {vae} | {p.load_s:.2f} s | "
                f"{c.peak_bytes / GIB:.2f} GiB{_mark(g.peak_memory_bytes) if published else ''} | {nvml} | {energy} | {p.weights_bytes / GIB:.2f} GiB |"
            )
    return "\n".join(lines)


def _mark(f: Figure) -> str:
    return " (derived)" if f.basis == "derived" else ""


def _part(f: Figure) -> str:
    if f.basis == "included_in":
        return f"in {f.included_in}"
    return f"{f.value * 1e3:.1f} ms{_mark(f)}"


def listing_row(p: AnyProfile) -> tuple[str, ...]:
    """One line per profile for `bench list profiles`: hardware, model, source, dtype, resolutions, batches,
    first step time, largest spread (measured only) and date."""
    first = p.grid[0]
    if isinstance(p, PublishedProfile):
        dtype, spread, date = p.model.precision, "-", p.provenance.date[:10]
    else:
        dtype, spread, date = p.provenance.dtype, f"{max(g.step.spread for g in p.grid):.1%} max", p.provenance.date[:10]
    return (p.hardware.id, p.model.name, p.source, dtype, ",".join(map(str, p.resolutions)), ",".join(map(str, p.batches)),
            f"{first.step.median_s:.4g} ({first.resolution}px x{first.batch})", spread, date)


def _leaves(f: Figure) -> list[Figure]:
    """The figures printed in a source that `f` comes from."""
    if f.citation is not None:
        return [f]
    return [leaf for g in (f.inputs or ()) for leaf in _leaves(g)]


def published_figures(profiles: list[AnyProfile]) -> str:
    """Every number printed in a source that a published profile uses, once, with its conditions and citation."""
    head = "| figure as printed | GPU | conditions | includes | source | where | used by |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    seen: dict[tuple, list[str]] = {}
    rows: dict[tuple, tuple[Figure, PublishedProfile]] = {}
    for p in profiles:
        if not isinstance(p, PublishedProfile):
            continue
        for _, figure in p.figures():
            for leaf in _leaves(figure):
                key = (leaf.citation.source, leaf.citation.locator, leaf.published)
                seen.setdefault(key, [])
                name = f"{p.hardware.id}/{p.model.name}"
                if name not in seen[key]:
                    seen[key].append(name)
                rows.setdefault(key, (leaf, p))
    for key, (leaf, p) in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        src = next(s for s in p.sources if s.key == leaf.citation.source)
        where = f"{src.repository}: `{src.path}` @ {src.commit[:7]}" if src.repository else src.url
        c = leaf.conditions
        cond = ", ".join(x for x in (c.precision, c.software, f"{c.resolution} px" if c.resolution else "",
                                     f"{c.steps} steps" if c.steps else "", f"batch {c.batch}" if c.batch else "") if x and x != "-")
        printed = ", ".join(f"{x:g}" for x in leaf.published) + f" {leaf.unit}"
        used = ", ".join(f"`{u}`" for u in seen[key])
        lines.append(f"| {printed} | {c.gpu} | {cond or '-'} | {c.includes} | {src.title} ({where}) | {leaf.citation.locator} | {used} |")
    return "\n".join(lines)


def quality_figures(table) -> str:
    """Every published quality figure (profiles/quality.py) with its protocol and citation, and the acceptance windows."""
    head = "| model | steps | px | guidance | metric (protocol) | value | source | where |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for f in table.figures:
        p, src = table.protocol(f.protocol), table.source(f.citation.source)
        where = f"{src.repository}: `{src.path}` @ {src.commit[:7]}" if src.repository else src.url
        lines.append(f"| {f.model} ({f.architecture}) | {f.steps} | {f.resolution} | {f.guidance} | {p.metric.upper()} ({p.key}: {p.prompts}) | "
                     f"{f.value} | {src.title} ({where}) | {f.citation.locator} |")
    for w in table.windows:
        src = table.source(w.citation.source)
        lines.append(f"| acceptance window of {w.protocol} | - | - | - | reference {w.reference} ± {w.tolerance:.1%} | [{w.low}, {w.high}] | "
                     f"{src.title} | {w.citation.locator} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    figures = "--figures" in argv
    args = [a for a in argv if a != "--figures"]
    root = Path(args[0]) if args else Path("profiles/data")
    files = sorted(f for f in root.glob("*/*.json") if f.parent.name != LOAD_LATENCY_DIR)
    if not files:
        print(f"no profiles under {root}", file=sys.stderr)
        return 1
    from bench.core.errors import BenchError

    try:
        profiles = [load_profile(f) for f in files]
        print(published_figures(profiles) if figures else table(profiles))
        if figures and (root / "quality.json").is_file():
            from profiles.quality import load_quality

            print("\nQuality of variants (profiles/quality.py): comparable only within one protocol\n")
            print(quality_figures(load_quality(root / "quality.json")))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))

