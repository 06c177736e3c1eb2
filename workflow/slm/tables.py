"""Result tables in the shape of the Rho-1 paper's Table 1 and Figure 5, the Figure-1 data, token
selection rates, and the reshaping of these tables into what each figure plots.

Inputs are the compact evaluation JSONs of :mod:`slm.evaluate` and the trainer's stats JSONs::

    {"run": "slm", "ratio": 0.6, "unit": "batch", "steps": 400,
     "tokens_seen": 1638400, "tokens_loss_bearing": 1632000, "tokens_selected": 979200,
     "kind_names": ["other", "math", ...], "kinds": {"math": {"seen": 800000, "selected": 700000}, ...},
     "tokens_per_second": 9500.0}

Models are keyed by name (a run, ``base``, ``reference``); the tables show each one's label. Numbers
are shown as :mod:`slm.formatting` says (accuracies in percent, perplexity-like metrics raw and
lower-is-better even when not listed in ``lower_is_better``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from slm.evaluate import headline_metric
from slm.formatting import (
    display_value,
    format_cell,
    format_metric,
    human_tokens,
    is_raw_metric,
    latex_table,
    markdown,
    relative_change,
    round_metric,
)
from slm.io import atomic_write_text, read_json

AVG_COL = "AVG"
TRAIN_COL = "Train tokens"
SEEN_COL = "Seen tokens"
DELTA_ROW = "Δ (SLM − CLM)"
SHARE_COL = "share of tokens (%)"
ALL_ROW = "all"


# --------------------------------------------------------------------------- loading
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


# --------------------------------------------------------------------------- measured scores
@dataclass
class Measured:
    """Every model's score on every task, in display units and unrounded (see :func:`measure`)."""

    task_metrics: dict[str, str]
    #: task -> the full lm-eval metric key found
    metric_keys: dict[str, str]
    #: lower-is-better tasks (listed, or perplexity-like)
    lower: set[str]
    #: key -> shown label
    names: dict[str, str]
    #: key -> {task: value, AVG, Train tokens, Seen tokens}
    rows: dict[str, dict[str, Any]]

    @property
    def accuracy_tasks(self) -> list[str]:
        """The higher-is-better tasks, which ``AVG`` averages."""
        return [t for t in self.task_metrics if t not in self.lower]

    def check_keys(self, keys: Iterable[str], what: str) -> None:
        unknown = [k for k in keys if k not in self.rows]
        if unknown:
            raise ValueError(f"{what}: {unknown} are not among the measured models {list(self.rows)}")


def measure(models: list[dict], task_metrics: Mapping[str, str], *, lower_is_better: Collection[str] = ()) -> Measured:
    """Read every model's evaluation (and stats) JSON.

    ``models``: ordered ``[{"key", "name", "role", "eval_json", "train_stats" (path or None)}]``; ``key``
    is what pairs refer to, ``name`` the shown label. ``task_metrics``: task -> metric key (full lm-eval
    key or unambiguous bare name). Values are in display units (percent for accuracies), unrounded;
    ``AVG`` is the mean over the higher-is-better tasks; ``Train tokens`` is ``tokens_selected`` (what
    SLM trains on; empty for ``role == "base"``), ``Seen tokens`` is ``tokens_seen``.
    """
    if not models:
        raise ValueError("results_table: no models given")
    if not task_metrics:
        raise ValueError("results_table: no task metrics given")
    for field in ("key", "name"):
        values = [m.get(field) for m in models]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes or None in values:
            raise ValueError(f"results_table: model {field}s must be present and unique (duplicates: {dupes})")
    task_metrics = dict(task_metrics)
    lower = set(lower_is_better) | {t for t, m in task_metrics.items() if is_raw_metric(m)}
    higher = [t for t in task_metrics if t not in lower]
    metric_keys: dict[str, str] = {}
    rows: dict[str, dict[str, Any]] = {}
    for model in models:
        path = model.get("eval_json")
        if path is None:
            raise ValueError(f"results_table: model {model['name']!r} has no eval_json")
        data = load_eval(path)
        row: dict[str, Any] = {}
        for task, metric in task_metrics.items():
            key, value = _metric_value(data, path, task, metric)
            metric_keys.setdefault(task, key)
            row[task] = display_value(value, metric)
        row[AVG_COL] = sum(row[t] for t in higher) / len(higher) if higher else math.nan
        stats = load_stats(model["train_stats"]) if model.get("train_stats") else None
        row[TRAIN_COL] = stats["tokens_selected"] if stats and model.get("role") != "base" else None
        row[SEEN_COL] = stats["tokens_seen"] if stats else None
        rows[model["key"]] = row
    return Measured(task_metrics, metric_keys, lower, {m["key"]: m["name"] for m in models}, rows)


