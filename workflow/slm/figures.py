"""The Rho-1 paper's figures from this workflow's tables (PNG, written atomically): one function per
figure, each drawing data already shaped by :mod:`slm.tables` (or :mod:`slm.dynamics`).

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
)

DPI = 120


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


# --------------------------------------------------------------------------- Figure 1
def figure1_accuracy_vs_tokens(curve: pd.DataFrame, out_png: str | Path) -> FigureResult:
    """Average accuracy (%) against training tokens, one line per run, one marker per evaluated model.

    ``curve``: :func:`slm.tables.accuracy_curve` (its ``attrs`` name the tasks, the x column and the
    source table).
    """
    tasks, x, source = curve.attrs["tasks"], curve.attrs["x"], curve.attrs["source"]
    run_order = list(dict.fromkeys(curve["run"]))
    fig, (ax,) = _new_figure()
    colours = _colours(run_order)
    for run in run_order:
        sub = curve[curve["run"] == run]
        ax.plot(sub["x"], sub["accuracy"], marker="o", color=colours[run], label=run)
    ax.xaxis.set_major_formatter(TOKENS_FORMATTER)
    ax.set_xlabel(X_COLUMNS[x])
    ax.set_ylabel(f"average accuracy (%), {len(tasks)} task{'s' if len(tasks) > 1 else ''}")
    ax.set_title(f"Average accuracy of {join_names(tasks)} vs {X_COLUMNS[x]}")
    ax.grid(alpha=0.3)
    ax.legend(title="run")
    out = _save(fig, out_png)
    caption = (
        f"Figure 1 (paper) for this run: average accuracy (%) over {join_names(tasks)} against "
        f"{X_COLUMNS[x]}, one line per run ({join_names(run_order)}), one marker per evaluated model "
        f"(checkpoints and final model), from {source}."
    )
    if curve.attrs.get("repeated"):
        caption += f" {curve.attrs['repeated']} repeated (run, tokens, task) rows were averaged."
    return FigureResult(out, caption, curve)


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
        f"Held-out losses against tokens seen for {join_names(runs)}, on the same validation tokens for every "
        f"run: at each checkpoint {selector} ranks the slice's tokens by excess loss (its loss there minus "
        f"the reference loss) and selects the top {ratio:.0%}; left, each run's mean loss (nats/token) on "
        "those selected tokens; right, on the unselected ones"
        + (f"; middle, {downstream_label}" if len(panels) == 3 else "")
        + f". The paper's Figure 6 finds SLM lower on the first two and higher on unselected tokens. ({source})"
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
        f"from {source} (runs {join_names(runs)}), with the least-squares fit Acc(L) = log(a*L + c): "
        f"a = {fit['a']:.6g}, c = {fit['c']:.6g}, R² = {fit['r2']:.4f}."
    )
    return FigureResult(out, caption, data, fit)


# --------------------------------------------------------------------------- Figure 9
def figure9_ratio_ablation(
    measured: pd.DataFrame,
    out_png: str | Path,
    *,
    source: str = "the given results",
    reported_path: str | Path | None = None,
) -> FigureResult:
    """Accuracy against selection ratio per task (left), the paper's Figure 9 values (right).

    ``measured``: :func:`slm.tables.ratio_ablation` (``ratio``, ``task``, ``value`` in percent). The right
    panel draws ``figure9_selection_ratio`` of the paper-reported YAML dashed, labelled "paper, 1B, 5B
    tokens".

    ``data``: long form ``source`` (``"measured"``/``"paper"``), ``ratio``, ``task``, ``value`` (%).
    """
    missing = [c for c in ("ratio", "task", "value") if c not in measured.columns]
    if missing:
        raise ValueError(f"figure9: results lack columns {missing}")
    tasks = list(dict.fromkeys(measured["task"]))
    measured = measured[["ratio", "task", "value"]].copy()
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
        f"{join_names(tasks)} from {source} (left, solid); right, dashed: the paper's "
        f"{join_names(paper_tasks)} accuracies of the 1B model after 5B tokens, read off the paper's "
        f"Figure 9 (approximate; figure9_selection_ratio in {paper.attrs['source']}). "
        "Ratio 100% is CLM."
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
    for i, (values, label, colour) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * height
        drawn = ax.barh(y + offset, values.fillna(0.0), height=height, color=colour, label=label)
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
    delta: tuple[str, str] | None = None,
    figure5_csv: str | Path | None = None,
) -> dict[str, str]:
    """Every figure the run's tables support; returns {file name: caption}.

    ``dynamics_by_run``: the token-dynamics ``losses.npz`` of the SLM run ``selector`` (selecting at
    ``ratio``) and the runs to compare with it on the same held-out tokens (Figure 6, with the
    ``loss_task`` per checkpoint as its downstream corpus); ``ratio_runs``: runs that differ
    only in their selection ratio, with that ratio (Figure 9; CLM is 1.0); ``loss_task``: a
    held-out loss task whose value per checkpoint is the loss axis of Figure 7.  With ``figure5_csv``
    (:func:`slm.tables.gains_table`) and ``delta`` (the SLM and CLM runs), Figure 5 too.
    """
    out_dir = Path(out_dir)
    checkpoints = read_checkpoints(checkpoints_csv)
    captions = {}
    curve = accuracy_curve(checkpoints, accuracy_tasks)
    captions["figure1.png"] = str(figure1_accuracy_vs_tokens(curve, out_dir / "figure1.png"))
    if dynamics_by_run:
        from slm.dynamics import selection_losses

        result = figure6_heldout_losses(
            selection_losses(dynamics_by_run, selector, ratio),
            out_dir / "figure6.png",
            selector=selector,
            ratio=ratio,
            downstream=downstream_losses(checkpoints, loss_task, dynamics_by_run) if loss_task else None,
            downstream_label=f"downstream: {loss_task}",
            source=f"{join_names(map(str, dynamics_by_run.values()))}; {checkpoints_csv}",
        )
        atomic_write_text(out_dir / "figure6.csv", result.data.to_csv(index=False))
        captions["figure6.png"] = str(result)
    if loss_task is not None:
        result = figure7_accuracy_vs_loss(
            loss_accuracy_points(checkpoints, loss_task, accuracy_tasks),
            out_dir / "figure7.png",
            source=str(checkpoints_csv),
            loss_label=f"held-out loss ({loss_task})",
            accuracy_label="mean accuracy (%)",
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
