"""The Rho-1 paper's figures from this workflow's tables (PNG, written atomically): one function per
figure, each drawing data already shaped by :mod:`slm.tables` (or :mod:`slm.dynamics`, :mod:`slm.tir`).

* :func:`figure1_accuracy_vs_tokens` — Figure 1: average accuracy against training tokens per run
  (:func:`slm.tables.accuracy_curve`).
* :func:`figure6_heldout_losses` — Figure 6: held-out loss on the tokens SLM selects, on a
  downstream corpus and on the unselected tokens against tokens seen, SLM vs CLM
  (:func:`slm.dynamics.selection_losses`, :func:`slm.tables.downstream_losses`).
* :func:`figure7_accuracy_vs_loss` — Figure 7: accuracy against loss with the paper's fit
  ``Acc(L) = log(a*L + c)`` (:func:`fit_log_linear`, least squares by ``scipy.optimize.curve_fit``).
* :func:`figure9_ratio_ablation` — Figure 9: accuracy against selection ratio
  (:func:`slm.tables.ratio_ablation`), beside the paper's reported values.
* :func:`figure5_gains` — Figure 5: per-task gain of SLM over CLM (:func:`slm.tables.gains_table`),
  beside the paper's gains where a task is mapped.
* :func:`table2_curve_figure` — Table 2's learning curve: tool-integrated accuracy along each
  fine-tuning, every seed and their mean (:func:`slm.tir.tir_curve`, which draws it beside its table).

:func:`make_figures` draws every figure a run's tables support. Every function renders with
matplotlib's Agg canvas (no pyplot, no global backend switch) and returns a :class:`FigureResult`:
the PNG path, a caption saying what is plotted from which files, the data plotted, and (Figure 7)
the fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from slm.formatting import format_cell, human_tokens, join_names
from slm.io import atomic_path, atomic_write_text
from slm.reported import reported_table
from slm.tables import (
    AVERAGE_ROW,
    FIGURE5,
    X_COLUMNS,
    accuracy_curve,
    downstream_losses,
    loss_accuracy_points,
    ratio_ablation,
    read_checkpoints,
    selection_accuracy_points,
)

DPI = 120


@dataclass
class FigureResult:
    """What a figure function wrote: ``png``, its ``caption``, the ``data`` plotted, a ``fit``."""

    png: Path
    caption: str
    data: pd.DataFrame
    fit: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.caption


# --------------------------------------------------------------------------- helpers
TOKENS_FORMATTER = FuncFormatter(lambda v, _pos: human_tokens(v))


def _new_figure(ncols: int = 1, width: float = 6.4, height: float = 4.4, nrows: int = 1) -> tuple[Figure, list]:
    """A figure of ``nrows`` x ``ncols`` panels, returned row by row."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
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


# --------------------------------------------------------------------------- Figure 1
def figure1_accuracy_vs_tokens(curve: pd.DataFrame, out_png: str | Path) -> FigureResult:
    """Average accuracy (%) against training tokens, one line per run (the mean over its seeds, with their
    95% interval as a band), one marker per evaluated point.

    ``curve``: :func:`slm.tables.accuracy_curve` (its ``attrs`` name the tasks, the x column and the
    source table).
    """
    tasks, x, source = curve.attrs["tasks"], curve.attrs["x"], curve.attrs["source"]
    run_order = list(dict.fromkeys(curve["run"]))
    fig, (ax,) = _new_figure()
    colours = _colours(run_order)
    for run in run_order:
        sub = curve[curve["run"] == run]
        seeds = int(sub["n_seeds"].max())
        label = f"{run} ({seeds} seeds)" if seeds > 1 else run
        ax.plot(sub["x"], sub["accuracy"], marker="o", color=colours[run], label=label)
        if seeds > 1:
            ax.fill_between(sub["x"], sub["low"], sub["high"], color=colours[run], alpha=0.2, linewidth=0)
    ax.xaxis.set_major_formatter(TOKENS_FORMATTER)
    ax.set_xlabel(X_COLUMNS[x])
    ax.set_ylabel(f"average accuracy (%), {len(tasks)} task{'s' if len(tasks) > 1 else ''}")
    ax.set_title(f"Average accuracy of {join_names(tasks)} vs {X_COLUMNS[x]}")
    ax.grid(alpha=0.3)
    ax.legend(title="run")
    out = _save(fig, out_png)
    replicated = sorted(set(curve.loc[curve["n_seeds"] > 1, "run"]))
    caption = (
        f"Figure 1 (paper) for this run: average accuracy (%) over {join_names(tasks)} against "
        f"{X_COLUMNS[x]}, one line per run ({join_names(run_order)}), one marker per evaluated model "
        f"(checkpoints and final model), from {source}."
    )
    if replicated:
        caption += (
            f" Runs trained with several seeds ({join_names(replicated)}): the line is the mean over seeds, the "
            "band its 95% t interval."
        )
    if curve.attrs.get("repeated"):
        caption += f" {curve.attrs['repeated']} repeated (run, seed, tokens, task) rows were averaged."
    return FigureResult(out, caption, curve)


