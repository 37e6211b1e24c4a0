"""`bench trace import` and `bench trace info`: convert a public request trace, and look at a canonical one."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.common import fail, guarded, out


def trace_import(
    src: Path = typer.Argument(..., help="your copy of the trace in its raw format (see docs/workloads.md for where to get it)"),
    format_: str = typer.Option(..., "--format", "-f", help="raw format: gentd26 (Alibaba GenTD26 lora_request_trace.csv) or azure-llm-2023 (AzureLLMInferenceTrace_*.csv)"),
    out_path: Path = typer.Option(..., "--out", "-o", help="the canonical trace to write (.parquet)"),
    force: bool = typer.Option(False, "--force", help="replace an existing file at --out"),
    keep_type: Optional[List[str]] = typer.Option(None, "--keep-type", help="gentd26: request types to keep (repeatable; default TXT_2_IMG; 'all' keeps every type)"),
    keep_status: Optional[List[str]] = typer.Option(None, "--keep-status", help="gentd26: request statuses to keep (repeatable; default SUCCEED; 'all' keeps every status)"),
    drop_duplicates: bool = typer.Option(False, "--drop-duplicates", help="drop rows equal, field for field, to an earlier kept row (default: keep and count them)"),
) -> None:
    """Convert a public request trace to the suite's canonical format; print what was kept and dropped, and why."""
    from tasks.traces import import_trace

    report = guarded(lambda: import_trace(format_, src, out_path, force=force, keep_types=keep_type, keep_statuses=keep_status, drop_duplicates=drop_duplicates))
    t = Table(title=f"{report.source_format}: {escape(report.source)}", title_justify="left", header_style="bold")
    t.add_column("rows")
    t.add_column("count", justify="right")
    t.add_row("read", f"{report.rows_read:,}")
    for reason, count in report.dropped.items():
        t.add_row(f"dropped: {escape(reason)}", f"{count:,}")
    t.add_row("[bold]kept[/]", f"[bold]{report.rows_kept:,}[/]")
    t.add_row("exact duplicates among kept" + (" (dropped above)" if drop_duplicates else " (kept)"), f"{report.duplicates:,}")
    out.print(t)
    out.print(f"span {report.span_s:,.1f} s ({report.span_s / 3600:.2f} h); source SHA-256 {report.source_sha256}", highlight=False)
    out.print(f"rules: {escape(report.rules)}", highlight=False, soft_wrap=True)
    out.print(f"wrote {escape(str(report.out))} (SHA-256 {report.out_sha256})", highlight=False, soft_wrap=True)


def trace_info(
    trace: str = typer.Argument(..., help="a canonical trace file (.parquet or .csv) or a shipped trace name (azure-llm-2023-code, azure-llm-2023-conv)"),
    window_s: Optional[float] = typer.Option(None, "--window-s", help="also cut episode windows of this many seconds and list their request counts"),
    train_fraction: float = typer.Option(0.8, "--train-fraction", help="share of the trace's time span used for training windows (the rest, later, for evaluation)"),
    min_requests: int = typer.Option(1, "--min-requests", help="leave out windows with fewer requests"),
    time_scale: float = typer.Option(1.0, "--time-scale", help="speed the trace up by this factor before cutting windows"),
) -> None:
    """Validate a canonical trace and summarise it: requests, span, rate, inter-arrival CV, columns, provenance."""
    import numpy as np

    from tasks.traces import episode_windows, read_trace, request_rate, resolve_trace, speed_up, trace_sha256

    def load():
        path = resolve_trace(trace)
        return path, speed_up(read_trace(path), time_scale)

    path, tr = guarded(load)
    gaps = np.diff(tr.arrival_s)
    t = Table(title=escape(str(path.name)), title_justify="left", header_style="bold", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("requests", f"{tr.n_requests:,}")
    t.add_row("span (s)", f"{tr.span_s:,.3f}" + (f" (time scale {time_scale:g})" if time_scale != 1.0 else ""))
    if tr.n_requests >= 2 and tr.span_s > 0:
        t.add_row("mean rate (requests/s)", f"{request_rate(tr):.6g}")
        t.add_row("inter-arrival CV", f"{gaps.std() / gaps.mean():.4g}")
    t.add_row("columns", ", ".join(tr.columns))
    if tr.model is not None:
        t.add_row("models", f"{np.unique(tr.model).size}")
    for key, value in tr.metadata.items():
        t.add_row(escape(key), escape(value))
    t.add_row("file SHA-256", guarded(lambda: trace_sha256(path)))
    out.print(t)
    if window_s is None:
        return
    if min_requests < 0:
        fail(f"--min-requests = {min_requests} is not allowed; expected an integer >= 0")
    w = guarded(lambda: episode_windows(tr, window_s, train_fraction=train_fraction, min_requests=min_requests))
    out.print(f"windows of {window_s:g} s; split at {w.split_s:,.1f} s; {len(w.train)} training, {len(w.eval)} evaluation, "
              f"{w.skipped} left out (< {min_requests} requests)", highlight=False)
    for name, windows in (("training", w.train), ("evaluation", w.eval)):
        if not windows:
            continue
        counts = np.array([x.count for x in windows])
        table = Table(title=f"{name} windows: requests per window (min {counts.min()}, median {np.median(counts):g}, max {counts.max()})",
                      title_justify="left", header_style="bold")
        for col in ("#", "start (s)", "end (s)", "requests"):
            table.add_column(col, justify="right")
        for i, x in enumerate(windows):
            table.add_row(str(i), f"{x.start_s:,.1f}", f"{x.end_s:,.1f}", f"{x.count:,}")
        out.print(table)