# --------------------------------------------------------------------------- Table 1
def results_table(
    measured: Measured, out_md: Path, out_csv: Path, *, delta: tuple[str, str] | None = None
) -> pd.DataFrame:
    """One row per model, one column per task, plus AVG / Train tokens / Seen tokens.

    Returned DataFrame (index ``Model``: the models' labels; columns = task names, ``AVG``,
    ``Train tokens``, ``Seen tokens``) holds numbers in display units: accuracies in percent rounded to
    1 decimal, perplexity-like metrics raw rounded to 4 decimals, token counts as integers (NaN when
    unknown). ``AVG`` is rounded from the unrounded mean. With ``delta=(slm_key, clm_key)`` a last row
    ``"Δ (SLM − CLM)"`` holds the per-column differences of the unrounded values (percentage points
    for accuracies) and, in the two token columns, the relative change as a string such as ``"-40%"``.

    The CSV has the same rows; its task headers read ``"<task> [<metric>]"``.  The Markdown
    shows task names as headers, token counts humanised (``1.64M``), and a legend saying
    which metric and unit each column is.
    """
    tasks = measured.task_metrics
    columns = list(tasks) + [AVG_COL, TRAIN_COL, SEEN_COL]
    rows: dict[str, dict[str, Any]] = {}
    for key, raw in measured.rows.items():
        row = {t: round_metric(raw[t], tasks[t]) for t in tasks}
        row[AVG_COL] = round(raw[AVG_COL], 1) if not math.isnan(raw[AVG_COL]) else math.nan
        row[TRAIN_COL] = raw[TRAIN_COL]
        row[SEEN_COL] = raw[SEEN_COL]
        rows[measured.names[key]] = row
    if delta is not None:
        measured.check_keys(delta, "results_table: delta")
        a, b = (measured.rows[key] for key in delta)
        row = {t: round_metric(a[t] - b[t], tasks[t]) for t in tasks}
        row[AVG_COL] = round(a[AVG_COL] - b[AVG_COL], 1)
        row[TRAIN_COL] = relative_change(a[TRAIN_COL], b[TRAIN_COL])
        row[SEEN_COL] = relative_change(a[SEEN_COL], b[SEEN_COL])
        rows[DELTA_ROW] = row

    df = pd.DataFrame.from_dict(rows, orient="index")[columns]
    df.index.name = "Model"
    for col in (TRAIN_COL, SEEN_COL):
        if delta is None:
            df[col] = df[col].astype("Int64")

    # CSV: numbers as-is, metric in the header
    csv_df = df.rename(columns={t: f"{t} [{measured.metric_keys[t]}]" for t in tasks})
    atomic_write_text(out_csv, csv_df.to_csv())

    # Markdown: formatted strings + legend
    shown = pd.DataFrame(index=df.index, columns=columns, dtype=object)
    for name in df.index:
        signed = name == DELTA_ROW
        for t in tasks:
            shown.at[name, t] = format_metric(df.at[name, t], tasks[t], signed=signed)
        shown.at[name, AVG_COL] = format_metric(df.at[name, AVG_COL], AVG_COL, signed=signed)
        for col in (TRAIN_COL, SEEN_COL):
            shown.at[name, col] = human_tokens(df.at[name, col])
    higher = measured.accuracy_tasks
    legend = ["", "Columns:"]
    for t, metric in tasks.items():
        unit = "raw" if is_raw_metric(metric) else "accuracy, %"
        if t in measured.lower:
            unit += ", lower is better"
        legend.append(f"- **{t}**: `{measured.metric_keys[t]}` ({unit})")
    legend.append(f"- **{AVG_COL}**: mean over {', '.join(higher) or 'no columns'} (higher-is-better columns)")
    legend.append(
        f"- **{TRAIN_COL}**: tokens trained on (selected tokens for SLM); **{SEEN_COL}**: tokens the run read"
    )
    if delta is not None:
        legend.append(
            f"- **{DELTA_ROW}**: {measured.names[delta[0]]} minus {measured.names[delta[1]]} (percentage points "
            "for accuracies); token columns give the relative change"
        )
    md = markdown(shown, colalign=["left"] + ["right"] * len(columns), disable_numparse=True) + "\n".join(legend)
    atomic_write_text(out_md, md + "\n")
    return df