# --------------------------------------------------------------------------- Figure 6
#: selection_losses column -> panel name of Figure 6 (followed by the rule that selects)
HELD_OUT_PANELS = {"selected_loss": "selected", "unselected_loss": "not selected"}


def figure6_heldout_losses(
    selection: pd.DataFrame,
    out_png: str | Path,
    *,
    ratio: float,
    rules: Mapping[str, str],
    downstream: pd.DataFrame | None = None,
    downstream_label: str = "",
    source: str = "",
) -> FigureResult:
    """Figure 6: held-out loss on selected tokens, on a downstream corpus, and on the unselected tokens.

    ``selection``: :func:`slm.dynamics.selection_losses` (one block per selection rule, ``selected_by``);
    ``rules``: each rule's label -> what it is, for the caption. One row of panels per rule (selected,
    not selected); ``downstream`` (``run``, ``tokens_seen``, ``loss``: a held-out loss task per checkpoint)
    is a third panel of the first row.
    ``data``: long form ``selected_by`` (empty for the downstream panel), ``run``, ``tokens_seen``,
    ``panel``, ``loss``.
    """
    frames = [
        selection.assign(panel=name, loss=selection[column])[["selected_by", "run", "tokens_seen", "panel", "loss"]]
        for column, name in HELD_OUT_PANELS.items()
    ]
    has_downstream = downstream is not None and not downstream.empty
    if has_downstream:
        frames.append(downstream.assign(selected_by="", panel=downstream_label))
    data = pd.concat(frames, ignore_index=True)[["selected_by", "run", "tokens_seen", "panel", "loss"]]
    if not np.isfinite(data["loss"]).any():
        raise ValueError(f"figure6: no finite losses ({source})")
    runs = list(dict.fromkeys(selection["run"]))
    colours = _colours(runs)
    ncols = 3 if has_downstream else 2
    fig, axes = _new_figure(ncols=ncols, width=4.2, height=3.4, nrows=len(rules))

    def draw(ax, rows: pd.DataFrame, title: str) -> None:
        for run in runs:
            sub = rows[rows["run"] == run].sort_values("tokens_seen")
            ax.plot(sub["tokens_seen"], sub["loss"], marker="o", color=colours[run], label=run)
        ax.xaxis.set_major_formatter(TOKENS_FORMATTER)
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("held-out loss (nats/token)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)

    for r, rule in enumerate(rules):
        for c, panel in enumerate(HELD_OUT_PANELS.values()):
            rows = data[(data["selected_by"] == rule) & (data["panel"] == panel)]
            draw(axes[r * ncols + c], rows, f"{panel} by {rule}")
        if has_downstream:
            ax = axes[r * ncols + 2]
            if r == 0:
                draw(ax, data[data["panel"] == downstream_label], downstream_label)
                ax.set_ylabel(downstream_label)
            else:
                ax.set_axis_off()
    axes[0].legend(title="run")
    out = _save(fig, out_png)
    caption = (
        f"Held-out losses against tokens seen for {join_names(runs)}, on the same validation tokens for every "
        f"run. Each row selects the top {ratio:.0%} of the slice's tokens at each checkpoint by another rule: "
        + "; ".join(f"{rule}: {what}" for rule, what in rules.items())
        + ". Left, each run's mean loss on the selected tokens; middle, on the others"
        + (f"; right (first row), {downstream_label}" if has_downstream else "")
        + ". The paper's Figure 6 (selection by SLM's own excess loss, the first row) finds SLM lower on the "
        "selected tokens and the downstream corpus and higher on the unselected ones; a rule that ranks by "
        "one run's own losses picks the tokens that run is worst at relative to the reference, so only the "
        f"reference-loss row compares the runs on tokens neither chose. ({source})"
    )
    return FigureResult(out, caption, data)


# --------------------------------------------------------------------------- Figure 7
def fit_log_linear(loss, accuracy) -> dict[str, float]:
    """Least-squares fit of ``accuracy = log(a * loss + c)`` (the paper's Figure 7 law).

    ``scipy.optimize.curve_fit`` (Levenberg-Marquardt) on the residuals ``accuracy - log(a*loss + c)``,
    started from a weighted linear fit of ``exp(accuracy)`` on ``loss``, in a centred, scaled
    parameterisation (accuracy may be in percent, where ``exp(accuracy)`` is huge); ``a*loss + c`` stays
    positive at every data point. Returns ``a``, ``c``, ``r2`` (on accuracy), ``rmse`` and ``n``. Needs at
    least 3 finite points with two different losses.
    """
    from scipy.optimize import curve_fit

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
    t = y - y0  # fit t = log(p*u + q); then a = p/xs * e^y0, c = (q - p*xm/xs) * e^y0
    z = np.exp(t)
    # start: minimise sum(((p u + q) - z) / z)^2, the first-order form of the log residuals
    design = np.column_stack([u, np.ones_like(u)]) / z[:, None]
    (p, q), *_ = np.linalg.lstsq(design, np.ones_like(z), rcond=None)
    if not np.all(p * u + q > 0):
        p, q = 0.0, float(np.mean(z))
    tiny = np.finfo(float).tiny  # outside the domain the residual is huge, so the fit stays inside

    def law(u, p, q):
        return np.log(np.maximum(p * u + q, tiny))

    def jacobian(u, p, q):
        g = np.maximum(p * u + q, tiny)
        return np.column_stack([u / g, 1.0 / g])

    # tolerances near machine precision: a flat optimum (R² near 0) is otherwise left early
    tight = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}
    (p, q), _ = curve_fit(law, u, t, p0=(p, q), jac=jacobian, method="lm", maxfev=10_000, **tight)
    sse = float(np.sum((t - law(u, p, q)) ** 2))
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
    panels: Mapping[str, pd.DataFrame],
    out_png: str | Path,
    *,
    source: str = "the given points",
    accuracy_label: str = "accuracy (%)",
) -> FigureResult:
    """Accuracy against a loss, one panel per loss (its label -> points), one colour per run, each panel
    with its fitted ``Acc(L) = log(a*L + c)`` (the paper's Figure 7: loss on selected and on unselected
    tokens).

    ``points``: columns ``run``, ``loss``, ``accuracy`` (accuracy in the units to fit; the paper uses
    percent). A panel with too few points or equal losses is drawn without a fit.

    ``fit``: panel label -> ``a``, ``c``, ``r2``, ``rmse``, ``n`` (:func:`fit_log_linear`).
    ``data``: the points, with a ``panel`` column.
    """
    frames = []
    for label, points in panels.items():
        missing = [c for c in ("run", "loss", "accuracy") if c not in points.columns]
        if missing:
            raise ValueError(f"figure7: points of {label!r} lack columns {missing}")
        frames.append(points[["run", "loss", "accuracy"]].assign(panel=label, run=points["run"].astype(str)))
    data = pd.concat(frames, ignore_index=True)
    runs = list(dict.fromkeys(data["run"]))
    colours = _colours(runs)
    fig, axes = _new_figure(ncols=len(panels), width=4.8)
    fits: dict[str, dict[str, float]] = {}
    for ax, label in zip(axes, panels):
        sub = data[data["panel"] == label]
        for run in runs:
            mine = sub[sub["run"] == run]
            ax.scatter(mine["loss"], mine["accuracy"], color=colours[run], label=run, zorder=3)
        try:
            fit = fits[label] = fit_log_linear(sub["loss"], sub["accuracy"])
        except ValueError:
            fit = None  # too few points for the law: the points alone
        if fit is not None:
            lo, hi = float(sub["loss"].min()), float(sub["loss"].max())
            grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 200)
            ax.plot(
                grid,
                log_linear(grid, fit["a"], fit["c"]),
                color="black",
                linewidth=1.2,
                label=f"log({fit['a']:.4g}·L + {fit['c']:.4g}), R² = {fit['r2']:.3f}",
            )
        ax.set_xlabel(label)
        ax.set_ylabel(accuracy_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    out = _save(fig, out_png)
    described = [
        f"{label}: "
        + (
            f"{fit['n']} points, a = {fit['a']:.6g}, c = {fit['c']:.6g}, R² = {fit['r2']:.4f}"
            if (fit := fits.get(label))
            else "too few points for a fit"
        )
        for label in panels
    ]
    caption = (
        f"Figure 7 (paper) for this run: {accuracy_label} against {join_names(panels)}, one point per evaluated "
        f"model (runs {join_names(runs)}; from {source}), each panel with the least-squares fit "
        f"Acc(L) = log(a*L + c): " + "; ".join(described) + "."
    )
    return FigureResult(out, caption, data, fits)


# --------------------------------------------------------------------------- Figure 9
def figure9_ratio_ablation(
    measured: pd.DataFrame,
    out_png: str | Path,
    *,
    source: str = "the given results",
    reported_path: str | Path | None = None,
) -> FigureResult:
    """Accuracy against selection ratio per task (left), the paper's Figure 9 values (right).

    ``measured``: :func:`slm.tables.ratio_ablation` (``ratio``, ``task``, ``value`` in percent, ``low``,
    ``high``: drawn as error bars where a ratio has several final models). The right panel draws
    ``figure9_selection_ratio`` of the paper-reported YAML dashed, labelled "paper, 1B, 5B tokens".

    ``data``: long form ``source`` (``"measured"``/``"paper"``), ``ratio``, ``task``, ``value`` (%).
    """
    missing = [c for c in ("ratio", "task", "value") if c not in measured.columns]
    if missing:
        raise ValueError(f"figure9: results lack columns {missing}")
    tasks = list(dict.fromkeys(measured["task"]))
    measured = measured.copy()
    measured.insert(0, "source", "measured")
    if "low" not in measured.columns:
        measured["low"] = measured["high"] = np.nan

    paper = reported_table("figure9_selection_ratio", path=reported_path)
    paper_tasks = paper.attrs["score_columns"]
    paper_long = paper.melt(id_vars="ratio", value_vars=paper_tasks, var_name="task", value_name="value")
    paper_long.insert(0, "source", "paper")
    data = pd.concat([measured[["source", "ratio", "task", "value"]], paper_long], ignore_index=True)
    data = data[["source", "ratio", "task", "value"]]

    ratios = sorted(set(data["ratio"]))
    labels = [f"{r:.0%}" + ("\n(CLM)" if r == 1.0 else "") for r in ratios]
    fig, (left, right) = _new_figure(ncols=2, width=5.2)
    colours = _colours(tasks)
    for task in tasks:
        sub = measured[measured["task"] == task].sort_values("ratio")
        left.plot(sub["ratio"], sub["value"], marker="o", color=colours[task], label=task)
        spread = sub.dropna(subset=["low"])
        yerr = [spread["value"] - spread["low"], spread["high"] - spread["value"]]
        left.errorbar(spread["ratio"], spread["value"], yerr=yerr, fmt="none", ecolor=colours[task], capsize=3)
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
        f"{join_names(tasks)} from {source} (left, solid); right, dashed: the paper's "
        f"{join_names(paper_tasks)} accuracies of the 1B model after 5B tokens, read off the paper's "
        f"Figure 9 (approximate; figure9_selection_ratio in {paper.attrs['source']}). "
        "Ratio 100% is CLM."
        + (
            " Error bars: 95% t interval over the final models at a ratio (seeds, runs)."
            if measured["low"].notna().any()
            else ""
        )
    )
    return FigureResult(out, caption, data)


