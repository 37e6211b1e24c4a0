"""Making untrusted text safe where the site puts it: HTML, Plotly's text markup, <script> blocks, CSV cells.

Every string that comes from a bundle or a submission (entry names, descriptions, parameters, host names)
reaches the site through one of these:

    esc           HTML text and attribute values
    inline_code   HTML text with `code` spans rendered as <code> (escaped first, so only our tags are live)
    plotly_safe   every string of a Plotly figure: Plotly renders <a>, <b>, <br>, <i>, <sub>, <sup>, <span>
                  in trace names, hover text, annotations and axis titles, so < > & become HTML entities
                  (Plotly shows &lt; as "<" without interpreting it); hovertemplate is the exception: it is
                  written by leaderboard/charts.py only and refers to data by %{...}
    script_json   JSON inside a <script> element: <, > and & as \\u003c, \\u003e, \\u0026 (no "</script>",
                  "<!--" or "<script" can appear), U+2028/2029 escaped, NaN as null
    csv_safe      text cells that a spreadsheet would run as a formula (starting with = + - @ tab CR) get a
                  leading single quote; numeric columns are left as numbers
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

import numpy as np
import polars as pl

_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_FORMULA_START = r"^[=+\-@\t\r]"
PLOTLY_TEMPLATE_KEYS = frozenset({"hovertemplate"})  # written by charts.py only; never holds submitted text


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def inline_code(text: str) -> str:
    """HTML of plain text whose `backtick spans` become <code> elements; everything else is escaped."""
    return _CODE_SPAN.sub(r"<code>\1</code>", esc(text))


def plotly_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plotly_safe(obj: Any, key: str | None = None) -> Any:
    """A copy of a figure (nested dicts and lists) with every string Plotly-escaped, arrays as lists, NaN as None."""
    if isinstance(obj, str):
        return obj if key in PLOTLY_TEMPLATE_KEYS else plotly_text(obj)
    if isinstance(obj, dict):
        return {k: plotly_safe(v, k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plotly_safe(v, key) for v in obj]
    if isinstance(obj, np.ndarray):
        return plotly_safe(obj.tolist(), key)
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def script_json(obj: Any) -> str:
    """JSON that can sit inside a <script> element whatever its strings hold."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    # ensure_ascii already writes U+2028/2029 as \u2028/\u2029; < > & appear only inside JSON strings
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csv_safe(df: pl.DataFrame) -> pl.DataFrame:
    """The frame with every text cell that starts like a spreadsheet formula prefixed by a single quote."""
    text = [name for name, dtype in df.schema.items() if dtype in (pl.String, pl.Categorical, pl.Enum)]
    return df.with_columns(
        pl.when(pl.col(c).cast(pl.String).str.contains(_FORMULA_START)).then(pl.lit("'") + pl.col(c).cast(pl.String)).otherwise(pl.col(c).cast(pl.String)).alias(c)
        for c in text
    )
