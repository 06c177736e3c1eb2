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

import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
from slm.intervals import PERCENT, PERCENT_DIFFERENCE, bootstrap_interval, first_crossing, seed_interval
from slm.io import atomic_write_text, read_json

AVG_COL = "AVG"
TRAIN_COL = "Train tokens"
SEEN_COL = "Seen tokens"
DELTA_ROW = "Δ (SLM − CLM)"
SEEDS_COL = "Seeds"
SHARE_COL = "share of tokens (%)"
ALL_ROW = "all"
#: the selection table's row for soft weighting: the effective sample size, % of a step's tokens
EFFECTIVE_ROW = "effective (soft)"


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
class Replicate:
    """One evaluated model of a row: a run's replicate (its seed), or a base / the reference model."""

    seed: int | None
    #: task -> value in display units; ``AVG`` the mean of the accuracy tasks
    values: dict[str, float]
    #: task -> per-document values in lm-eval's units, for the accuracy tasks whose JSON has them
    samples: dict[str, np.ndarray]
    tokens_selected: int | None
    tokens_seen: int | None


@dataclass
class Interval:
    """A value (display units, unrounded) with its 95% intervals (NaN where there is none)."""

    value: float
    n_seeds: int
    seed_low: float = math.nan
    seed_high: float = math.nan
    sample_low: float = math.nan
    sample_high: float = math.nan


@dataclass
class Measured:
    """Every model's score on every task (see :func:`measure`)."""

    task_metrics: dict[str, str]
    #: task -> the full lm-eval metric key found
    metric_keys: dict[str, str]
    #: lower-is-better tasks (listed, or perplexity-like)
    lower: set[str]
    #: key -> shown label
    names: dict[str, str]
    #: key -> the evaluated models the row averages
    replicates: dict[str, list[Replicate]]

    @property
    def accuracy_tasks(self) -> list[str]:
        """The higher-is-better tasks, which ``AVG`` averages."""
        return [t for t in self.task_metrics if t not in self.lower]

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        """key -> {task: mean over replicates, AVG, Train tokens, Seen tokens}, display units, unrounded."""
        out = {}
        for key, reps in self.replicates.items():
            row = {col: sum(r.values[col] for r in reps) / len(reps) for col in [*self.task_metrics, AVG_COL]}
            for col, attr in ((TRAIN_COL, "tokens_selected"), (SEEN_COL, "tokens_seen")):
                counts = [getattr(r, attr) for r in reps]
                row[col] = None if None in counts else round(sum(counts) / len(counts))
            out[key] = row
        return out

    def check_keys(self, keys: Iterable[str], what: str) -> None:
        unknown = [k for k in keys if k not in self.replicates]
        if unknown:
            raise ValueError(f"{what}: {unknown} are not among the measured models {list(self.replicates)}")

    def _sampled(self, column: str) -> list[str]:
        """The tasks whose per-document values make the bootstrap of ``column`` (a task or AVG); none when
        one lacks them or is perplexity-like."""
        tasks = self.accuracy_tasks if column == AVG_COL else [column]
        if not tasks or any(is_raw_metric(self.task_metrics[t]) for t in tasks):
            return []
        return tasks

    def _document_means(self, key: str, tasks: list[str]) -> list[np.ndarray] | None:
        """Per task, each document's value averaged over the row's replicates (in percent)."""
        reps = self.replicates[key]
        if not tasks or any(t not in r.samples for r in reps for t in tasks):
            return None
        return [100.0 * np.mean([r.samples[t] for r in reps], axis=0) for t in tasks]

    def _is_percent(self, column: str) -> bool:
        """Whether ``column`` (a task or AVG) is an accuracy in percent, not a raw metric such as bits."""
        return column == AVG_COL or not is_raw_metric(self.task_metrics[column])

    def interval(self, key: str, column: str) -> Interval:
        """A row's value of a task (or AVG) with its intervals over seeds and over evaluation documents."""
        reps = self.replicates[key]
        values = [r.values[column] for r in reps]
        out = Interval(sum(values) / len(values), len(values))
        out.seed_low, out.seed_high = seed_interval(values, bounds=PERCENT if self._is_percent(column) else None)
        documents = self._document_means(key, self._sampled(column))
        if documents is not None:
            out.sample_low, out.sample_high = bootstrap_interval(documents)
        return out

    def difference(self, key: str, other: str, column: str) -> Interval:
        """``key`` minus ``other``: the difference of the means; over seeds, the t interval of the per-seed
        differences of the seeds both have; over documents, the bootstrap of the per-document differences."""
        a, b = self.interval(key, column), self.interval(other, column)
        by_seed = {r.seed: r.values[column] for r in self.replicates[other]}
        paired = [r.values[column] - by_seed[r.seed] for r in self.replicates[key] if r.seed in by_seed]
        out = Interval(a.value - b.value, len(paired))
        out.seed_low, out.seed_high = seed_interval(
            paired, bounds=PERCENT_DIFFERENCE if self._is_percent(column) else None
        )
        tasks = self._sampled(column)
        mine, theirs = self._document_means(key, tasks), self._document_means(other, tasks)
        if mine is not None and theirs is not None and all(len(x) == len(y) for x, y in zip(mine, theirs)):
            out.sample_low, out.sample_high = bootstrap_interval([x - y for x, y in zip(mine, theirs)])
        return out