# --------------------------------------------------------------------------- Figure 5
def figure5_gains(
    gains: pd.DataFrame,
    out_png: str | Path,
    *,
    slm: str,
    clm: str,
    source: str = "the gains table",
    reported_path: str | Path | None = None,
) -> FigureResult:
    """Per-task gain of the SLM run over the CLM run as bars (the paper's Figure 5), with the paper's
    gain as a second bar where a task is mapped.

    ``gains``: :func:`slm.tables.gains_table` (or its CSV), the average row last; ``slm``, ``clm``: the
    runs compared.
    """
    paper = reported_table(FIGURE5, path=reported_path)
    paper_label = paper.at[0, paper.attrs["label_column"]]  # Rho-1 1B − Tinyllama-CT (80B tokens)
    paper_note = (
        f"{paper_label}, general domain, {paper.at[0, AVERAGE_ROW]:+.1f} on average over its benchmarks "
        f"({FIGURE5} in {paper.attrs['source']})"
    )
    lowers = list(gains.loc[gains["lower_is_better"], "task"])
    n_accuracy = int((~gains["lower_is_better"]).sum()) - 1  # the average row is not a task
    labels = [
        f"{r.task} ({r.paper_benchmark})"
        if pd.notna(r.paper_benchmark)
        else f"{r.task} ({r.metric.split(',')[0]}, CLM − SLM)"
        if r.lower_is_better
        else f"{r.task} ({n_accuracy} tasks)"
        if r.task == AVERAGE_ROW
        else r.task
        for r in gains.itertuples()
    ]
    has_paper = bool(gains["paper_gain"].notna().any())
    height = 0.38 if has_paper else 0.7
    y = np.arange(len(gains))
    colours = _colours(["this run", "paper"])
    bars = [(gains["gain"], f"this run: {slm} − {clm}", colours["this run"])]
    if has_paper:
        bars.append((gains["paper_gain"], f"paper: {paper_label}", colours["paper"]))
    fig, (ax,) = _new_figure(width=8.0, height=max(3.5, 2.0 + 0.3 * len(gains) * len(bars)))
    # this run's spread: the interval over seeds where the pair has several, else over evaluation documents
    by_seed = gains["seed_low"].notna()
    low = gains["seed_low"].where(by_seed, gains["sample_low"])
    high = gains["seed_high"].where(by_seed, gains["sample_high"])
    spread = [(gains["gain"] - low).fillna(0.0).clip(lower=0), (high - gains["gain"]).fillna(0.0).clip(lower=0)]
    for i, (values, label, colour) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * height
        drawn = ax.barh(y + offset, values.fillna(0.0), height=height, color=colour, label=label)
        if i == 0:
            ax.errorbar(values.fillna(0.0), y + offset, xerr=spread, fmt="none", ecolor="black", capsize=3)
        ax.bar_label(drawn, labels=[format_cell(g, "gain", signed=True) for g in values], padding=3, fontsize=8)
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
        f"Figure 5 (paper) for this run: per-task gain of {slm} over {clm} from {source}; positive means "
        "SLM did better: accuracies in percentage points (SLM − CLM)"
        + (f", {join_names(lowers)} (lower is better) as CLM − SLM in its own units" if lowers else "")
        + f"; the last bar is the mean over the {n_accuracy} accuracy tasks. "
        + (
            "Error bars: 95% interval over seeds"
            + (
                " where the pair has several, else over the evaluation documents (paired bootstrap). "
                if not by_seed.all()
                else ". "
            )
            if by_seed.any()
            else "Error bars: 95% bootstrap interval over the evaluation documents (paired; one seed). "
            if gains["sample_low"].notna().any()
            else ""
        )
    )
    if has_paper:
        caption += f"Second bar, where a task is mapped (tables.figure5_columns): the paper's Figure 5, {paper_note}."
    else:
        caption += (
            "No task is mapped to the paper's benchmarks (tables.figure5_columns), so there are no paper "
            "bars: the paper's Figure 5 is for the general-domain config (config/paper/general-1b.yaml): "
            f"{paper_note}."
        )
    return FigureResult(out, caption, gains)


