"""The Plotly charts of a scenario page, as plain figure dicts (data + layout) for plotly.js.

Each entry label keeps one style on every chart of every page (style_map: built-ins first): a colour and a dash
(lines) with a marker symbol (points) that goes with the dash. 10 colours x 6 dashes keep 60 labels apart. Every chart is scaled to its
own scenario's data. Figures hold raw text; leaderboard/escaping.plotly_safe escapes every string when a
figure is written into a page (figure_html), so nothing here needs to escape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from leaderboard.escaping import esc, plotly_safe, script_json

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#edc948", "#ff9da7", "#6b6b6b")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star")  # the marker that goes with each dash
PATTERNS = ("", "/", ".", "x", "-", "+")  # the bar fill pattern that goes with each dash
SWATCH_DASHES = {"solid": "", "dash": "5,3", "dot": "1.5,2.5", "dashdot": "5,2,1.5,2", "longdash": "9,3", "longdashdot": "9,2,1.5,2"}
PARTS = ("upload", "wait", "compute", "download")
FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"


@dataclass(frozen=True)
class Style:
    color: str
    dash: str
    symbol: str
    pattern: str

    def swatch(self) -> str:
        """A small inline SVG line in this colour and dash, for tables beside the charts."""
        dash = f' stroke-dasharray="{SWATCH_DASHES[self.dash]}"' if SWATCH_DASHES[self.dash] else ""
        return (f'<svg class="swatch" width="24" height="10" aria-hidden="true"><line x1="1" y1="5" x2="23" y2="5" stroke="{self.color}" '
                f'stroke-width="3"{dash}/></svg>')


def styles(n: int) -> list[Style]:
    """n styles, all (colour, dash) pairs distinct up to len(PALETTE) * len(DASHES) entries (then they repeat)."""
    k = len(PALETTE)
    return [Style(PALETTE[i % k], DASHES[(i // k) % len(DASHES)], SYMBOLS[(i // k) % len(SYMBOLS)], PATTERNS[(i // k) % len(PATTERNS)]) for i in range(n)]


def style_map(labels: list[str], first: list[str]) -> dict[str, Style]:
    """One style per label for the whole site, so a scheduler looks the same on every page: the labels in `first`
    (the built-ins, in registry order) take the first styles whether or not they are present, the others follow
    in sorted order."""
    order = list(dict.fromkeys([*first, *sorted(set(labels) - set(first))]))
    return dict(zip(order, styles(len(order))))


@dataclass
class Series:
    """One entry as the charts see it."""

    label: str
    style: Style
    mean: float
    ci: tuple[float, float] | None
    p95: float
    on_front: bool = False
    quantiles: np.ndarray | None = None  # task delay at `levels` (all evaluation tasks)
    curve: tuple[np.ndarray, np.ndarray] | None = None  # training episode, smoothed mean delay
    parts: dict[str, float] = field(default_factory=dict)
    note: str = ""  # a line added to the hover text (e.g. what opt-ts is)

    def hover(self, *lines: str) -> list[str]:
        """The hover lines of a point (customdata; shown by hover_template(len(lines) + 1))."""
        return [self.label + (f" ({self.note})" if self.note else ""), *lines]


def hover_template(lines: int) -> str:
    """The charts' only markup: a point's hover lines, customdata[0..lines-1], one per line; the data is escaped."""
    return "<br>".join(f"%{{customdata[{k}]}}" for k in range(lines)) + "<extra></extra>"


def _layout(title: str, height: int, **extra) -> dict:
    axis = {"gridcolor": "#e6e9ef", "zeroline": False, "linecolor": "#c9ced6", "automargin": True}
    layout = {
        "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}},
        "height": height,
        "margin": {"t": 48, "l": 60, "r": 20, "b": 56},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "font": {"family": FONT, "size": 12, "color": "#1d2330"},
        "hoverlabel": {"namelength": -1},
        "legend": {"itemclick": "toggleothers", "itemdoubleclick": "toggle"},
        "xaxis": dict(axis),
        "yaxis": dict(axis),
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _entry_axis(series: list[Series]) -> dict:
    """A y axis with one row per entry, the first at the top (numeric positions: equal labels stay apart)."""
    return {"tickmode": "array", "tickvals": list(range(len(series))), "ticktext": [s.label for s in series], "autorange": "reversed", "showgrid": False}


def _legend_height(traces: int, least: int) -> int:
    """Tall enough for a legend of `traces` rows without scrolling."""
    return max(least, 150 + 24 * traces)


def _padded(lo: float, hi: float, pad: float = 0.06) -> list[float]:
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    return [lo - pad * span, hi + pad * span]


def mean_chart(series: list[Series]) -> dict:
    """Mean delay of each entry with its 95% interval, as dots on an axis scaled to the intervals (not from 0)."""
    data = []
    for i, s in enumerate(series):
        lo, hi = s.ci if s.ci else (s.mean, s.mean)
        data.append({
            "type": "scatter", "mode": "markers", "x": [s.mean], "y": [i], "name": s.label, "showlegend": False,
            "marker": {"color": s.style.color, "symbol": s.style.symbol, "size": 10},
            "error_x": {"type": "data", "symmetric": False, "array": [hi - s.mean], "arrayminus": [s.mean - lo], "color": s.style.color, "thickness": 2, "width": 5},
            "customdata": [s.hover(f"mean {s.mean:.3f} s", f"95% interval [{lo:.3f}, {hi:.3f}]" if s.ci else "no interval")],
            "hovertemplate": hover_template(3),
        })
    lows = [s.ci[0] if s.ci else s.mean for s in series]
    highs = [s.ci[1] if s.ci else s.mean for s in series]
    xr = _padded(min(lows), max(highs)) if series else None
    return {"data": data, "layout": _layout(
        "Mean task delay with its 95% interval (axis scaled to the data, not from 0)", 90 + 30 * len(series),
        xaxis={"title": {"text": "mean task delay (s)"}, **({"range": xr} if xr else {})}, yaxis=_entry_axis(series), margin={"l": 10},
    )}


def leading(series: list[Series]) -> list[Series]:
    """The better half of the entries by mean delay (at least 2), shown enlarged beside the whole field."""
    return sorted(series, key=lambda s: s.mean)[: max(2, (len(series) + 1) // 2)]


def pareto_chart(series: list[Series]) -> dict:
    """Mean against p95 delay; the front (no other entry lower on both) joined by a line, its entries ringed.

    With 4 entries or more a second panel enlarges the better half by mean, where the trade-offs among the
    leading entries would otherwise be a single dot."""
    zoom = leading(series) if len(series) >= 4 else []
    panels = [("x", "y")] + ([("x2", "y2")] if zoom else [])
    front = sorted((s for s in series if s.on_front), key=lambda s: s.mean)
    data = []
    for xa, ya in panels:
        first = xa == "x"
        if front:
            data.append({
                "type": "scatter", "mode": "lines+markers", "x": [s.mean for s in front], "y": [s.p95 for s in front], "xaxis": xa, "yaxis": ya,
                "name": "front: no other entry lower on both", "legendgroup": "front", "showlegend": first,
                "line": {"color": "#9aa3ae", "dash": "dot", "width": 1.5, "shape": "hv"},
                "marker": {"symbol": "circle-open", "size": 20, "color": "#1d2330", "line": {"width": 1.5}}, "hoverinfo": "skip",
            })
        for s in series:
            data.append({
                "type": "scatter", "mode": "markers", "x": [s.mean], "y": [s.p95], "xaxis": xa, "yaxis": ya, "name": s.label, "legendgroup": s.label, "showlegend": first,
                "marker": {"color": s.style.color, "symbol": s.style.symbol, "size": 11, "line": {"width": 1, "color": "#ffffff"}},
                "customdata": [s.hover(f"mean {s.mean:.3f} s, p95 {s.p95:.3f} s", "on the mean/p95 front" if s.on_front else "another entry is lower on both")],
                "hovertemplate": hover_template(3),
            })
    grid = {"gridcolor": "#e6e9ef", "zeroline": False, "linecolor": "#c9ced6", "automargin": True}
    xtitle, ytitle = {"text": "mean task delay (s)"}, {"text": "p95 task delay (s, mean over episodes)"}
    extra: dict = {"xaxis": {"title": xtitle, "domain": [0.0, 0.47 if zoom else 1.0]}, "yaxis": {"title": ytitle}}
    if zoom:
        extra["xaxis2"] = {**grid, "title": xtitle, "domain": [0.55, 1.0], "anchor": "y2", "range": _padded(min(s.mean for s in zoom), max(s.mean for s in zoom), 0.12)}
        extra["yaxis2"] = {**grid, "anchor": "x2", "range": _padded(min(s.p95 for s in zoom), max(s.p95 for s in zoom), 0.12)}
        extra["annotations"] = [
            {"text": "all entries", "x": 0.0, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": "left", "yanchor": "bottom", "showarrow": False},
            {"text": f"the better half by mean ({len(zoom)} entries), enlarged", "x": 0.55, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": "left", "yanchor": "bottom", "showarrow": False},
        ]
    return {"data": data, "layout": _layout(
        "Mean against p95 delay: the trade-off between the average and the tail", _legend_height(len(series) + 1, 460), margin={"t": 70}, **extra,
    )}


def cdf_chart(series: list[Series], levels: np.ndarray) -> dict:
    """The distribution of all evaluation tasks' delays on a log delay axis (buttons switch to linear), from the
    smallest 0.5th to the largest 99.5th percentile of this scenario's entries."""
    data, head, tail = [], np.inf, 0.0
    i005, i995 = int(np.argmin(np.abs(levels - 0.005))), int(np.argmin(np.abs(levels - 0.995)))
    for s in series:
        if s.quantiles is None:
            continue
        head, tail = min(head, float(s.quantiles[i005])), max(tail, float(s.quantiles[i995]))
        data.append({
            "type": "scatter", "mode": "lines", "x": s.quantiles, "y": levels, "name": s.label, "legendgroup": s.label,
            "line": {"color": s.style.color, "dash": s.style.dash, "width": 2},
            "customdata": [[s.label]] * len(levels), "hovertemplate": "%{customdata[0]}<br>%{y:.1%} of tasks within %{x:.3f} s<extra></extra>",
        })
    xaxis: dict = {"title": {"text": "task delay (s)"}}
    extra: dict = {}
    if tail > 0:
        linear = [0.0, tail * 1.03]
        xaxis.update(type="linear", range=linear)
        if 0 < head < tail:
            log = [float(np.log10(head)) - 0.05, float(np.log10(tail)) + 0.02]
            xaxis.update(type="log", range=log)
            extra["updatemenus"] = [{
                "type": "buttons", "direction": "right", "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "bottom", "pad": {"b": 4}, "showactive": True,
                "buttons": [{"label": "log delay axis", "method": "relayout", "args": [{"xaxis.type": "log", "xaxis.range": log}]},
                            {"label": "linear delay axis", "method": "relayout", "args": [{"xaxis.type": "linear", "xaxis.range": linear}]}],
            }]
    return {"data": data, "layout": _layout(
        "Distribution of task delays (all evaluation tasks; axis from the smallest 0.5th to the largest 99.5th percentile: double-click to see all)",
        _legend_height(len(data), 460), xaxis=xaxis, yaxis={"title": {"text": "fraction of tasks"}, "range": [0, 1.02]}, margin={"t": 84}, **extra,
    )}