# --------------------------------------------------------------------------- Figure 5's table
FIGURE5 = "figure5_general_gain_over_ct"
GAIN_COLUMNS = ("task", "metric", "lower_is_better", "clm", "slm", "gain", "paper_benchmark", "paper_gain")
AVERAGE_ROW = "average"


def gains_table(
    measured: Measured,
    delta: tuple[str, str],
    out_stem: str | Path,
    *,
    mapping: Mapping[str, str] | None = None,
    reported_path: str | Path | None = None,
) -> pd.DataFrame:
    """Per-task gain of the SLM run over the CLM run (the paper's Figure 5), as CSV, Markdown and LaTeX.

    ``delta``: the (SLM, CLM) keys. The gain is SLM minus CLM, and CLM minus SLM for lower-is-better
    tasks, so positive always means SLM did better: percentage points for accuracies, raw units
    otherwise; it is the results table's SLM − CLM difference (of unrounded values), rounded. ``clm`` and
    ``slm`` are the rounded scores. ``mapping``: task -> the paper's Figure 5 benchmark it stands in for (a
    key of ``figure5_general_gain_over_ct``); mapped rows carry the paper's gain. A last row averages the
    accuracy tasks (the results table's ``AVG``; its paper gain: the mean over the same tasks, when all
    are mapped).

    Writes ``out_stem`` + ``.md``, ``.csv`` and ``.tex``; returns the table (columns :data:`GAIN_COLUMNS`).
    """
    from slm.reported import reported_table

    measured.check_keys(delta, "figure5")
    slm, clm = delta
    tasks = measured.task_metrics
    paper = reported_table(FIGURE5, path=reported_path)
    benchmarks = [b for b in paper.attrs["score_columns"] if b != AVERAGE_ROW]
    mapping = dict(mapping or {})
    unknown = [t for t in mapping if t not in tasks]
    if unknown:
        raise ValueError(f"figure5: mapped tasks {unknown} are not evaluated tasks ({list(tasks)})")
    not_paper = [b for b in mapping.values() if b not in benchmarks]
    if not_paper:
        raise ValueError(f"figure5: {not_paper} are not benchmarks of the paper's Figure 5 ({benchmarks})")

    after, before = measured.rows[slm], measured.rows[clm]
    records = []
    for task, metric in tasks.items():
        lower = task in measured.lower
        change = round_metric(after[task] - before[task], metric)
        bench = mapping.get(task)
        records.append(
            {
                "task": task,
                "metric": measured.metric_keys[task],
                "lower_is_better": lower,
                "clm": round_metric(before[task], metric),
                "slm": round_metric(after[task], metric),
                "gain": round_metric(-change if lower else change, metric),
                "paper_benchmark": bench,
                "paper_gain": paper.at[0, bench] if bench else math.nan,
            }
        )
    data = pd.DataFrame.from_records(records, columns=GAIN_COLUMNS)
    acc = data[~data["lower_is_better"]]
    data.loc[len(data)] = {
        "task": AVERAGE_ROW,
        "metric": f"mean of {len(acc)} accuracy tasks",
        "lower_is_better": False,
        "clm": round(before[AVG_COL], 1),
        "slm": round(after[AVG_COL], 1),
        "gain": round(after[AVG_COL] - before[AVG_COL], 1),
        "paper_benchmark": None,
        "paper_gain": round(acc["paper_gain"].mean(), 1) if acc["paper_benchmark"].notna().all() else math.nan,
    }
    data["lower_is_better"] = data["lower_is_better"].astype(bool)
    data.attrs.update(slm=slm, clm=clm, paper_label=paper.at[0, paper.attrs["label_column"]])
    data.attrs["paper_note"] = (
        f"{data.attrs['paper_label']}, general domain, {paper.at[0, AVERAGE_ROW]:+.1f} on average over its "
        f"benchmarks ({FIGURE5} in {paper.attrs['source']})"
    )

    stem = Path(out_stem)
    atomic_write_text(stem.with_suffix(".csv"), data.to_csv(index=False))
    headers = {"task": "Task", "metric": "Metric", "clm": "CLM", "slm": "SLM", "gain": "Gain"}
    if mapping:
        headers.update(paper_benchmark="Paper benchmark", paper_gain="Paper gain")
    shown = pd.DataFrame(
        {
            title: [format_cell(v, col, signed=col in ("gain", "paper_gain")) for v in data[col]]
            for col, title in headers.items()
        }
    )
    numeric = [col in ("clm", "slm", "gain", "paper_gain") for col in headers]
    lowers = list(data.loc[data["lower_is_better"], "task"])
    paper_note = data.attrs["paper_note"]
    notes = [
        ("CLM / SLM", f"rows `{measured.names[clm]}` / `{measured.names[slm]}` of the results table"),
        (
            "Gain",
            "SLM − CLM in percentage points; positive = SLM better"
            + (f"; for {', '.join(lowers)} (lower is better) CLM − SLM in its own units" if lowers else ""),
        ),
        (
            AVERAGE_ROW,
            "mean over the accuracy tasks (not the lower-is-better ones); its paper gain is "
            "the mean of those tasks' paper gains, given when all are mapped",
        ),
        (
            "paper",
            f"the paper's Figure 5, {paper_note}"
            if mapping
            else f"no task mapped (tables.figure5_columns); the paper's Figure 5 is {paper_note}",
        ),
    ]
    legend = ["", "Columns:"] + [f"- **{k}**: {v}" for k, v in notes]
    md = shown.to_markdown(index=False, disable_numparse=True, colalign=["right" if n else "left" for n in numeric])
    atomic_write_text(stem.with_suffix(".md"), md + "\n" + "\n".join(legend) + "\n")
    atomic_write_text(stem.with_suffix(".tex"), latex_table(shown, notes, n_measured=len(data) - 1, numeric=numeric))
    return data


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
    atomic_write_text(out_md, markdown(df, floatfmt=".1f") + note)
    return df