def _samples(data: dict, path: Any, task: str, value: float) -> np.ndarray | None:
    """A task's per-document values from an evaluation JSON (``samples``), checked against its metric; only
    for a metric lm-eval averages over documents (``sample_aggregation`` ``mean``, the default)."""
    values = (data.get("samples") or {}).get(task)
    if values is None or (data.get("sample_aggregation") or {}).get(task, "mean") != "mean":
        return None
    samples = np.asarray(values, dtype=float)
    expected = (data.get("n_samples") or {}).get(task)
    if expected is not None and len(samples) != expected:
        raise ValueError(f"evaluation JSON {path}: {len(samples)} samples of {task!r} for {expected} documents")
    if len(samples) and not math.isclose(float(samples.mean()), value, rel_tol=1e-6, abs_tol=1e-9):
        raise ValueError(
            f"evaluation JSON {path}: the samples of {task!r} average {samples.mean():.6g}, not its metric {value:.6g}"
        )
    return samples


def measure(models: list[dict], task_metrics: Mapping[str, str], *, lower_is_better: Collection[str] = ()) -> Measured:
    """Read every model's evaluation (and stats) JSONs.

    ``models``: ordered ``[{"key", "name", "role", "replicates": [{"seed", "eval_json", "train_stats"}]}]``;
    ``key`` is what pairs refer to, ``name`` the shown label, ``replicates`` the evaluated models the row
    averages (a run's seeds; one for a base or the reference model). ``task_metrics``: task -> metric key
    (full lm-eval key or unambiguous bare name). Values are in display units (percent for accuracies);
    ``AVG`` is the mean over the higher-is-better tasks; ``Train tokens`` is ``tokens_selected`` (what SLM
    trains on; empty for ``role == "base"``), ``Seen tokens`` is ``tokens_seen``. An evaluation JSON's
    ``samples`` (task -> per-document values) give the accuracy tasks' sampling intervals.
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
    replicates: dict[str, list[Replicate]] = {}
    for model in models:
        if not model.get("replicates"):
            raise ValueError(f"results_table: model {model['name']!r} has no evaluated replicates")
        replicates[model["key"]] = []
        for rep in model["replicates"]:
            path = rep.get("eval_json")
            if path is None:
                raise ValueError(f"results_table: model {model['name']!r} has no eval_json")
            data = load_eval(path)
            values: dict[str, float] = {}
            samples: dict[str, np.ndarray] = {}
            for task, metric in task_metrics.items():
                key, value = _metric_value(data, path, task, metric)
                metric_keys.setdefault(task, key)
                values[task] = display_value(value, metric)
                if not is_raw_metric(metric) and (found := _samples(data, path, task, value)) is not None:
                    samples[task] = found
            values[AVG_COL] = sum(values[t] for t in higher) / len(higher) if higher else math.nan
            stats = load_stats(rep["train_stats"]) if rep.get("train_stats") else None
            selected = stats["tokens_selected"] if stats and model.get("role") != "base" else None
            seen = stats["tokens_seen"] if stats else None
            replicates[model["key"]].append(Replicate(rep.get("seed"), values, samples, selected, seen))
    return Measured(task_metrics, metric_keys, lower, {m["key"]: m["name"] for m in models}, replicates)


# --------------------------------------------------------------------------- Table 1
INTERVAL_COLUMNS = ("model", "key", "column", "n_seeds", "value", "seed_low", "seed_high", "sample_low", "sample_high")


def _pair(low: float, high: float, fmt: str, brackets: str) -> str:
    """`` (low, high)`` (or with other brackets); empty when there is no interval."""
    return "" if math.isnan(low) else f" {brackets[0]}{low:{fmt}}, {high:{fmt}}{brackets[1]}"


def _shown(iv: Interval, metric: str, *, signed: bool = False) -> str:
    """``31.3 (29.0, 33.6) [28.9, 33.7]``: the value, (its interval over seeds), [over documents]."""
    text = format_metric(round_metric(iv.value, metric), metric, signed=signed)
    for low, high, brackets in ((iv.seed_low, iv.seed_high, "()"), (iv.sample_low, iv.sample_high, "[]")):
        if not math.isnan(low):
            text += f" {brackets[0]}{format_metric(low, metric)}, {format_metric(high, metric)}{brackets[1]}"
    return text


def results_table(
    measured: Measured,
    out_md: Path,
    out_csv: Path,
    *,
    delta: tuple[str, str] | None = None,
    out_intervals: Path | None = None,
) -> pd.DataFrame:
    """One row per model, one column per task, plus AVG / Train tokens / Seen tokens.

    Returned DataFrame (index ``Model``: the models' labels; columns = task names, ``AVG``,
    ``Train tokens``, ``Seen tokens``) holds each row's mean over its replicates in display units:
    accuracies in percent rounded to 1 decimal, perplexity-like metrics raw rounded to 4 decimals,
    token counts as integers (NaN when unknown). ``AVG`` is rounded from the unrounded mean. With
    ``delta=(slm_key, clm_key)`` a last row ``"Δ (SLM − CLM)"`` holds the per-column differences of the
    unrounded values (percentage points for accuracies) and, in the two token columns, the relative change
    as a string such as ``"-40%"``.

    The CSV has the same rows; its task headers read ``"<task> [<metric>]"``. The Markdown shows every
    value with its 95% intervals, ``(...)`` over seeds (rows with 2 or more) and ``[...]`` over the
    evaluation documents (accuracy tasks whose evaluation JSONs hold per-document samples), token counts
    humanised (``1.64M``), the seeds of each row, and a legend saying which metric and unit each column
    is. ``out_intervals`` (CSV, long form, :data:`INTERVAL_COLUMNS`) gets the intervals as numbers.
    """
    tasks = measured.task_metrics
    columns = list(tasks) + [AVG_COL, TRAIN_COL, SEEN_COL]
    metric_of = {**tasks, AVG_COL: AVG_COL}
    rows: dict[str, dict[str, Any]] = {}
    intervals: dict[str, tuple[str, dict[str, Interval]]] = {}
    for key, raw in measured.rows.items():
        row = {t: round_metric(raw[t], tasks[t]) for t in tasks}
        row[AVG_COL] = round(raw[AVG_COL], 1) if not math.isnan(raw[AVG_COL]) else math.nan
        row[TRAIN_COL] = raw[TRAIN_COL]
        row[SEEN_COL] = raw[SEEN_COL]
        rows[measured.names[key]] = row
        intervals[measured.names[key]] = (key, {c: measured.interval(key, c) for c in metric_of})
    if delta is not None:
        measured.check_keys(delta, "results_table: delta")
        a, b = (measured.rows[key] for key in delta)
        row = {t: round_metric(a[t] - b[t], tasks[t]) for t in tasks}
        row[AVG_COL] = round(a[AVG_COL] - b[AVG_COL], 1)
        row[TRAIN_COL] = relative_change(a[TRAIN_COL], b[TRAIN_COL])
        row[SEEN_COL] = relative_change(a[SEEN_COL], b[SEEN_COL])
        rows[DELTA_ROW] = row
        intervals[DELTA_ROW] = ("Δ", {c: measured.difference(*delta, c) for c in metric_of})

    df = pd.DataFrame.from_dict(rows, orient="index")[columns]
    df.index.name = "Model"
    for col in (TRAIN_COL, SEEN_COL):
        if delta is None:
            df[col] = df[col].astype("Int64")

    # CSV: numbers as-is, metric in the header
    csv_df = df.rename(columns={t: f"{t} [{measured.metric_keys[t]}]" for t in tasks})
    atomic_write_text(out_csv, csv_df.to_csv())
    if out_intervals is not None:
        records = [
            {"model": name, "key": key, "column": col, **vars(iv)}
            for name, (key, by_column) in intervals.items()
            for col, iv in by_column.items()
        ]
        atomic_write_text(
            out_intervals, pd.DataFrame.from_records(records, columns=INTERVAL_COLUMNS).to_csv(index=False)
        )

    # Markdown: formatted strings + legend
    shown = pd.DataFrame(index=df.index, columns=[*columns, SEEDS_COL], dtype=object)
    for name in df.index:
        key, by_column = intervals[name]
        signed = name == DELTA_ROW
        for col, metric in metric_of.items():
            shown.at[name, col] = "" if pd.isna(df.at[name, col]) else _shown(by_column[col], metric, signed=signed)
        for col in (TRAIN_COL, SEEN_COL):
            shown.at[name, col] = human_tokens(df.at[name, col])
        trained = signed or measured.replicates[key][0].seed is not None  # a base or given model has no seed
        shown.at[name, SEEDS_COL] = str(by_column[AVG_COL].n_seeds) if trained else ""
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
    legend.append(
        f"- **{SEEDS_COL}**: the training seeds a row averages (replicates of the run); for the SLM − CLM row, "
        "the seeds both runs have"
    )
    if delta is not None:
        legend.append(
            f"- **{DELTA_ROW}**: {measured.names[delta[0]]} minus {measured.names[delta[1]]} (percentage points "
            "for accuracies); token columns give the relative change"
        )
    legend += [
        "",
        "Cells: the mean over the row's seeds; `(low, high)`: its 95% t interval over the seeds (with 2 or "
        "more; for the SLM − CLM row, of the per-seed differences; cut to 0-100 for an accuracy, to ±100 for "
        "a difference); `[low, high]`: its 95% bootstrap interval "
        "over the evaluation documents (accuracy tasks; for the SLM − CLM row, of the per-document "
        "differences, paired). The first says how much retraining moves a result, the second how much the "
        "sample of problems does.",
    ]
    md = markdown(shown, colalign=["left"] + ["right"] * (len(columns) + 1), disable_numparse=True)
    atomic_write_text(out_md, md + "\n".join(legend) + "\n")
    return df


# --------------------------------------------------------------------------- Figure 5's table
FIGURE5 = "figure5_general_gain_over_ct"
GAIN_COLUMNS = (
    "task",
    "metric",
    "lower_is_better",
    "clm",
    "slm",
    "gain",
    "seed_low",
    "seed_high",
    "sample_low",
    "sample_high",
    "paper_benchmark",
    "paper_gain",
)
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
    otherwise; it is the results table's SLM − CLM difference (of unrounded means over seeds), rounded, with
    its intervals over seeds and over documents (:meth:`Measured.difference`, turned for lower-is-better
    tasks). ``clm`` and ``slm`` are the rounded scores. ``mapping``: task -> the paper's Figure 5 benchmark
    it stands in for (a key of ``figure5_general_gain_over_ct``); mapped rows carry the paper's gain. A
    last row averages the accuracy tasks (the results table's ``AVG``; its paper gain: the mean over the
    same tasks, when all are mapped).

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
    for column, metric in [*tasks.items(), (AVG_COL, AVG_COL)]:
        lower = column in measured.lower
        sign = -1 if lower else 1
        iv = measured.difference(slm, clm, column)
        # turned for lower-is-better tasks (+ 0.0: no negative zero)
        lows = sorted([sign * iv.seed_low + 0.0, sign * iv.seed_high + 0.0])
        lows += sorted([sign * iv.sample_low + 0.0, sign * iv.sample_high + 0.0])
        bench = mapping.get(column)
        records.append(
            {
                "task": AVERAGE_ROW if column == AVG_COL else column,
                "metric": measured.metric_keys[column] if column != AVG_COL else "",
                "lower_is_better": lower,
                "clm": round_metric(before[column], metric),
                "slm": round_metric(after[column], metric),
                "gain": round_metric(sign * round_metric(iv.value, metric), metric) + 0.0,
                **{k: round_metric(v, metric) for k, v in zip(GAIN_COLUMNS[6:10], lows)},
                "paper_benchmark": bench,
                "paper_gain": paper.at[0, bench] if bench else math.nan,
            }
        )
    data = pd.DataFrame.from_records(records, columns=GAIN_COLUMNS)
    acc = data[~data["lower_is_better"]].iloc[:-1]
    data.loc[len(data) - 1, "metric"] = f"mean of {len(acc)} accuracy tasks"
    if acc["paper_benchmark"].notna().all():
        data.loc[len(data) - 1, "paper_gain"] = round(acc["paper_gain"].mean(), 1)
    data["lower_is_better"] = data["lower_is_better"].astype(bool)

    stem = Path(out_stem)
    atomic_write_text(stem.with_suffix(".csv"), data.to_csv(index=False))
    headers = {"task": "Task", "metric": "Metric", "clm": "CLM", "slm": "SLM", "gain": "Gain"}
    shown = pd.DataFrame({title: [format_cell(v, col) for v in data[col]] for col, title in headers.items()})
    metrics = [*tasks.values(), AVG_COL]
    shown["Gain"] = [
        _shown(Interval(r.gain, 0, r.seed_low, r.seed_high, r.sample_low, r.sample_high), metric, signed=True)
        for r, metric in zip(data.itertuples(), metrics)
    ]
    if mapping:
        shown["Paper benchmark"] = [format_cell(v, "paper_benchmark") for v in data["paper_benchmark"]]
        shown["Paper gain"] = [format_cell(v, "paper_gain", signed=True) for v in data["paper_gain"]]
    numeric = [c in ("CLM", "SLM", "Gain", "Paper gain") for c in shown.columns]
    lowers = list(data.loc[data["lower_is_better"], "task"])
    paper_label = paper.at[0, paper.attrs["label_column"]]
    paper_note = (
        f"{paper_label}, general domain, {paper.at[0, AVERAGE_ROW]:+.1f} on average over its benchmarks "
        f"({FIGURE5} in {paper.attrs['source']})"
    )
    notes = [
        ("CLM / SLM", f"rows `{measured.names[clm]}` / `{measured.names[slm]}` of the results table"),
        (
            "Gain",
            "SLM − CLM in percentage points; positive = SLM better"
            + (f"; for {', '.join(lowers)} (lower is better) CLM − SLM in its own units" if lowers else "")
            + "; (low, high): 95% interval over the seeds both runs have; [low, high]: 95% bootstrap interval "
            "over the evaluation documents (paired)",
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
CHECKPOINT_COLUMNS = ("run", "seed", "tokens_seen", "tokens_selected", "task", "metric", "value")


def checkpoints_table(runs: list[dict], task_metrics: dict[str, str], out_csv: Path) -> pd.DataFrame:
    """Long-form accuracy-vs-tokens data: columns :data:`CHECKPOINT_COLUMNS`.

    ``runs``: one entry per replicate, ``[{"run": "slm", "seed": 1, "checkpoints": [{"tokens", "eval_json",
    "train_stats"}]}]``. ``tokens_seen``/``tokens_selected`` come from the checkpoint's stats JSON when
    given; otherwise ``tokens_seen`` is the checkpoint's ``tokens`` and ``tokens_selected`` is empty.
    ``metric`` is the full lm-eval key; ``value`` is lm-eval's number unscaled (fractions for
    accuracies). Sorted by run, then seed, then tokens_seen, then the order of ``task_metrics``.
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
                        "seed": run.get("seed"),
                        "tokens_seen": int(seen),
                        "tokens_selected": selected,
                        "task": task,
                        "metric": key,
                        "value": value,
                        "_order": order,
                    }
                )
    df = pd.DataFrame.from_records(records, columns=[*CHECKPOINT_COLUMNS, "_order"])
    df = df.sort_values(["run", "seed", "tokens_seen", "_order"], kind="stable").drop(columns="_order")
    for col in ("seed", "tokens_selected"):
        df[col] = df[col].astype("Int64")
    df = df.reset_index(drop=True)
    atomic_write_text(out_csv, df.to_csv(index=False))
    return df