def curves_chart(series: list[Series], window: int) -> dict:
    data = []
    for s in series:
        if s.curve is None:
            continue
        x, y = s.curve
        data.append({
            "type": "scatter", "mode": "lines", "x": x, "y": y, "name": s.label, "legendgroup": s.label,
            "line": {"color": s.style.color, "dash": s.style.dash, "width": 2},
            "customdata": [[s.label]] * len(x), "hovertemplate": "%{customdata[0]}<br>episode %{x}: %{y:.3f} s<extra></extra>",
        })
    return {"data": data, "layout": _layout(
        f"Learning curves: mean delay per training episode ({window}-episode moving average, mean over seeds)", _legend_height(len(data), 420),
        xaxis={"title": {"text": "training episode"}}, yaxis={"title": {"text": "mean task delay (s)"}},
    )}


def parts_chart(series: list[Series]) -> dict:
    """Small multiples: one panel per delay part, each with its own axis, so a part of milliseconds shows beside one of seconds."""
    n = len(series)
    gap = 0.04
    width = (1.0 - gap * (len(PARTS) - 1)) / len(PARTS)
    data, annotations, axes = [], [], {}
    for k, part in enumerate(PARTS):
        suffix = "" if k == 0 else str(k + 1)
        lo = k * (width + gap)
        values = [s.parts.get(part, float("nan")) for s in series]
        finite = [v for v in values if np.isfinite(v)]
        data.append({
            "type": "bar", "orientation": "h", "x": values, "y": list(range(n)), "xaxis": f"x{suffix}", "yaxis": "y", "showlegend": False, "name": part,
            # "replace" with per-bar arrays: plotly.js warned "Invalid color specifier" once per bar for an "overlay"
            # pattern over an array of bar colours (36 console warnings a page)
            "marker": {"color": [s.style.color for s in series], "pattern": {
                "shape": [s.style.pattern for s in series], "fgcolor": ["#ffffff"] * n, "bgcolor": [s.style.color for s in series], "fillmode": "replace", "size": 6}},
            "customdata": [s.hover(f"{part}: {v * 1000:.2f} ms" if np.isfinite(v) else f"{part}: –") for s, v in zip(series, values)],
            "hovertemplate": hover_template(2),
        })
        axes[f"xaxis{suffix}"] = {"domain": [lo, lo + width], "anchor": "y", "gridcolor": "#e6e9ef", "zeroline": False, "automargin": True,
                                  "title": {"text": "seconds"}, "rangemode": "tozero", **({"range": [0, max(finite) * 1.08]} if finite and max(finite) > 0 else {})}
        annotations.append({"text": part, "x": lo + width / 2, "y": 1.0, "xref": "paper", "yref": "paper", "yanchor": "bottom", "showarrow": False, "font": {"size": 13}})
    layout = _layout("Delay parts: mean seconds per task, each part on its own scale", 110 + 26 * n, yaxis=_entry_axis(series), annotations=annotations, bargap=0.25, margin={"l": 10, "t": 70})
    layout.pop("xaxis")
    layout.update(axes)
    return {"data": data, "layout": layout}