# --------------------------------------------------------------------------- Table 2's curve
def table2_curve_figure(long: pd.DataFrame, out_png: str | Path, *, source: str) -> FigureResult:
    """Tool-integrated accuracy (%) against the fine-tuning's tokens seen, one panel per fine-tuned
    model: a thin line per fine-tuning (coloured by fine-tuning seed, dashed from the second pretraining
    seed of a run on) and the mean over them in bold, so that both where each curve flattens and how far
    the seeds end apart can be read.

    ``long``: :func:`slm.tir.tir_curve`'s rows (model, point, pretraining_seed, seed, tokens_seen,
    accuracy), in model order.
    """
    models = list(dict.fromkeys(long["model"]))
    seeds = sorted(set(long["seed"]))
    fig, axes = _new_figure(ncols=len(models), width=4.0, height=3.6)
    colours = _colours([str(seed) for seed in seeds])
    styles = ["-", "--", ":", "-."]
    for ax, model in zip(axes, models):
        rows = long[long["model"] == model].sort_values("tokens_seen")
        pretraining = list(dict.fromkeys(rows["pretraining_seed"].dropna()))  # none for a control
        for (pretraining_seed, seed), own in rows.groupby(["pretraining_seed", "seed"], dropna=False, sort=False):
            position = 0 if pd.isna(pretraining_seed) else pretraining.index(pretraining_seed)
            ax.plot(
                own["tokens_seen"],
                own["accuracy"],
                color=colours[str(seed)],
                ls=styles[position % len(styles)],
                lw=1,
                alpha=0.6,
                label=f"seed {seed}" if position == 0 else None,
            )
        mean = rows.groupby("tokens_seen", sort=True)["accuracy"].mean()
        ax.plot(mean.index, mean.values, color="black", lw=2, marker="o", ms=3, label="mean")
        ax.set_title(model)
        ax.set_ylim(0, 100)
        ax.xaxis.set_major_formatter(TOKENS_FORMATTER)
        ax.set_xlabel("fine-tuning tokens seen")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy with the tool (%)")
    axes[-1].legend(loc="lower right", fontsize="small")
    out = _save(fig, out_png)
    caption = (
        f"Table 2's learning curve: tool-integrated accuracy (%) along each fine-tuning of {join_names(models)}, "
        f"a thin line per fine-tuning (colour: fine-tuning seed {join_names(map(str, seeds))}; dashed from a "
        f"run's second pretraining seed on), the mean over them in black, from {source}."
    )
    return FigureResult(out, caption, long)