# --------------------------------------------------------------------------- the speed-up (Figure 1)
SPEEDUP_COLUMNS = ("column", "seed", "clm_final", "clm_tokens", "slm_tokens", "ratio")


def speedup_table(
    checkpoints: pd.DataFrame,
    start: Mapping[str, float],
    delta: tuple[str, str],
    accuracy_tasks: list[str],
    out_md: Path,
    out_csv: Path,
) -> pd.DataFrame:
    """The tokens SLM needs to reach CLM's final accuracy, as a share of CLM's tokens (the paper's Figure 1
    "the same accuracy with N× fewer tokens").

    Per seed both runs have: CLM's final accuracy (the mean of ``accuracy_tasks``, and each task alone), the
    first token count at which SLM's curve reaches it (:func:`slm.intervals.first_crossing`, linear between
    evaluated points; the curve starts at 0 tokens with ``start``, the scores of the model SLM starts from, in
    display units, e.g. a row of :attr:`Measured.rows`), and the
    ratio of the two token counts (tokens seen); NaN where SLM never gets there. The Markdown gives, per
    column, the mean ratio over the seeds where SLM got there, its 95% interval over those seeds, the
    speed-up (1 / ratio) and in how many seeds SLM got there.
    """
    slm, clm = delta
    per_task = checkpoints[checkpoints["task"].isin(accuracy_tasks)]
    wide = per_task.pivot_table(index=["run", "seed", "tokens_seen"], columns="task", values="value", aggfunc="mean")
    wide = 100.0 * wide[accuracy_tasks]
    wide[AVG_COL] = wide[accuracy_tasks].mean(axis=1)
    records = []
    seeds = sorted(
        set(wide.loc[slm].index.get_level_values("seed")) & set(wide.loc[clm].index.get_level_values("seed"))
    )
    for column in [AVG_COL, *accuracy_tasks]:
        for seed in seeds:
            clm_curve = wide.loc[(clm, seed), column]
            slm_curve = wide.loc[(slm, seed), column]
            target, clm_tokens = float(clm_curve.iloc[-1]), int(clm_curve.index[-1])
            tokens = [0, *slm_curve.index]
            values = [start[column], *slm_curve]
            reached = first_crossing(tokens, values, target)
            records.append(
                {
                    "column": column,
                    "seed": seed,
                    "clm_final": target,
                    "clm_tokens": clm_tokens,
                    "slm_tokens": reached,
                    "ratio": reached / clm_tokens,
                }
            )
    data = pd.DataFrame.from_records(records, columns=SPEEDUP_COLUMNS)
    atomic_write_text(out_csv, data.to_csv(index=False))

    summary = []
    for column, block in data.groupby("column", sort=False):
        ratios = block["ratio"].dropna()
        low, high = seed_interval(ratios)
        mean = float(ratios.mean()) if len(ratios) else math.nan
        summary.append(
            {
                "accuracy": column,
                "CLM final (%)": format_metric(float(block["clm_final"].mean()), column),
                "SLM tokens to reach it": human_tokens(block["slm_tokens"].mean()) if len(ratios) else "not reached",
                "ratio": ""
                if math.isnan(mean)
                else f"{mean:.2f}" + ("" if math.isnan(low) else f" ({low:.2f}, {high:.2f})"),
                "speed-up": "" if math.isnan(mean) else (f"{1 / mean:.2f}×" if mean > 0 else "SLM's start reaches it"),
                "seeds reaching it": f"{len(ratios)} of {len(block)}",
            }
        )
    legend = (
        f"\nSLM ({slm}) against CLM ({clm}), per seed both have: the tokens seen at which SLM's accuracy first "
        "reaches CLM's final accuracy (linear between evaluated checkpoints; SLM's curve starts at 0 tokens "
        "with the model it starts from), divided by the tokens CLM saw. ratio: the mean over the seeds where "
        "SLM reached it, (low, high) its 95% t interval over those seeds (with 2 or more); speed-up: 1 / ratio. "
        "Per seed: speedup.csv.\n"
    )
    atomic_write_text(out_md, markdown(pd.DataFrame(summary), index=False, disable_numparse=True) + legend)
    return data


