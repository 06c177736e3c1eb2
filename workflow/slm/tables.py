"""Result tables in the shape of the Rho-1 paper's Table 1, the Figure-1 data, and token selection rates.

Inputs are the compact evaluation JSONs of :mod:`slm.evaluate` and the trainer's stats JSONs::

    {"run": "slm", "ratio": 0.6, "unit": "batch", "steps": 400,
     "tokens_seen": 1638400, "tokens_loss_bearing": 1632000, "tokens_selected": 979200,
     "kind_names": ["other", "math", ...], "kinds": {"math": {"seen": 800000, "selected": 700000}, ...},
     "tokens_per_second": 9500.0}

Display conventions (shared by all tables):

* A metric is shown *raw* (rounded to 4 decimals) when its bare name is perplexity-like
  (contains ``perplexity``, ``bits_per_byte``, ``bpb`` or ``loss``); every other metric is
  an accuracy-like fraction in [0, 1] and is shown as a percentage with 1 decimal.
* Perplexity-like columns count as lower-is-better even when not listed in ``lower_is_better``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from slm.evaluate import headline_metric
from slm.io import atomic_write_text, read_json

RAW_METRIC_MARKERS = ("perplexity", "bits_per_byte", "bpb", "loss")
AVG_COL = "AVG"
TRAIN_COL = "Train tokens"
SEEN_COL = "Seen tokens"
DELTA_ROW = "Δ (SLM − CLM)"
SHARE_COL = "share of tokens (%)"
ALL_ROW = "all"


# --------------------------------------------------------------------------- loading
def is_raw_metric(metric: str) -> bool:
    """True for perplexity/bits/loss metrics (shown raw, lower is better)."""
    base = metric.split(",", 1)[0].lower()
    return any(marker in base for marker in RAW_METRIC_MARKERS)


def load_eval(path: str | Path) -> dict:
    """Read a compact evaluation JSON, checking its shape; errors name the file."""
    data = read_json(path, "evaluation JSON")
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise ValueError(f"evaluation JSON {path} is malformed: no 'tasks' mapping")
    return data


def load_stats(path: str | Path) -> dict:
    """Read a trainer stats JSON, checking the keys the tables use; errors name the file."""
    data = read_json(path, "training stats JSON")
    if not isinstance(data, dict):
        raise ValueError(f"training stats JSON {path} is malformed: not an object")
    missing = [k for k in ("tokens_seen", "tokens_selected") if k not in data]
    if missing:
        raise ValueError(f"training stats JSON {path} is malformed: missing {missing}")
    kinds = data.get("kinds", {})
    if not isinstance(kinds, dict) or any(
        not isinstance(v, dict) or "seen" not in v or "selected" not in v for v in kinds.values()
    ):
        raise ValueError(f"training stats JSON {path} is malformed: 'kinds' must map kind -> {{seen, selected}}")
    return data


def _metric_value(eval_data: dict, path: Any, task: str, metric: str) -> tuple[str, float]:
    tasks = eval_data["tasks"]
    if task not in tasks:
        raise ValueError(f"task {task!r} missing from evaluation JSON {path} (it has: {sorted(tasks)})")
    try:
        key, value = headline_metric(tasks[task], [metric])
    except (KeyError, ValueError) as err:
        raise ValueError(f"evaluation JSON {path}, task {task!r}: {err.args[0]}") from None
    return key, (math.nan if value is None else float(value))


def _display(value: float, metric: str) -> float:
    """Value in display units: percent for accuracy-like metrics, raw for perplexity-like."""
    return value if is_raw_metric(metric) else 100.0 * value


def _round(value: float, metric: str) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return round(value, 4 if is_raw_metric(metric) else 1)


def human_tokens(n: Any) -> str:
    """Token counts as 1.2M / 15B (empty for a missing value)."""
    if isinstance(n, str):
        return n
    if n is None or pd.isna(n):
        return ""
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def _relative(new: Any, old: Any) -> str:
    if new is None or old is None or pd.isna(new) or pd.isna(old) or float(old) == 0:
        return ""
    return f"{(float(new) - float(old)) / float(old):+.0%}"


def _to_markdown(df: pd.DataFrame, **kwargs) -> str:
    return df.to_markdown(**kwargs) + "\n"


# --------------------------------------------------------------------------- Table 1
def results_table(
    models: list[dict],
    task_metrics: dict[str, str],
    out_md: Path,
    out_csv: Path,
    *,
    delta: tuple[str, str] | None = None,
    lower_is_better: set[str] = frozenset(),
) -> pd.DataFrame:
    """One row per model, one column per task, plus AVG / Train tokens / Seen tokens.

    ``models``: ordered ``[{"name", "role", "eval_json", "train_stats" (path or None)}]``.
    ``task_metrics``: task -> metric key (full lm-eval key or unambiguous bare name).

    Returned DataFrame (index ``Model``, columns = task names, ``AVG``, ``Train tokens``,
    ``Seen tokens``) holds numbers in display units: accuracies in percent rounded to 1
    decimal, perplexity-like metrics raw rounded to 4 decimals, token counts as integers
    (NaN when unknown; ``Train tokens`` is always empty for ``role == "base"``).
    ``AVG`` is the mean over the higher-is-better task columns (not in ``lower_is_better``
    and not perplexity-like), computed from unrounded values, rounded to 1 decimal.
    ``Train tokens`` is ``tokens_selected`` (what SLM actually trains on), ``Seen tokens`` is
    ``tokens_seen``.  With ``delta=(slm_name, clm_name)`` a last row ``"Δ (SLM − CLM)"`` holds
    the per-column differences (percentage points for accuracies) and, in the two token
    columns, the relative change as a string such as ``"-40%"``.

    The CSV has the same rows; its task headers read ``"<task> [<metric>]"``.  The Markdown
    shows task names as headers, token counts humanised (``1.64M``), and a legend saying
    which metric and unit each column is.
    """
    if not models:
        raise ValueError("results_table: no models given")
    if not task_metrics:
        raise ValueError("results_table: no task metrics given")
    names = [m.get("name") for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes or None in names:
        raise ValueError(f"results_table: model names must be present and unique (duplicates: {dupes})")

    lower = set(lower_is_better) | {t for t, m in task_metrics.items() if is_raw_metric(m)}
    higher_cols = [t for t in task_metrics if t not in lower]
    full_keys: dict[str, str] = {}
    raw_rows: dict[str, dict[str, Any]] = {}  # unrounded, display units
    for model in models:
        path = model.get("eval_json")
        if path is None:
            raise ValueError(f"results_table: model {model['name']!r} has no eval_json")
        data = load_eval(path)
        row: dict[str, Any] = {}
        for task, metric in task_metrics.items():
            key, value = _metric_value(data, path, task, metric)
            full_keys.setdefault(task, key)
            row[task] = _display(value, metric)
        row[AVG_COL] = sum(row[t] for t in higher_cols) / len(higher_cols) if higher_cols else math.nan
        stats = load_stats(model["train_stats"]) if model.get("train_stats") else None
        is_base = model.get("role") == "base"
        row[TRAIN_COL] = stats["tokens_selected"] if stats and not is_base else None
        row[SEEN_COL] = stats["tokens_seen"] if stats else None
        raw_rows[model["name"]] = row

    columns = list(task_metrics) + [AVG_COL, TRAIN_COL, SEEN_COL]
    rows: dict[str, dict[str, Any]] = {}
    for name, raw in raw_rows.items():
        row = {t: _round(raw[t], task_metrics[t]) for t in task_metrics}
        row[AVG_COL] = round(raw[AVG_COL], 1) if not math.isnan(raw[AVG_COL]) else math.nan
        row[TRAIN_COL] = raw[TRAIN_COL]
        row[SEEN_COL] = raw[SEEN_COL]
        rows[name] = row

    if delta is not None:
        slm_name, clm_name = delta
        for name in (slm_name, clm_name):
            if name not in raw_rows:
                raise ValueError(f"results_table: delta model {name!r} is not one of {names}")
        a, b = raw_rows[slm_name], raw_rows[clm_name]
        row = {t: _round(a[t] - b[t], task_metrics[t]) for t in task_metrics}
        row[AVG_COL] = round(a[AVG_COL] - b[AVG_COL], 1)
        row[TRAIN_COL] = _relative(a[TRAIN_COL], b[TRAIN_COL])
        row[SEEN_COL] = _relative(a[SEEN_COL], b[SEEN_COL])
        rows[DELTA_ROW] = row

    df = pd.DataFrame.from_dict(rows, orient="index")[columns]
    df.index.name = "Model"
    for col in (TRAIN_COL, SEEN_COL):
        if delta is None:
            df[col] = df[col].astype("Int64")

    # CSV: numbers as-is, metric in the header
    csv_df = df.rename(columns={t: f"{t} [{full_keys[t]}]" for t in task_metrics})
    atomic_write_text(out_csv, csv_df.to_csv())

    # Markdown: formatted strings + legend
    shown = pd.DataFrame(index=df.index, columns=columns, dtype=object)
    for name in df.index:
        is_delta = name == DELTA_ROW
        for t in task_metrics:
            v = df.at[name, t]
            if pd.isna(v):
                shown.at[name, t] = ""
            else:
                fmt = ".4f" if is_raw_metric(task_metrics[t]) else ".1f"
                shown.at[name, t] = format(v, ("+" if is_delta else "") + fmt)
        v = df.at[name, AVG_COL]
        shown.at[name, AVG_COL] = "" if pd.isna(v) else format(v, "+.1f" if is_delta else ".1f")
        for col in (TRAIN_COL, SEEN_COL):
            shown.at[name, col] = human_tokens(df.at[name, col])
    legend = ["", "Columns:"]
    for t, metric in task_metrics.items():
        unit = "raw" if is_raw_metric(metric) else "accuracy, %"
        if t in lower:
            unit += ", lower is better"
        legend.append(f"- **{t}**: `{full_keys[t]}` ({unit})")
    legend.append(f"- **{AVG_COL}**: mean over {', '.join(higher_cols) or 'no columns'} (higher-is-better columns)")
    legend.append(
        f"- **{TRAIN_COL}**: tokens trained on (selected tokens for SLM); **{SEEN_COL}**: tokens the run read"
    )
    if delta is not None:
        legend.append(
            f"- **{DELTA_ROW}**: {delta[0]} minus {delta[1]} (percentage points for accuracies); "
            "token columns give the relative change"
        )
    md = (
        _to_markdown(shown, colalign=["left"] + ["right"] * len(columns), disable_numparse=True)
        + "\n".join(legend)
        + "\n"
    )
    atomic_write_text(out_md, md)
    return df


# --------------------------------------------------------------------------- Figure 1 data
def checkpoints_table(runs: list[dict], task_metrics: dict[str, str], out_csv: Path) -> pd.DataFrame:
    """Long-form accuracy-vs-tokens data: columns run, tokens_seen, tokens_selected, task, metric, value.

    ``runs``: ``[{"run": "slm", "checkpoints": [{"tokens", "eval_json", "train_stats"}]}]``.
    ``tokens_seen``/``tokens_selected`` come from the checkpoint's stats JSON when given;
    otherwise ``tokens_seen`` is the checkpoint's ``tokens`` and ``tokens_selected`` is empty.
    ``metric`` is the full lm-eval key; ``value`` is lm-eval's number unscaled (fractions for
    accuracies).  Sorted by run, then tokens_seen, then the order of ``task_metrics``.
    """
    records = []
    for run in runs:
        name = run.get("run")
        if name is None:
            raise ValueError("checkpoints_table: every run needs a 'run' name")
        for ckpt in run.get("checkpoints", []):
            path = ckpt.get("eval_json")
            if path is None:
                raise ValueError(f"checkpoints_table: run {name!r} has a checkpoint without eval_json")
            data = load_eval(path)
            stats = load_stats(ckpt["train_stats"]) if ckpt.get("train_stats") else None
            seen = stats["tokens_seen"] if stats else ckpt.get("tokens")
            selected = stats["tokens_selected"] if stats else None
            if seen is None:
                raise ValueError(
                    f"checkpoints_table: run {name!r} checkpoint {path} has neither 'tokens' nor train_stats"
                )
            for order, (task, metric) in enumerate(task_metrics.items()):
                key, value = _metric_value(data, path, task, metric)
                records.append(
                    {
                        "run": name,
                        "tokens_seen": int(seen),
                        "tokens_selected": selected,
                        "task": task,
                        "metric": key,
                        "value": value,
                        "_order": order,
                    }
                )
    columns = ["run", "tokens_seen", "tokens_selected", "task", "metric", "value"]
    df = pd.DataFrame.from_records(records, columns=columns + ["_order"])
    df = df.sort_values(["run", "tokens_seen", "_order"], kind="stable").drop(columns="_order")
    df["tokens_selected"] = df["tokens_selected"].astype("Int64")
    df = df.reset_index(drop=True)
    atomic_write_text(out_csv, df.to_csv(index=False))
    return df


# --------------------------------------------------------------------------- selection rates
def _run_labels(stats: list[dict], paths: list[Path]) -> list[str]:
    labels = [str(s.get("run", Path(p).stem)) for s, p in zip(stats, paths)]
    if len(set(labels)) < len(labels):
        labels = [
            f"{label} ({s['ratio']})" if labels.count(label) > 1 and "ratio" in s else label
            for label, s in zip(labels, stats)
        ]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{Path(p).stem}]" for label, p in zip(labels, paths)]
    return labels


def _kind_order(stats: Iterable[dict]) -> list[str]:
    order: list[str] = []
    for s in stats:
        for kind in list(s.get("kind_names", [])) + list(s.get("kinds", {})):
            if kind not in order:
                order.append(kind)
    return order


def selection_table(stats_jsons: list[Path], out_md: Path, out_csv: Path) -> pd.DataFrame:
    """Per span kind, the percentage of its loss-bearing tokens each run selected.

    Rows: kinds in ``kind_names`` order (kinds with ``seen == 0`` in every run dropped) and a
    final ``"all"`` row (sum of selected / sum of seen over the kinds).  Columns: one per run
    (label = ``run``; ``"run (ratio)"`` when runs share a name), values ``100 * selected / seen``
    rounded to 1 decimal (NaN where that run saw none of the kind), then
    ``"share of tokens (%)"``: the kind's share of all loss-bearing tokens, taken from the
    first stats file.
    """
    paths = [Path(p) for p in stats_jsons]
    if not paths:
        raise ValueError("selection_table: no stats JSONs given")
    stats = [load_stats(p) for p in paths]
    for s, p in zip(stats, paths):
        if not s.get("kinds"):
            raise ValueError(f"training stats JSON {p} has no per-kind counts ('kinds')")
    labels = _run_labels(stats, paths)
    kinds = [k for k in _kind_order(stats) if any(s["kinds"].get(k, {}).get("seen", 0) > 0 for s in stats)]

    rows: dict[str, dict[str, float]] = {}
    for kind in kinds + [ALL_ROW]:
        row = {}
        for label, s in zip(labels, stats):
            if kind == ALL_ROW:
                seen = sum(v["seen"] for v in s["kinds"].values())
                sel = sum(v["selected"] for v in s["kinds"].values())
            else:
                seen = s["kinds"].get(kind, {}).get("seen", 0)
                sel = s["kinds"].get(kind, {}).get("selected", 0)
            row[label] = round(100.0 * sel / seen, 1) if seen else math.nan
        first = stats[0]["kinds"]
        total = sum(v["seen"] for v in first.values())
        share_seen = total if kind == ALL_ROW else first.get(kind, {}).get("seen", 0)
        row[SHARE_COL] = round(100.0 * share_seen / total, 1) if total else math.nan
        rows[kind] = row
    df = pd.DataFrame.from_dict(rows, orient="index")[labels + [SHARE_COL]]
    df.index.name = "kind"
    atomic_write_text(out_csv, df.to_csv())
    note = (
        "\nCells: % of each kind's loss-bearing tokens selected for training by the run; "
        f"'{SHARE_COL}': the kind's share of all loss-bearing tokens ({paths[0].name}).\n"
    )
    atomic_write_text(out_md, _to_markdown(df, floatfmt=".1f") + note)
    return df