def figure_html(figure: dict, div_id: str) -> str:
    """A chart's <div> and the <script> that draws it; every string escaped for Plotly, the JSON for <script>."""
    payload = script_json(plotly_safe(figure))
    return (
        f'<div class="chart" id="{esc(div_id)}"></div>\n'
        f"<script>(function(){{var f={payload};Plotly.newPlot({script_json(div_id)},f.data,f.layout,{{displaylogo:false,responsive:true}});}})();</script>\n"
    )


def seeds_chart(label: str, style: Style, per_seed: list[tuple[int, float]], reference: tuple[str, Style, list[tuple[int, float]]] | None) -> dict:
    """An entry page's chart: its mean delay per seed, beside the scenario's opt-ts on the same seeds (a reference,
    not an optimum), so a reader sees the spread that the interval summarises."""
    def trace(name: str, st: Style, points: list[tuple[int, float]], size: int) -> dict:
        return {"type": "scatter", "mode": "markers", "x": [str(s) for s, _ in points], "y": [v for _, v in points], "name": name,
                "marker": {"color": st.color, "symbol": st.symbol, "size": size, "line": {"width": 1, "color": "#ffffff"}},
                "customdata": [[name, f"seed {s}", f"mean delay {v:.3f} s"] for s, v in points], "hovertemplate": hover_template(3)}

    data = [trace(label, style, per_seed, 12)]
    if reference is not None:
        data.insert(0, trace(f"{reference[0]} (reference)", reference[1], reference[2], 9))
    return {"data": data, "layout": _layout("Mean delay per seed", 320, xaxis={"title": {"text": "seed"}, "type": "category"},
                                            yaxis={"title": {"text": "mean task delay (s)"}, "rangemode": "tozero"})}


