"""`bench profile`: measure what a request of a zoo model costs on this machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from bench.cli.common import err, fail, guarded, out
from bench.core.io import read_marker, write_marker


def profile(
    model: str = typer.Option(..., "--model", help="zoo model (bench list models)"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N"),
    resolutions: Optional[List[int]] = typer.Option(None, "--resolutions", help="image sides in px (repeatable; default: see docs/profiles.md)"),
    batch_sizes: Optional[List[int]] = typer.Option(None, "--batch-sizes", help="images per request (repeatable)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU)"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="measured calls per timing (default 20; 30 for tiny models)"),
    warmup: int = typer.Option(2, "--warmup", help="unmeasured calls before each timing"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads on CPU (default: torch's)"),
    no_guidance: bool = typer.Option(False, "--no-guidance", help="measure without classifier-free guidance (batch, not 2 x batch, latents)"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="a local diffusers pipeline directory of real weights (default: random weights)"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="the profile file to write (JSON)"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="instead of --out: write DIR/<hardware id>/<model>.json (the layout of shipped profiles and servers.profile_dirs)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing file"),
) -> None:
    """Measure what a request of MODEL costs on this machine and write a profile file."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from profiles.profiler import check_request, default_request, grid_size, profile_model
    from profiles.schema import save_profile
    from profiles.zoo import get_model

    if (out_file is None) == (out_dir is None):
        fail("--out and --out-dir: expected exactly one of them")
    if out_file is not None and out_file.exists() and not overwrite:
        fail(f"--out = {out_file} is not allowed: it exists; expected a new path, or --overwrite")
    spec = guarded(lambda: get_model(model))
    req = default_request(
        spec, device, dtype=dtype, repeats=repeats, warmup=warmup, threads=threads, weights=weights,
        resolutions=tuple(resolutions) if resolutions else None, batches=tuple(batch_sizes) if batch_sizes else None,
        guidance=False if no_guidance else None,
    )
    req = dataclasses.replace(req, command=_profile_command(req))
    guarded(lambda: check_request(req))
    if out_dir is not None:  # the path depends on the hardware id: known before measuring, so check it now
        from profiles.profiler import Device

        hw = Device(req.device).hardware(req.threads or torch.get_num_threads())
        out_file = out_dir / hw.id / f"{model}.json"
        if out_file.exists() and not overwrite:
            fail(f"--out-dir: {out_file} exists; expected --overwrite to replace it")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        task = bar.add_task(f"{model} on {device}", total=grid_size(req))

        def advance(stage: str) -> None:
            bar.update(task, advance=1, description=f"{model} on {device}: {stage}")

        result = guarded(lambda: profile_model(req, progress=advance))
    try:
        if out_dir is not None and read_marker(out_dir) is None:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_marker(out_dir, "profiles")
        save_profile(result, out_file)
    except OSError as exc:
        fail(f"--out = {out_file} is not allowed: it cannot be written ({exc.strerror}); expected a writable path")
    worst = max(g.step.spread for g in result.grid)
    _print_profile(result)
    out.print(f"wrote {out_file} ({result.hardware.id}, {len(result.grid)} grid points, per-step spread at most {worst:.1%})")
    if worst > 0.05:
        err.print(f"[yellow]note:[/] a per-step spread above 5% ({worst:.1%}): the machine was busy or its clocks vary; "
                  "medians are kept, but consider more --repeats, --threads 1 on a shared CPU, or a quieter machine", highlight=False)


def _print_profile(p: Any) -> None:
    """What was measured, per grid point: the numbers the profile file holds."""
    gib = 2**30
    t = Table(title=f"{p.model.name} on {p.hardware.id} ({p.provenance.dtype}; load {p.load_s:.2f} s, weights {p.weights_bytes / gib:.2f} GiB)",
              title_justify="left", header_style="bold")
    for col in ("resolution", "batch", "step (median)", "spread", "text encoding", "VAE decode", "peak memory", "energy / step"):
        t.add_column(col, justify="right")
    for g in p.grid:
        c = p.costs_at(g.resolution, g.batch)
        energy = f"{c.energy_j_per_step:.2f} J" if c.energy_j_per_step is not None else "-"
        t.add_row(f"{g.resolution} px", str(g.batch), f"{c.step_s * 1e3:.1f} ms", f"{g.step.spread:.1%}", f"{c.text_s * 1e3:.1f} ms",
                  f"{c.vae_s * 1e3:.1f} ms", f"{c.peak_bytes / gib:.2f} GiB", energy)
    out.print(t)


def _profile_command(req: Any) -> str:
    """The effective command of a profile run (every default resolved), recorded in its provenance."""
    parts = ["bench profile", f"--model {req.spec.name}", f"--device {req.device}", f"--dtype {req.dtype}",
             *(f"--resolutions {r}" for r in req.resolutions), *(f"--batch-sizes {b}" for b in req.batches),
             f"--repeats {req.repeats}", f"--warmup {req.warmup}"]
    if req.threads is not None:
        parts.append(f"--threads {req.threads}")
    if not req.guidance:
        parts.append("--no-guidance")
    if req.weights is not None:
        parts.append(f"--weights {req.weights}")
    return " ".join(parts)