def make_figures(
    checkpoints_csv: str | Path,
    out_dir: str | Path,
    *,
    accuracy_tasks: list[str],
    loss_task: str | None,
    ratio_runs: Mapping[str, float],
    dynamics_by_run: Mapping[str, str | Path] | None = None,
    dynamics_seeds: Mapping[str, int] | None = None,
    ratio: float | None = None,
    delta: tuple[str, str] | None = None,
    figure5_csv: str | Path | None = None,
) -> dict[str, str]:
    """Every figure the run's tables support; returns {file name: caption}.

    ``dynamics_by_run``: the token-dynamics ``losses.npz`` of the SLM and the CLM run of ``delta`` (in
    that order), measured on the replicates of ``dynamics_seeds``: Figure 6 (selection at ``ratio`` by
    SLM's excess loss, by CLM's, and by the reference loss alone; the ``loss_task`` per checkpoint as its
    downstream corpus) and Figure 7's selected / unselected panels. ``ratio_runs``: runs that differ only
    in their selection ratio, with that ratio (Figure 9; CLM is 1.0); ``loss_task``: a held-out loss task
    whose value per checkpoint is a loss axis of Figure 7. With ``figure5_csv``
    (:func:`slm.tables.gains_table`) and ``delta`` (the SLM and CLM runs), Figure 5 too.
    """
    out_dir = Path(out_dir)
    checkpoints = read_checkpoints(checkpoints_csv)
    captions = {}
    curve = accuracy_curve(checkpoints, accuracy_tasks)
    captions["figure1.png"] = str(figure1_accuracy_vs_tokens(curve, out_dir / "figure1.png"))
    panels: dict[str, pd.DataFrame] = {}
    if dynamics_by_run:
        from slm.dynamics import selection_losses

        slm, clm = delta
        rules = {
            f"{slm}'s excess loss": ("excess", slm),
            f"{clm}'s excess loss": ("excess", clm),
            "reference loss alone": ("reference", None),
        }
        selection = selection_losses(dynamics_by_run, ratio, rules)
        sources = f"{join_names(map(str, dynamics_by_run.values()))}; {checkpoints_csv}"
        if dynamics_seeds:  # a run trained with several seeds has its token dynamics measured on the first
            sources += "; token dynamics of " + join_names(f"{run} seed {seed}" for run, seed in dynamics_seeds.items())
        result = figure6_heldout_losses(
            selection,
            out_dir / "figure6.png",
            ratio=ratio,
            rules={
                f"{slm}'s excess loss": f"{slm}'s own loss there minus the reference loss, as {slm} selects in "
                "training (the paper's definition)",
                f"{clm}'s excess loss": f"the same with {clm}'s loss",
                "reference loss alone": "the lowest reference losses, the same tokens at every checkpoint and "
                "for every run",
            },
            downstream=downstream_losses(checkpoints, loss_task, dynamics_by_run) if loss_task else None,
            downstream_label=f"downstream: {loss_task}",
            source=sources,
        )
        atomic_write_text(out_dir / "figure6.csv", result.data.to_csv(index=False))
        captions["figure6.png"] = str(result)
        by_slm = selection[selection["selected_by"] == f"{slm}'s excess loss"]
        points = selection_accuracy_points(by_slm, checkpoints, accuracy_tasks, dynamics_seeds or {})
        panels[f"held-out loss on the tokens {slm} selects"] = points["selected"]
        panels[f"held-out loss on the tokens {slm} does not select"] = points["unselected"]
    if loss_task is not None:
        panels[f"held-out loss ({loss_task})"] = loss_accuracy_points(checkpoints, loss_task, accuracy_tasks)
    if panels:
        result = figure7_accuracy_vs_loss(
            panels, out_dir / "figure7.png", source=str(checkpoints_csv), accuracy_label="mean accuracy (%)"
        )
        captions["figure7.png"] = str(result)
    result = figure9_ratio_ablation(
        ratio_ablation(checkpoints, ratio_runs, accuracy_tasks), out_dir / "figure9.png", source=str(checkpoints_csv)
    )
    captions["figure9.png"] = str(result)
    if figure5_csv is not None and delta is not None:
        gains = pd.read_csv(figure5_csv)
        result = figure5_gains(gains, out_dir / "figure5.png", slm=delta[0], clm=delta[1], source=str(figure5_csv))
        captions["figure5.png"] = str(result)
    return captions