def sim_to_real_chart(rows: list[tuple[str, float, float]]) -> dict:
    """A live entry's measured and simulated seconds side by side (per delay statistic and per part, as the run
    reported them), one panel per group of rows so that milliseconds show beside seconds."""
    groups = [("delay", [r for r in rows if not r[0].endswith(" part")]), ("parts", [r for r in rows if r[0].endswith(" part")])]
    groups = [(g, rs) for g, rs in groups if rs]
    data, axes, gap = [], {}, 0.08
    width = (1.0 - gap * (len(groups) - 1)) / max(len(groups), 1)
    for k, (group, rs) in enumerate(groups):
        suffix = "" if k == 0 else str(k + 1)
        for name, color, column in (("measured", "#1d2330", 1), ("simulated", "#4e79a7", 2)):
            data.append({"type": "bar", "x": [r[0] for r in rs], "y": [r[column] for r in rs], "name": name, "legendgroup": name,
                         "showlegend": k == 0, "marker": {"color": color}, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                         "customdata": [[name, r[0], f"{r[column]:.4f} s"] for r in rs], "hovertemplate": hover_template(3)})
        lo = k * (width + gap)
        axes[f"xaxis{suffix}"] = {"domain": [lo, lo + width], "anchor": f"y{suffix}", "automargin": True}
        axes[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", "title": {"text": "seconds"}, "rangemode": "tozero", "gridcolor": "#e6e9ef", "automargin": True}
    layout = _layout("Measured and simulated (as the run reported them)", 360, barmode="group")
    layout.update(axes)
    return {"data": data, "layout": layout}


def quality_chart(series: list[Series], quality: list[float], floor: float | None, lower_is_better: bool, metric: str) -> dict:
    """Mean delay against mean quality (serving scenarios, docs/serving.md): one point per entry, the quality axis
    turned so that better is up, the scenario's floor as a line. Two metrics side by side, never one score."""
    data = []
    for s, q in zip(series, quality):
        data.append({
            "type": "scatter", "mode": "markers", "x": [s.mean], "y": [q], "name": s.label,
            "marker": {"color": s.style.color, "symbol": s.style.symbol, "size": 12, "line": {"width": 1, "color": "#ffffff"}},
            "customdata": [s.hover(f"mean delay {s.mean:.3f} s", f"mean {metric} {q:.3f}")], "hovertemplate": hover_template(3),
        })
    shapes = []
    if floor is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": floor, "y1": floor, "line": {"color": "#9aa3ae", "dash": "dash", "width": 1.5}})
    better = "lower is better: up" if lower_is_better else "higher is better: up"
    ys = [q for q in quality] + ([floor] if floor is not None else [])
    yr = _padded(min(ys), max(ys), 0.12) if ys else None
    annotations = [{"text": f"quality floor {floor:g}", "x": 1.0, "y": floor, "xref": "paper", "yref": "y", "xanchor": "right", "yanchor": "bottom",
                    "showarrow": False, "font": {"color": "#5b6470"}}] if floor is not None else []
    return {"data": data, "layout": _layout(
        "Latency against quality: each entry's mean delay and the mean published quality of the variants it served", _legend_height(len(series), 460),
        xaxis={"title": {"text": "mean task delay (s)"}, "type": "log"},
        yaxis={"title": {"text": f"mean {metric} ({better})"}, **({"range": yr[::-1] if lower_is_better else yr} if yr else {})},
        shapes=shapes, annotations=annotations,
    )}