# --------------------------------------------------------------------------- what the figures plot
CHECKPOINT_COLUMNS = ("run", "tokens_seen", "tokens_selected", "task", "metric", "value")
#: x columns of the accuracy curve -> axis label
X_COLUMNS = {"tokens_seen": "tokens seen", "tokens_selected": "tokens trained on (selected)"}


def read_checkpoints(path: str | Path) -> pd.DataFrame:
    """The checkpoints table (:func:`checkpoints_table`), checking its columns; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoints table not found: {path}")
    df = pd.read_csv(path)
    missing = [c for c in CHECKPOINT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"checkpoints table {path} is missing columns {missing}")
    df.attrs["source"] = str(path)
    return df


def accuracy_curve(checkpoints: pd.DataFrame, tasks: list[str], *, x: str = "tokens_seen") -> pd.DataFrame:
    """Average accuracy (%) of ``tasks`` at every evaluated point of every run (Figure 1).

    ``x``: ``"tokens_seen"`` or ``"tokens_selected"``. Rows repeated for the same run, token count and
    task (the final model evaluated at a checkpoint's token count) are averaged; ``attrs["repeated"]``
    counts them. Every point needs every task: a point lacking one is an error, and so is a
    perplexity-like metric (it cannot be averaged with accuracies); an lm-eval null is a gap.

    Columns: ``run``, ``x``, ``accuracy`` (mean over tasks, percent), ``n_tasks``; runs in their
    order of appearance, then by ``x``.
    """
    source = checkpoints.attrs.get("source", "the checkpoints table")
    if x not in X_COLUMNS:
        raise ValueError(f"figure1: x must be one of {list(X_COLUMNS)}, not {x!r}")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("figure1: no tasks given")
    absent = [t for t in tasks if t not in set(checkpoints["task"])]
    if absent:
        raise ValueError(
            f"figure1: tasks {absent} not in checkpoints table {source} (it has: {sorted(set(checkpoints['task']))})"
        )
    df = checkpoints[checkpoints["task"].isin(tasks)]
    raw = sorted({m for m in df["metric"].astype(str) if is_raw_metric(m)})
    if raw:
        raise ValueError(
            f"figure1: metrics {raw} in {source} are perplexity-like and cannot be averaged with accuracies"
        )
    if df[x].isna().any():
        runs = sorted(set(df.loc[df[x].isna(), "run"]))
        raise ValueError(f"figure1: {x} is empty for runs {runs} in {source}")
    present = df.groupby(["run", x])["task"].agg(set)
    for (run, tokens), have in present.items():
        lacking = [t for t in tasks if t not in have]
        if lacking:
            raise ValueError(f"figure1: run {run!r} at {x}={tokens} lacks tasks {lacking} in {source}")
    run_order = list(dict.fromkeys(df["run"]))
    per_task = df.groupby(["run", x, "task"], sort=True)["value"].mean().unstack("task")
    acc = 100.0 * per_task[tasks].mean(axis=1, skipna=False)
    data = acc.rename("accuracy").reset_index().rename(columns={x: "x"})
    data["n_tasks"] = len(tasks)
    data["run"] = pd.Categorical(data["run"], categories=run_order, ordered=True)
    data = data.sort_values(["run", "x"], kind="stable").reset_index(drop=True)
    data["run"] = data["run"].astype(str)
    data.attrs.update(repeated=int(df.duplicated(["run", x, "task"]).sum()), source=source, x=x, tasks=tasks)
    return data


def downstream_losses(checkpoints: pd.DataFrame, loss_task: str, runs: Collection[str]) -> pd.DataFrame:
    """A held-out loss task's value at every evaluated point of ``runs`` (Figure 6's middle panel).

    Columns: ``run``, ``tokens_seen``, ``loss``; one row per point (the final model evaluated at a
    checkpoint's token count counted once).
    """
    rows = checkpoints[(checkpoints["task"] == loss_task) & checkpoints["run"].isin(list(runs))]
    return rows[["run", "tokens_seen"]].assign(loss=rows["value"]).drop_duplicates(["run", "tokens_seen"])


def loss_accuracy_points(checkpoints: pd.DataFrame, loss_task: str, accuracy_tasks: list[str]) -> pd.DataFrame:
    """Every evaluated point's held-out loss and mean accuracy (%) (Figure 7).

    Columns: ``run``, ``loss`` (``loss_task``'s value), ``accuracy`` (mean of ``accuracy_tasks``, percent).
    """
    wide = checkpoints.pivot_table(index=["run", "tokens_seen"], columns="task", values="value").reset_index()
    return pd.DataFrame(
        {"run": wide["run"], "loss": wide[loss_task], "accuracy": 100 * wide[accuracy_tasks].mean(axis=1)}
    )


def ratio_ablation(checkpoints: pd.DataFrame, ratio_runs: Mapping[str, float], tasks: list[str]) -> pd.DataFrame:
    """Accuracy (%) of each task at the end of each run that differs only in its selection ratio (Figure 9).

    ``ratio_runs``: run -> ratio in (0, 1] (CLM is 1.0). Runs at the same ratio are averaged.
    Columns: ``ratio``, ``task``, ``value`` (percent); tasks in the given order.
    """
    bad = sorted({r for r in ratio_runs.values() if not 0 < r <= 1})
    if bad:
        raise ValueError(f"figure9: selection ratios must be in (0, 1], got {bad}")
    finals = checkpoints[checkpoints["run"].isin(list(ratio_runs))]
    finals = finals[finals["tokens_seen"] == finals.groupby("run")["tokens_seen"].transform("max")]
    finals = finals[finals["task"].isin(tasks)]
    measured = pd.DataFrame(
        {
            "ratio": finals["run"].map(ratio_runs).astype(float),
            "task": finals["task"].astype(str),
            "value": 100.0 * finals["value"].astype(float),
        }
    )
    return measured.groupby(["task", "ratio"], sort=False)["value"].mean().reset_index()
