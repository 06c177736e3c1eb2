"""The Rho-1 paper's figures from this workflow's outputs (PNG, written atomically).

* :func:`figure1_accuracy_vs_tokens` — Figure 1: average accuracy against training tokens per run,
  from ``results/tables/checkpoints.csv``.
* :func:`figure6_heldout_losses` — Figure 6: held-out loss on the tokens SLM selects, on a
  downstream corpus and on the unselected tokens against tokens seen, SLM vs CLM, from the token
  dynamics files (:func:`slm.dynamics.selection_losses`) and ``checkpoints.csv``.
* :func:`figure7_accuracy_vs_loss` — Figure 7: accuracy against loss with the paper's fit
  ``Acc(L) = log(a*L + c)`` (least squares, numpy only: :func:`fit_log_linear`).
* :func:`figure9_ratio_ablation` — Figure 9: accuracy against selection ratio, beside the paper's
  reported values.
* :func:`figure5_gains` — Figure 5: per-task gain of SLM over CLM from ``results/tables/results.csv``
  (bars and a Markdown / CSV / LaTeX table), beside the paper's gains where a task is mapped.

Every function renders with matplotlib's Agg canvas (no pyplot, no global backend switch) and
returns a :class:`FigureResult`: the PNG path, a caption saying what is plotted from which files,
the DataFrame actually plotted, and (Figure 7) the fit.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from slm.io import atomic_path, atomic_write_text
from slm.reported import _bare, _format, _latex, reported_table
from slm.tables import AVG_COL, DELTA_ROW, SEEN_COL, TRAIN_COL, human_tokens, is_raw_metric

DPI = 120
X_COLUMNS = {"tokens_seen": "tokens seen", "tokens_selected": "tokens trained on (selected)"}
CHECKPOINT_COLUMNS = ("run", "tokens_seen", "tokens_selected", "task", "metric", "value")


@dataclass
class FigureResult:
    """What a figure function wrote: ``png``, its ``caption``, the ``data`` plotted, a ``fit``."""

    png: Path
    caption: str
    data: pd.DataFrame
    fit: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.caption


# --------------------------------------------------------------------------- helpers
TOKENS_FORMATTER = FuncFormatter(lambda v, _pos: human_tokens(v))


def _new_figure(ncols: int = 1, width: float = 6.4, height: float = 4.4) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save(fig: Figure, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out_png


def _colours(names: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _names(items) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


# --------------------------------------------------------------------------- Figure 1
def figure1_accuracy_vs_tokens(
    checkpoints_csv: str | Path,
    tasks: list[str],
    out_png: str | Path,
    *,
    x: str = "tokens_seen",
) -> FigureResult:
    """Average accuracy (%) of ``tasks`` against training tokens, one line per run.

    ``checkpoints_csv``: the long-form table of :func:`slm.tables.checkpoints_table` (``value``
    an lm-eval fraction).  ``x``: ``"tokens_seen"`` or ``"tokens_selected"``.  Rows repeated for
    the same run, token count and task (the final model evaluated at a checkpoint's token count)
    are averaged.  Every plotted point needs every task: a checkpoint lacking one is an error,
    and so is a perplexity-like metric (it cannot be averaged with accuracies).

    ``data``: columns ``run``, ``x``, ``accuracy`` (mean over tasks, percent), ``n_tasks``.
    """
    path = Path(checkpoints_csv)
    if x not in X_COLUMNS:
        raise ValueError(f"figure1: x must be one of {list(X_COLUMNS)}, not {x!r}")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("figure1: no tasks given")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoints table not found: {path}")
    df = pd.read_csv(path)
    missing_cols = [c for c in CHECKPOINT_COLUMNS if c not in df.columns]
    if missing_cols:
        raise ValueError(f"checkpoints table {path} is missing columns {missing_cols}")
    absent = [t for t in tasks if t not in set(df["task"])]
    if absent:
        raise ValueError(f"figure1: tasks {absent} not in checkpoints table {path} (it has: {sorted(set(df['task']))})")
    df = df[df["task"].isin(tasks)]
    raw = sorted({m for m in df["metric"].astype(str) if is_raw_metric(m)})
    if raw:
        raise ValueError(f"figure1: metrics {raw} in {path} are perplexity-like and cannot be averaged with accuracies")
    if df[x].isna().any():
        runs = sorted(set(df.loc[df[x].isna(), "run"]))
        raise ValueError(f"figure1: {x} is empty for runs {runs} in {path}")
    n_dupes = int(df.duplicated(["run", x, "task"]).sum())
    run_order = list(dict.fromkeys(df["run"]))
    per_task = df.groupby(["run", x, "task"], sort=True)["value"].mean().unstack("task")
    # a NaN value can be an lm-eval null (plotted as a gap); a missing row is an error
    present = df.groupby(["run", x])["task"].agg(set)
    for (run, tokens), have in present.items():
        lacking = [t for t in tasks if t not in have]
        if lacking:
            raise ValueError(f"figure1: run {run!r} at {x}={tokens} lacks tasks {lacking} in {path}")
    acc = 100.0 * per_task[tasks].mean(axis=1, skipna=False)
    data = acc.rename("accuracy").reset_index().rename(columns={x: "x"})
    data["n_tasks"] = len(tasks)
    data["run"] = pd.Categorical(data["run"], categories=run_order, ordered=True)
    data = data.sort_values(["run", "x"], kind="stable").reset_index(drop=True)
    data["run"] = data["run"].astype(str)

    fig, (ax,) = _new_figure()
    colours = _colours(run_order)
    for run in run_order:
        sub = data[data["run"] == run]
        ax.plot(sub["x"], sub["accuracy"], marker="o", color=colours[run], label=run)
    ax.xaxis.set_major_formatter(TOKENS_FORMATTER)
    ax.set_xlabel(X_COLUMNS[x])
    ax.set_ylabel(f"average accuracy (%), {len(tasks)} task{'s' if len(tasks) > 1 else ''}")
    ax.set_title(f"Average accuracy of {_names(tasks)} vs {X_COLUMNS[x]}")
    ax.grid(alpha=0.3)
    ax.legend(title="run")
    out = _save(fig, out_png)
    caption = (
        f"Figure 1 (paper) for this run: average accuracy (%) over {_names(tasks)} against "
        f"{X_COLUMNS[x]}, one line per run ({_names(run_order)}), one marker per evaluated model "
        f"(checkpoints and final model), from {path}."
    )
    if n_dupes:
        caption += f" {n_dupes} repeated (run, tokens, task) rows were averaged."
    return FigureResult(out, caption, data)


# --------------------------------------------------------------------------- Figure 6
#: selection_losses column -> panel title of Figure 6
HELD_OUT_PANELS = {"selected_loss": "tokens SLM selects", "unselected_loss": "tokens SLM does not select"}


def figure6_heldout_losses(
    selection: pd.DataFrame,
    out_png: str | Path,
    *,
    selector: str,
    ratio: float,
    downstream: pd.DataFrame | None = None,
    downstream_label: str = "",
    source: str = "",
) -> FigureResult:
    """Figure 6: held-out loss on the tokens SLM selects, on a downstream corpus, on the rest.

    ``selection``: :func:`slm.dynamics.selection_losses` (``run``, ``tokens_seen``, ``selected_loss``,
    ``unselected_loss``); ``downstream``: ``run``, ``tokens_seen``, ``loss`` (e.g. a held-out loss
    task per checkpoint), drawn as the middle panel when given.
    ``data``: long form ``run``, ``tokens_seen``, ``panel``, ``loss``.
    """
    frames = [selection.assign(panel=HELD_OUT_PANELS[key], loss=selection[key]) for key in HELD_OUT_PANELS]
    panels = [HELD_OUT_PANELS["selected_loss"], HELD_OUT_PANELS["unselected_loss"]]
    if downstream is not None and not downstream.empty:
        frames.insert(1, downstream.assign(panel=downstream_label))
        panels.insert(1, downstream_label)
    data = pd.concat(frames, ignore_index=True)[["run", "tokens_seen", "panel", "loss"]]
    if not np.isfinite(data["loss"]).any():
        raise ValueError(f"figure6: no finite losses ({source})")
    runs = list(dict.fromkeys(data["run"]))
    colours = _colours(runs)
    fig, axes = _new_figure(ncols=len(panels), width=4.6)
    for ax, panel in zip(axes, panels):
        for run in runs:
            sub = data[(data["panel"] == panel) & (data["run"] == run)].sort_values("tokens_seen")
            ax.plot(sub["tokens_seen"], sub["loss"], marker="o", color=colours[run], label=run)
        ax.xaxis.set_major_formatter(TOKENS_FORMATTER)
        ax.set_xlabel("tokens seen")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out loss")
    axes[0].legend(title="run")
    out = _save(fig, out_png)
    caption = (
        f"Held-out losses against tokens seen for {_names(runs)}, on the same validation tokens for every "
        f"run: at each checkpoint {selector} ranks the slice's tokens by excess loss (its loss there minus "
        f"the reference loss) and selects the top {ratio:.0%}; left, each run's mean loss (nats/token) on "
        "those selected tokens; right, on the unselected ones"
        + (f"; middle, {downstream_label}" if len(panels) == 3 else "")
        + f". The paper's Figure 6 finds SLM lower on the first two and higher on unselected tokens. ({source})"
    )
    return FigureResult(out, caption, data)


# --------------------------------------------------------------------------- Figure 7
def fit_log_linear(loss, accuracy, *, max_iter: int = 500) -> dict[str, float]:
    """Least-squares fit of ``accuracy = log(a * loss + c)`` (the paper's Figure 7 law).

    Levenberg-Marquardt on the residuals ``accuracy - log(a*loss + c)``, started from a weighted
    linear fit of ``exp(accuracy)`` on ``loss``; steps that would make ``a*loss + c <= 0`` at a
    data point are rejected.  Works in a centred, scaled parameterisation (accuracy may be in
    percent, where ``exp(accuracy)`` is huge).  Returns ``a``, ``c``, ``r2`` (on accuracy),
    ``rmse`` and ``n``.  Needs at least 3 finite points with two different losses.
    """
    x = np.asarray(loss, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("fit_log_linear: loss and accuracy must be 1-D and of equal length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3:
        raise ValueError(f"fit_log_linear: need at least 3 finite points, have {len(x)}")
    xs = float(np.std(x))
    if xs == 0.0:
        raise ValueError("fit_log_linear: all losses are equal; the fit is undetermined")
    xm, y0 = float(np.mean(x)), float(np.max(y))
    u = (x - xm) / xs
    t = y - y0  # fit t = log(p*u + q)
    z = np.exp(t)

    def sse_of(p: float, q: float) -> float:
        g = p * u + q
        return float(np.sum((t - np.log(g)) ** 2)) if np.all(g > 0) else math.inf

    # start: minimise sum(((p u + q) - z) / z)^2, the first-order form of the log residuals
    design = np.column_stack([u, np.ones_like(u)]) / z[:, None]
    (p, q), *_ = np.linalg.lstsq(design, np.ones_like(z), rcond=None)
    if not np.all(p * u + q > 0):
        p, q = 0.0, float(np.mean(z))
    sse, lam = sse_of(p, q), 1e-3
    for _ in range(max_iter):
        g = p * u + q
        r = t - np.log(g)
        jac = -np.column_stack([u / g, 1.0 / g])  # d r / d(p, q)
        jtj, jtr = jac.T @ jac, jac.T @ r
        improved = False
        while lam < 1e16:
            step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj)) + 1e-300 * np.eye(2), -jtr)
            cand = sse_of(p + step[0], q + step[1])
            if cand <= sse:
                gain = sse - cand
                p, q, sse = p + step[0], q + step[1], cand
                lam = max(lam / 10, 1e-12)
                improved = True
                break
            lam *= 10
        if not improved or gain <= 1e-15 * max(sse, 1e-300) or np.abs(step).max() < 1e-14:
            break
    scale = math.exp(y0)
    a = p / xs * scale
    c = (q - p * xm / xs) * scale
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse < 1e-20 else math.nan)
    return {"a": float(a), "c": float(c), "r2": float(r2), "rmse": math.sqrt(sse / len(x)), "n": len(x)}


def log_linear(loss, a: float, c: float) -> np.ndarray:
    """``log(a*loss + c)``, NaN where ``a*loss + c <= 0``."""
    g = a * np.asarray(loss, dtype=float) + c
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(g > 0, np.log(np.where(g > 0, g, 1.0)), np.nan)


def figure7_accuracy_vs_loss(
    points: pd.DataFrame,
    out_png: str | Path,
    *,
    source: str = "the given points",
    loss_label: str = "loss",
    accuracy_label: str = "accuracy (%)",
) -> FigureResult:
    """Accuracy against loss, one colour per run, with the fitted ``Acc(L) = log(a*L + c)``.

    ``points``: columns ``run``, ``loss``, ``accuracy`` (accuracy in the units to fit; the paper
    uses percent).  ``source`` names where the points came from (for the caption); the labels
    name the axes (e.g. ``"loss on selected tokens"``).  One fit over all points.

    ``fit``: ``a``, ``c``, ``r2``, ``rmse``, ``n`` (:func:`fit_log_linear`).  ``data``: the points.
    """
    missing = [c for c in ("run", "loss", "accuracy") if c not in points.columns]
    if missing:
        raise ValueError(f"figure7: points lack columns {missing}")
    data = points[["run", "loss", "accuracy"]].copy()
    data["run"] = data["run"].astype(str)
    fit = fit_log_linear(data["loss"], data["accuracy"])
    runs = list(dict.fromkeys(data["run"]))
    colours = _colours(runs)

    fig, (ax,) = _new_figure()
    for run in runs:
        sub = data[data["run"] == run]
        ax.scatter(sub["loss"], sub["accuracy"], color=colours[run], label=run, zorder=3)
    lo, hi = float(data["loss"].min()), float(data["loss"].max())
    pad = 0.05 * (hi - lo)
    grid = np.linspace(lo - pad, hi + pad, 200)
    ax.plot(
        grid,
        log_linear(grid, fit["a"], fit["c"]),
        color="black",
        linewidth=1.2,
        label=f"log({fit['a']:.4g}·L + {fit['c']:.4g}), R² = {fit['r2']:.3f}",
    )
    ax.set_xlabel(loss_label)
    ax.set_ylabel(accuracy_label)
    ax.set_title(f"{accuracy_label} vs {loss_label}")
    ax.grid(alpha=0.3)
    ax.legend()
    out = _save(fig, out_png)
    caption = (
        f"Figure 7 (paper) for this run: {accuracy_label} against {loss_label}, {fit['n']} points "
        f"from {source} (runs {_names(runs)}), with the least-squares fit Acc(L) = log(a*L + c): "
        f"a = {fit['a']:.6g}, c = {fit['c']:.6g}, R² = {fit['r2']:.4f}."
    )
    return FigureResult(out, caption, data, fit)


# --------------------------------------------------------------------------- Figure 9
def figure9_ratio_ablation(
    results: pd.DataFrame,
    out_png: str | Path,
    *,
    source: str = "the given results",
    values_in: str = "percent",
    reported_path: str | Path | None = None,
) -> FigureResult:
    """Accuracy against selection ratio per task (left), the paper's Figure 9 values (right).

    ``results``: columns ``ratio`` (in (0, 1]; 1.0 is CLM), ``task``, ``value``; ``values_in``
    ``"percent"`` or ``"fraction"`` (lm-eval's numbers, multiplied by 100).  Repeated
    (ratio, task) rows are averaged.  The right panel draws ``figure9_selection_ratio`` of the
    paper-reported YAML dashed, labelled "paper, 1B, 5B tokens".

    ``data``: long form ``source`` (``"measured"``/``"paper"``), ``ratio``, ``task``, ``value`` (%).
    """
    missing = [c for c in ("ratio", "task", "value") if c not in results.columns]
    if missing:
        raise ValueError(f"figure9: results lack columns {missing}")
    if values_in not in ("percent", "fraction"):
        raise ValueError(f"figure9: values_in must be 'percent' or 'fraction', not {values_in!r}")
    measured = results[["ratio", "task", "value"]].copy()
    measured["ratio"] = measured["ratio"].astype(float)
    bad = sorted(set(measured.loc[~((measured["ratio"] > 0) & (measured["ratio"] <= 1)), "ratio"]))
    if bad:
        raise ValueError(f"figure9: selection ratios must be in (0, 1], got {bad}")
    if values_in == "fraction":
        measured["value"] = 100.0 * measured["value"].astype(float)
    tasks = list(dict.fromkeys(measured["task"].astype(str)))
    measured["task"] = measured["task"].astype(str)
    measured = measured.groupby(["task", "ratio"], sort=False)["value"].mean().reset_index()
    measured.insert(0, "source", "measured")

    paper = reported_table("figure9_selection_ratio", path=reported_path)
    paper_tasks = paper.attrs["score_columns"]
    paper_long = paper.melt(id_vars="ratio", value_vars=paper_tasks, var_name="task", value_name="value")
    paper_long.insert(0, "source", "paper")
    data = pd.concat([measured, paper_long[measured.columns]], ignore_index=True)
    data = data[["source", "ratio", "task", "value"]]

    ratios = sorted(set(data["ratio"]))
    labels = [f"{r:.0%}" + ("\n(CLM)" if r == 1.0 else "") for r in ratios]
    fig, (left, right) = _new_figure(ncols=2, width=5.2)
    colours = _colours(tasks)
    for task in tasks:
        sub = measured[measured["task"] == task].sort_values("ratio")
        left.plot(sub["ratio"], sub["value"], marker="o", color=colours[task], label=task)
    left.set_title("this run: accuracy vs selection ratio")
    paper_colours = _colours(paper_tasks)
    for task in paper_tasks:
        sub = paper_long[paper_long["task"] == task].sort_values("ratio")
        right.plot(
            sub["ratio"], sub["value"], marker="s", linestyle="--", color=paper_colours[task], label=f"{task} (paper)"
        )
    right.set_title("paper, 1B, 5B tokens (approx., read off Fig. 9)")
    for ax in (left, right):
        ax.set_xticks(ratios, labels)
        ax.set_xlabel("selection ratio (share of tokens trained on)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    out = _save(fig, out_png)
    caption = (
        f"Figure 9 (paper) for this run: accuracy (%) against the selection ratio for "
        f"{_names(tasks)} from {source} (left, solid); right, dashed: the paper's "
        f"{_names(paper_tasks)} accuracies of the 1B model after 5B tokens, read off the paper's "
        f"Figure 9 (approximate; figure9_selection_ratio in {paper.attrs['source']}). "
        "Ratio 100% is CLM."
    )
    return FigureResult(out, caption, data)


# --------------------------------------------------------------------------- Figure 5
FIGURE5 = "figure5_general_gain_over_ct"
GAIN_COLUMNS = ("task", "metric", "lower_is_better", "clm", "slm", "gain", "paper_benchmark", "paper_gain")
AVERAGE_ROW = "average"


def figure5_gains(
    results_csv: str | Path,
    delta: tuple[str, str],
    out_png: str | Path,
    out_stem: str | Path,
    *,
    mapping: Mapping[str, str] | None = None,
    lower_is_better: Collection[str] = (),
    reported_path: str | Path | None = None,
) -> FigureResult:
    """Per-task gain of the SLM run over the CLM run as bars and a table (the paper's Figure 5).

    ``results_csv``: the CSV of :func:`slm.tables.results_table` (rows: models; task columns
    headed ``"<task> [<metric>]"``).  ``delta``: the (SLM, CLM) row names (results.csv's Δ row, computed
    before rounding, gives the difference when present).  The gain is SLM minus
    CLM, and CLM minus SLM for ``lower_is_better`` tasks and perplexity-like metrics, so positive
    always means SLM did better: percentage points for accuracies, raw units otherwise.
    ``mapping``: task -> the paper's Figure 5 benchmark it stands in for (a key of
    ``figure5_general_gain_over_ct``); mapped rows carry the paper's gain and get a second bar.
    A last row averages the accuracy tasks (its paper gain: the mean over the same tasks, when
    all are mapped).

    Writes ``out_png`` and the table as ``out_stem`` + ``.md``, ``.csv`` and ``.tex``.
    ``data``: the table (columns :data:`GAIN_COLUMNS`, the average row last).
    """
    path = Path(results_csv)
    if not path.is_file():
        raise FileNotFoundError(f"results table not found: {path}")
    table = pd.read_csv(path, index_col=0)
    slm, clm = delta
    absent = [name for name in (slm, clm) if name not in table.index]
    if absent:
        raise ValueError(f"figure5: runs {absent} are not rows of {path} (it has: {list(table.index)})")
    tasks = {_bare(c): c for c in table.columns if c not in (AVG_COL, TRAIN_COL, SEEN_COL)}
    paper = reported_table(FIGURE5, path=reported_path)
    benchmarks = [b for b in paper.attrs["score_columns"] if b != AVERAGE_ROW]
    mapping = dict(mapping or {})
    unknown = [t for t in mapping if t not in tasks]
    if unknown:
        raise ValueError(f"figure5: mapped tasks {unknown} are not columns of {path} (tasks: {list(tasks)})")
    not_paper = [b for b in mapping.values() if b not in benchmarks]
    if not_paper:
        raise ValueError(f"figure5: {not_paper} are not benchmarks of the paper's Figure 5 ({benchmarks})")

    records = []
    for task, column in tasks.items():
        metric = column[len(task) + 2 : -1] if column != task else ""
        raw = is_raw_metric(metric)
        lower = task in lower_is_better or raw
        before, after = float(table.at[clm, column]), float(table.at[slm, column])
        # The Δ row (SLM − CLM of the same pair) was computed before rounding: prefer it to a
        # difference of rounded values.
        change = float(table.at[DELTA_ROW, column]) if DELTA_ROW in table.index else after - before
        bench = mapping.get(task)
        records.append(
            {
                "task": task,
                "metric": metric,
                "lower_is_better": lower,
                "clm": before,
                "slm": after,
                "gain": round(-change if lower else change, 4 if raw else 1),
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
        "clm": round(acc["clm"].mean(), 1),
        "slm": round(acc["slm"].mean(), 1),
        "gain": (
            float(table.at[DELTA_ROW, AVG_COL])
            if DELTA_ROW in table.index and AVG_COL in table.columns
            else round(acc["gain"].mean(), 1)
        ),
        "paper_benchmark": None,
        "paper_gain": round(acc["paper_gain"].mean(), 1) if acc["paper_benchmark"].notna().all() else math.nan,
    }
    data["lower_is_better"] = data["lower_is_better"].astype(bool)

    lowers = list(data.loc[data["lower_is_better"], "task"])
    paper_label = paper.at[0, paper.attrs["label_column"]]  # Rho-1 1B − Tinyllama-CT (80B tokens)
    paper_note = (
        f"{paper_label}, general domain, {paper.at[0, AVERAGE_ROW]:+.1f} on average over its benchmarks "
        f"({FIGURE5} in {paper.attrs['source']})"
    )
    _gain_table(
        data, Path(out_stem), slm=slm, clm=clm, source=path, lowers=lowers, paper_note=paper_note, mapped=bool(mapping)
    )

    labels = [
        f"{r.task} ({r.paper_benchmark})"
        if pd.notna(r.paper_benchmark)
        else f"{r.task} ({r.metric.split(',')[0]}, CLM − SLM)"
        if r.lower_is_better
        else f"{r.task} ({len(acc)} tasks)"
        if r.task == AVERAGE_ROW
        else r.task
        for r in data.itertuples()
    ]
    has_paper = bool(data["paper_gain"].notna().any())
    height = 0.38 if has_paper else 0.7
    y = np.arange(len(data))
    colours = _colours(["this run", "paper"])
    bars = [(data["gain"], f"this run: {slm} − {clm}", colours["this run"])]
    if has_paper:
        bars.append((data["paper_gain"], f"paper: {paper_label}", colours["paper"]))
    fig, (ax,) = _new_figure(width=8.0, height=max(3.5, 2.0 + 0.3 * len(data) * len(bars)))
    for i, (gains, label, colour) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * height
        drawn = ax.barh(y + offset, gains.fillna(0.0), height=height, color=colour, label=label)
        ax.bar_label(drawn, labels=[_format(g, "gain", signed=True) for g in gains], padding=3, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # first task on top, the average last, as in the paper
    ax.margins(x=0.15)
    ax.set_xlabel("gain of SLM over CLM (percentage points; loss-like tasks: raw units)")
    ax.set_title("Per-task gain of SLM over CLM")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center")  # below the axes: never over a bar
    out = _save(fig, out_png)

    caption = (
        f"Figure 5 (paper) for this run: per-task gain of {slm} over {clm} from {path}; positive means "
        "SLM did better: accuracies in percentage points (SLM − CLM)"
        + (f", {_names(lowers)} (lower is better) as CLM − SLM in its own units" if lowers else "")
        + f"; the last bar is the mean over the {len(acc)} accuracy tasks. Table: {out_stem}.md/.csv/.tex. "
    )
    if has_paper:
        caption += f"Second bar, where a task is mapped (tables.figure5_columns): the paper's Figure 5, {paper_note}."
    else:
        caption += (
            "No task is mapped to the paper's benchmarks (tables.figure5_columns), so there are no paper "
            "bars: the paper's Figure 5 is for the general-domain config (config/paper/general-1b.yaml): "
            f"{paper_note}."
        )
    return FigureResult(out, caption, data)


def _gain_table(
    data: pd.DataFrame,
    stem: Path,
    *,
    slm: str,
    clm: str,
    source: Path,
    lowers: list[str],
    paper_note: str,
    mapped: bool,
) -> None:
    """Figure 5's table as CSV (numbers as computed), Markdown and LaTeX (formatted, with a legend)."""
    atomic_write_text(stem.with_suffix(".csv"), data.to_csv(index=False))
    headers = {"task": "Task", "metric": "Metric", "clm": "CLM", "slm": "SLM", "gain": "Gain"}
    if mapped:
        headers.update(paper_benchmark="Paper benchmark", paper_gain="Paper gain")
    shown = pd.DataFrame(
        {
            title: [_format(v, col, signed=col in ("gain", "paper_gain")) for v in data[col]]
            for col, title in headers.items()
        }
    )
    numeric = [col in ("clm", "slm", "gain", "paper_gain") for col in headers]
    notes = [
        ("CLM / SLM", f"rows `{clm}` / `{slm}` of {source}"),
        (
            "Gain",
            "SLM − CLM in percentage points; positive = SLM better"
            + (f"; for {', '.join(lowers)} (lower is better) CLM − SLM in its own units" if lowers else ""),
        ),
        (
            AVERAGE_ROW,
            (
                "mean over the accuracy tasks (not the lower-is-better ones); its paper gain is "
                "the mean of those tasks' paper gains, given when all are mapped"
            ),
        ),
        (
            "paper",
            f"the paper's Figure 5, {paper_note}"
            if mapped
            else f"no task mapped (tables.figure5_columns); the paper's Figure 5 is {paper_note}",
        ),
    ]
    legend = ["", "Columns:"] + [f"- **{k}**: {v}" for k, v in notes]
    md = shown.to_markdown(index=False, disable_numparse=True, colalign=["right" if n else "left" for n in numeric])
    atomic_write_text(stem.with_suffix(".md"), md + "\n" + "\n".join(legend) + "\n")
    atomic_write_text(stem.with_suffix(".tex"), _latex(shown, notes, n_measured=len(data) - 1, numeric=numeric))


def make_figures(
    checkpoints_csv: str | Path,
    out_dir: str | Path,
    *,
    accuracy_tasks: list[str],
    loss_task: str | None,
    ratio_runs: Mapping[str, float],
    dynamics_by_run: Mapping[str, str | Path] | None = None,
    selector: str | None = None,
    ratio: float | None = None,
    results_csv: str | Path | None = None,
    delta: tuple[str, str] | None = None,
    table_stem: str | Path | None = None,
    mapping: Mapping[str, str] | None = None,
    lower_is_better: Collection[str] = (),
) -> dict[str, str]:
    """Every figure the run's outputs support; returns {file name: caption}.

    ``dynamics_by_run``: the token-dynamics ``losses.npz`` of the SLM run ``selector`` (selecting at
    ``ratio``) and the runs to compare with it on the same held-out tokens (Figure 6, with the
    ``loss_task`` per checkpoint as its downstream corpus); ``ratio_runs``: runs that differ
    only in their selection ratio, with that ratio (Figure 9; CLM is 1.0); ``loss_task``: a
    held-out loss task whose value per checkpoint is the loss axis of Figure 7.  With
    ``results_csv`` and ``delta`` (the SLM and CLM rows), Figure 5 (:func:`figure5_gains`) too,
    its table at ``table_stem`` (default: beside the PNG).
    """
    out_dir = Path(out_dir)
    captions = {}
    result = figure1_accuracy_vs_tokens(checkpoints_csv, accuracy_tasks, out_dir / "figure1.png")
    captions["figure1.png"] = str(result)
    table = pd.read_csv(checkpoints_csv)
    if dynamics_by_run:
        from slm.dynamics import selection_losses

        downstream = None
        if loss_task is not None:
            rows = table[(table["task"] == loss_task) & table["run"].isin(list(dynamics_by_run))]
            downstream = rows[["run", "tokens_seen"]].assign(loss=rows["value"]).drop_duplicates(["run", "tokens_seen"])
        result = figure6_heldout_losses(
            selection_losses(dynamics_by_run, selector, ratio),
            out_dir / "figure6.png",
            selector=selector,
            ratio=ratio,
            downstream=downstream,
            downstream_label=f"downstream: {loss_task}",
            source=f"{_names(map(str, dynamics_by_run.values()))}; {checkpoints_csv}",
        )
        atomic_write_text(out_dir / "figure6.csv", result.data.to_csv(index=False))
        captions["figure6.png"] = str(result)
    if loss_task is not None:
        wide = table.pivot_table(index=["run", "tokens_seen"], columns="task", values="value").reset_index()
        points = pd.DataFrame(
            {
                "run": wide["run"],
                "loss": wide[loss_task],
                "accuracy": 100 * wide[accuracy_tasks].mean(axis=1),
            }
        )
        result = figure7_accuracy_vs_loss(
            points,
            out_dir / "figure7.png",
            source=str(checkpoints_csv),
            loss_label=f"held-out loss ({loss_task})",
            accuracy_label="mean accuracy (%)",
        )
        captions["figure7.png"] = str(result)
    finals = table[table["run"].isin(list(ratio_runs))]
    finals = finals[finals["tokens_seen"] == finals.groupby("run")["tokens_seen"].transform("max")]
    finals = finals[finals["task"].isin(accuracy_tasks)]
    results = pd.DataFrame({"ratio": finals["run"].map(ratio_runs), "task": finals["task"], "value": finals["value"]})
    result = figure9_ratio_ablation(results, out_dir / "figure9.png", source=str(checkpoints_csv), values_in="fraction")
    captions["figure9.png"] = str(result)
    if results_csv is not None and delta is not None:
        result = figure5_gains(
            results_csv,
            delta,
            out_dir / "figure5.png",
            table_stem or out_dir / "figure5",
            mapping=mapping,
            lower_is_better=lower_is_better,
        )
        captions["figure5.png"] = str(result)
    return captions
