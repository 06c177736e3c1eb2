"""How the tables and figures show numbers: one set of conventions for every table and caption.

* A metric is *raw* (perplexity-like: lower is better, shown as is, 4 decimals) when its bare name
  contains ``perplexity``, ``bits_per_byte``, ``bpb`` or ``loss``; every other metric is an
  accuracy-like fraction in [0, 1], shown in percent with 1 decimal.
* Token counts (and parameter counts) are shown humanised: ``1.2M``, ``15B``.
* Differences are signed (``+2.0``); a relative change is a signed percentage (``-40%``).
* Tables are written as Markdown (pandas + tabulate) and as a booktabs LaTeX ``tabular``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

RAW_METRIC_MARKERS = ("perplexity", "bits_per_byte", "bpb", "loss")
#: Columns holding counts (tokens, parameters), shown humanised; matched case-insensitively.
COUNT_COLUMNS = ("train", "uniq", "parameters")


def is_raw_metric(metric: str) -> bool:
    """True for perplexity/bits/loss metrics (shown raw, lower is better)."""
    base = metric.split(",", 1)[0].lower()
    return any(marker in base for marker in RAW_METRIC_MARKERS)


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def display_value(value: float, metric: str) -> float:
    """A metric's value in display units: percent for accuracy-like metrics, raw for perplexity-like."""
    return value if is_raw_metric(metric) else 100.0 * value


def round_metric(value: float | None, metric: str) -> float:
    """A display value rounded as shown: 4 decimals for raw metrics, 1 for percentages; NaN if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return round(value, 4 if is_raw_metric(metric) else 1)


def format_metric(value: float, metric: str, *, signed: bool = False) -> str:
    """A rounded display value as text (``"31.3"``, ``"0.3740"``, ``"+2.0"``); empty when missing."""
    if is_missing(value):
        return ""
    return format(value, ("+" if signed else "") + (".4f" if is_raw_metric(metric) else ".1f"))


def human_tokens(n: Any) -> str:
    """Token counts as 1.2M / 15B (empty for a missing value; text as given)."""
    if isinstance(n, str):
        return n
    if is_missing(n):
        return ""
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def relative_change(new: Any, old: Any) -> str:
    """``(new - old) / old`` as a signed percentage (``"-40%"``); empty when either is missing or old is 0."""
    if is_missing(new) or is_missing(old) or float(old) == 0:
        return ""
    return f"{(float(new) - float(old)) / float(old):+.0%}"


def is_count_column(column: str) -> bool:
    """A column of token or parameter counts (shown humanised)."""
    lower = str(column).lower()
    return "token" in lower or lower in COUNT_COLUMNS


def format_cell(value: Any, column: str, *, signed: bool = False) -> str:
    """A table cell whose column alone says how to show it: counts humanised, numbers with 1 decimal when
    that is exact, else up to 4; text as is; empty when missing."""
    if is_missing(value):
        return ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if is_count_column(column):
        return human_tokens(value)
    sign = "+" if signed else ""
    if abs(value * 10 - round(value * 10)) < 1e-9:
        return format(value, sign + ".1f")
    return format(value, sign + ".4f").rstrip("0").rstrip(".")


def bare_column(column: str) -> str:
    """``"gsm8k_cot [exact_match,strict-match]"`` -> ``"gsm8k_cot"`` (the results table's task headers)."""
    column = str(column)
    return column.split(" [", 1)[0] if column.endswith("]") and " [" in column else column


def join_names(items: Iterable[Any]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [str(i) for i in items]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def markdown(df: pd.DataFrame, **kwargs) -> str:
    """``df`` as a Markdown table (tabulate), newline-terminated."""
    return df.to_markdown(**kwargs) + "\n"


def latex_escape(text: str) -> str:
    out = []
    for ch in str(text):
        if ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        elif ch == "Δ":
            out.append(r"$\Delta$")
        elif ch == "−":  # U+2212 minus sign
            out.append(r"$-$")
        else:
            out.append(ch)
    return "".join(out)


def latex_table(
    shown: pd.DataFrame, notes: Sequence[tuple[str, str]], *, n_measured: int, numeric: Sequence[bool]
) -> str:
    """A booktabs ``tabular`` of already formatted cells, a rule after the first ``n_measured`` rows (this
    run's rows above the paper's), ``notes`` (key, text) as ``%`` comments above it."""
    cols = list(shown.columns)
    lines = [f"% {k}: {v}" for k, v in notes]
    lines.append(r"\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}")
    lines.append(r"\toprule")
    lines.append(" & ".join(latex_escape(c) for c in cols) + r" \\")
    lines.append(r"\midrule")
    for i, row in enumerate(shown.itertuples(index=False, name=None)):
        if i == n_measured and i > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_escape(v) for v in row) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"