# --------------------------------------------------------------------------- selection rates
def _kind_order(stats: Iterable[dict]) -> list[str]:
    order: list[str] = []
    for s in stats:
        for kind in list(s.get("kind_names", [])) + list(s.get("kinds", {})):
            if kind not in order:
                order.append(kind)
    return order


def soft_effective_share(stats: Mapping, metrics: Path) -> float | None:
    """A soft-weighted run's effective sample size (Σw)²/Σw², the mean over the steps logged in
    ``metrics`` (its ``metrics.jsonl``), as % of a step's loss-bearing tokens (the count in its loaded
    ``stats`` over its steps); None for a run that logged none (hard selection)."""
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    entries = [json.loads(line) for line in lines if line.strip()]
    sizes = [e["effective_sample_size"] for e in entries if "effective_sample_size" in e]
    if not sizes:
        return None
    per_step = stats["tokens_loss_bearing"] / stats["steps"]
    return 100.0 * float(np.mean(sizes)) / per_step


def selection_table(stats_by_run: Mapping[str, list[str | Path]], out_md: Path, out_csv: Path) -> pd.DataFrame:
    """Per span kind, the percentage of its loss-bearing tokens each run selected.

    ``stats_by_run``: run -> the stats JSONs of its replicates (their counts are summed). Rows: kinds in
    ``kind_names`` order (kinds with ``seen == 0`` in every run dropped) and a final ``"all"`` row (sum of
    selected / sum of seen over the kinds). Columns: one per run, values ``100 * selected / seen`` rounded
    to 1 decimal (NaN where that run saw none of the kind), then ``"share of tokens (%)"``: the kind's
    share of all loss-bearing tokens, taken from the first run. When a run weights its tokens softly
    (every token has a weight above 0, so its kind rows read 100), a last row ``"effective (soft)"``: its
    mean effective sample size over its seeds (soft_effective_share); NaN for hard-selecting runs.
    """
    if not stats_by_run:
        raise ValueError("selection_table: no stats JSONs given")
    counts: dict[str, dict[str, dict[str, int]]] = {}
    kind_names: list[dict] = []
    effective: dict[str, list[float | None]] = {}
    for run, paths in stats_by_run.items():
        counts[run] = {}
        effective[run] = []
        for path in paths:
            stats = load_stats(path)
            if not stats.get("kinds"):
                raise ValueError(f"training stats JSON {path} has no per-kind counts ('kinds')")
            kind_names.append(stats)
            effective[run].append(soft_effective_share(stats, Path(path).with_name("metrics.jsonl")))
            for kind, c in stats["kinds"].items():
                total = counts[run].setdefault(kind, {"seen": 0, "selected": 0})
                total["seen"] += c["seen"]
                total["selected"] += c["selected"]
    runs = list(counts)
    kinds = [k for k in _kind_order(kind_names) if any(counts[r].get(k, {}).get("seen", 0) > 0 for r in runs)]

    rows: dict[str, dict[str, float]] = {}
    for kind in kinds + [ALL_ROW]:
        row = {}
        for run in runs:
            if kind == ALL_ROW:
                seen = sum(v["seen"] for v in counts[run].values())
                sel = sum(v["selected"] for v in counts[run].values())
            else:
                seen = counts[run].get(kind, {}).get("seen", 0)
                sel = counts[run].get(kind, {}).get("selected", 0)
            row[run] = round(100.0 * sel / seen, 1) if seen else math.nan
        first = counts[runs[0]]
        total = sum(v["seen"] for v in first.values())
        share_seen = total if kind == ALL_ROW else first.get(kind, {}).get("seen", 0)
        row[SHARE_COL] = round(100.0 * share_seen / total, 1) if total else math.nan
        rows[kind] = row
    soft = any(share is not None for shares in effective.values() for share in shares)
    if soft:
        rows[EFFECTIVE_ROW] = {
            run: round(float(np.mean(shares)), 1) if None not in shares else math.nan
            for run, shares in effective.items()
        } | {SHARE_COL: math.nan}
    df = pd.DataFrame.from_dict(rows, orient="index")[runs + [SHARE_COL]]
    df.index.name = "kind"
    atomic_write_text(out_csv, df.to_csv())
    first_file = Path(next(iter(stats_by_run.values()))[0]).name
    note = (
        "\nCells: % of each kind's loss-bearing tokens selected for training by the run (summed over its "
        f"seeds); '{SHARE_COL}': the kind's share of all loss-bearing tokens ({first_file}).\n"
    )
    if soft:
        note += (
            f"A soft-weighted run gives every token a weight above 0, so its kind rows read 100; '{EFFECTIVE_ROW}' is "
            "its effective sample size (Σw)²/Σw² per step, the mean over its logged steps and seeds, as % of a "
            "step's loss-bearing tokens.\n"
        )
    atomic_write_text(out_md, markdown(df, floatfmt=".1f") + note)
    return df


# --------------------------------------------------------------------------- what the figures plot
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
    """Average accuracy (%) of ``tasks`` at every evaluated point of every run, over its seeds (Figure 1).

    ``x``: ``"tokens_seen"`` or ``"tokens_selected"``. Rows repeated for the same run, seed, token count and
    task (the final model evaluated at a checkpoint's token count) are averaged; ``attrs["repeated"]``
    counts them. Every point needs every task: a point lacking one is an error, and so is a
    perplexity-like metric (it cannot be averaged with accuracies); an lm-eval null is a gap.

    Columns: ``run``, ``x``, ``accuracy`` (mean over tasks, then over seeds, percent), ``low``, ``high``
    (its 95% t interval over seeds; NaN with one), ``n_seeds``, ``n_tasks``; runs in their order of
    appearance, then by ``x``.
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
    present = df.groupby(["run", "seed", x])["task"].agg(set)
    for (run, _seed, tokens), have in present.items():
        lacking = [t for t in tasks if t not in have]
        if lacking:
            raise ValueError(f"figure1: run {run!r} at {x}={tokens} lacks tasks {lacking} in {source}")
    run_order = list(dict.fromkeys(df["run"]))
    per_task = df.groupby(["run", "seed", x, "task"], sort=True)["value"].mean().unstack("task")
    per_seed = (100.0 * per_task[tasks].mean(axis=1, skipna=False)).rename("accuracy").reset_index()
    records = []
    for (run, tokens), block in per_seed.groupby(["run", x], sort=True):
        low, high = seed_interval(block["accuracy"], bounds=PERCENT)
        records.append(
            {
                "run": run,
                "x": tokens,
                "accuracy": block["accuracy"].mean(),
                "low": low,
                "high": high,
                "n_seeds": len(block),
            }
        )
    data = pd.DataFrame.from_records(records, columns=["run", "x", "accuracy", "low", "high", "n_seeds"])
    data["n_tasks"] = len(tasks)
    data["run"] = pd.Categorical(data["run"], categories=run_order, ordered=True)
    data = data.sort_values(["run", "x"], kind="stable").reset_index(drop=True)
    data["run"] = data["run"].astype(str)
    data.attrs.update(repeated=int(df.duplicated(["run", "seed", x, "task"]).sum()), source=source, x=x, tasks=tasks)
    return data


def downstream_losses(checkpoints: pd.DataFrame, loss_task: str, runs: Collection[str]) -> pd.DataFrame:
    """A held-out loss task's value at every evaluated point of ``runs`` (Figure 6's middle panel).

    Columns: ``run``, ``tokens_seen``, ``loss``; one row per point (the final model evaluated at a
    checkpoint's token count counted once).
    """
    rows = checkpoints[(checkpoints["task"] == loss_task) & checkpoints["run"].isin(list(runs))]
    return rows[["run", "tokens_seen"]].assign(loss=rows["value"]).drop_duplicates(["run", "tokens_seen"])


def loss_accuracy_points(checkpoints: pd.DataFrame, loss_task: str, accuracy_tasks: list[str]) -> pd.DataFrame:
    """Every evaluated model's held-out loss and mean accuracy (%) (Figure 7, downstream-loss panel).

    Columns: ``run``, ``seed``, ``tokens_seen``, ``loss`` (``loss_task``'s value), ``accuracy`` (mean of
    ``accuracy_tasks``, percent).
    """
    wide = checkpoints.pivot_table(index=["run", "seed", "tokens_seen"], columns="task", values="value").reset_index()
    return pd.DataFrame(
        {
            "run": wide["run"],
            "seed": wide["seed"],
            "tokens_seen": wide["tokens_seen"],
            "loss": wide[loss_task],
            "accuracy": 100 * wide[accuracy_tasks].mean(axis=1),
        }
    )


def selection_accuracy_points(
    selection: pd.DataFrame, checkpoints: pd.DataFrame, accuracy_tasks: list[str], seeds: Mapping[str, int]
) -> dict[str, pd.DataFrame]:
    """Accuracy (%) against the held-out loss on selected and on unselected tokens, at every evaluated point
    of the runs whose token dynamics ``selection`` holds (Figure 7 on the paper's axes).

    ``selection``: :func:`slm.dynamics.selection_losses` for one selection rule; ``seeds``: run -> the seed
    of the replicate its dynamics were measured on. Returns ``{"selected": points, "unselected": points}``,
    each with columns ``run``, ``tokens_seen``, ``loss``, ``accuracy`` (points the dynamics and the
    evaluations share: the checkpoints and the final model).
    """
    wide = checkpoints[checkpoints["task"].isin(accuracy_tasks)]
    wide = wide[wide["run"].map(seeds) == wide["seed"]]
    accuracy = (100 * wide.groupby(["run", "tokens_seen"])["value"].mean()).rename("accuracy").reset_index()
    joined = selection.merge(accuracy, on=["run", "tokens_seen"])
    return {
        side: joined[["run", "tokens_seen"]].assign(loss=joined[f"{side}_loss"], accuracy=joined["accuracy"])
        for side in ("selected", "unselected")
    }


def ratio_ablation(checkpoints: pd.DataFrame, ratio_runs: Mapping[str, float], tasks: list[str]) -> pd.DataFrame:
    """Accuracy (%) of each task at the end of each run that differs only in its selection ratio (Figure 9).

    ``ratio_runs``: run -> ratio in (0, 1] (CLM is 1.0). Every final model at a ratio (runs and seeds) is
    averaged. Columns: ``ratio``, ``task``, ``value`` (percent), ``low``, ``high`` (the 95% t interval over
    those models; NaN with one), ``n``; tasks in the given order.
    """
    bad = sorted({r for r in ratio_runs.values() if not 0 < r <= 1})
    if bad:
        raise ValueError(f"figure9: selection ratios must be in (0, 1], got {bad}")
    finals = checkpoints[checkpoints["run"].isin(list(ratio_runs))]
    finals = finals[finals["tokens_seen"] == finals.groupby("run")["tokens_seen"].transform("max")]
    finals = finals[finals["task"].isin(tasks)].drop_duplicates(["run", "seed", "task"], keep="last")
    measured = pd.DataFrame(
        {
            "ratio": finals["run"].map(ratio_runs).astype(float),
            "task": finals["task"].astype(str),
            "value": 100.0 * finals["value"].astype(float),
        }
    )
    records = []
    for (task, ratio), block in measured.groupby(["task", "ratio"], sort=False):
        low, high = seed_interval(block["value"], bounds=PERCENT)
        records.append(
            {"ratio": ratio, "task": task, "value": block["value"].mean(), "low": low, "high": high, "n": len(block)}
        )
    return pd.DataFrame.from_records(records, columns=["ratio", "task", "value", "low", "high", "n"])
