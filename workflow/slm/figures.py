"""The Rho-1 paper's figures from this workflow's outputs (PNG, written atomically).

* :func:`figure1_accuracy_vs_tokens` — Figure 1: average accuracy against training tokens per run,
  from ``results/tables/checkpoints.csv``.
* :func:`figure6_losses` — the training-log side of Figure 6: loss on selected, all and
  unselected tokens against tokens seen, from each run's ``metrics.jsonl``.
* :func:`figure7_accuracy_vs_loss` — Figure 7: accuracy against loss with the paper's fit
  ``Acc(L) = log(a*L + c)`` (least squares, numpy only: :func:`fit_log_linear`).
* :func:`figure9_ratio_ablation` — Figure 9: accuracy against selection ratio, beside the paper's
  reported values.

Every function renders with matplotlib's Agg canvas (no pyplot, no global backend switch) and
returns a :class:`FigureResult`: the PNG path, a caption saying what is plotted from which files,
the DataFrame actually plotted, and (Figure 7) the fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from slm.io import atomic_path
from slm.reported import reported_table
from slm.tables import human_tokens, is_raw_metric

DPI = 120
X_COLUMNS = {"tokens_seen": "tokens seen", "tokens_selected": "tokens trained on (selected)"}
CHECKPOINT_COLUMNS = ("run", "tokens_seen", "tokens_selected", "task", "metric", "value")
#: metrics.jsonl key -> (label, line style) of the loss kinds of Figure 6
LOSS_KINDS = {
    "loss": ("selected tokens", "-"),
    "loss_all": ("all tokens", "--"),
    "loss_unselected": ("unselected tokens", ":"),
}


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
        raise ValueError(
            f"figure1: tasks {absent} not in checkpoints table {path} (it has: {sorted(set(df['task']))})"
        )
    df = df[df["task"].isin(tasks)]
    raw = sorted({m for m in df["metric"].astype(str) if is_raw_metric(m)})
    if raw:
        raise ValueError(
            f"figure1: metrics {raw} in {path} are perplexity-like and cannot be averaged with accuracies"
        )
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
            raise ValueError(
                f"figure1: run {run!r} at {x}={tokens} lacks tasks {lacking} in {path}"
            )
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
def read_metrics(path: str | Path) -> pd.DataFrame:
    """A trainer ``metrics.jsonl`` as a DataFrame sorted by step (last entry kept per step)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training metrics not found: {path}")
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"training metrics {path}, line {lineno}: not JSON ({err})") from err
        if not isinstance(entry, dict) or "tokens_seen" not in entry or "loss" not in entry:
            raise ValueError(f"training metrics {path}, line {lineno}: needs 'tokens_seen' and 'loss'")
        records.append(entry)
    if not records:
        raise ValueError(f"training metrics {path} has no entries")
    df = pd.DataFrame.from_records(records)
    for key in LOSS_KINDS:
        df[key] = pd.to_numeric(df[key], errors="coerce") if key in df else math.nan
    if "step" in df:
        df = df.drop_duplicates("step", keep="last")
    return df.sort_values("tokens_seen", kind="stable").reset_index(drop=True)


def figure6_losses(metrics_jsonl_by_run: Mapping[str, str | Path], out_png: str | Path) -> FigureResult:
    """Training loss on selected, all and unselected tokens against tokens seen.

    One colour per run, one line style per loss kind (selected solid, all dashed, unselected
    dotted).  A run that selects every token (CLM, ``selected_fraction`` 1 throughout) has its
    selected-token loss equal to its all-token loss: only the latter is drawn.  Kinds that are
    absent or NaN throughout (unselected loss of CLM) are skipped.

    ``data``: long form ``run``, ``tokens_seen``, ``kind`` (metrics key), ``loss``.
    """
    if not metrics_jsonl_by_run:
        raise ValueError("figure6: no runs given")
    runs = list(metrics_jsonl_by_run)
    colours = _colours(runs)
    frames, merged = [], []
    for run, path in metrics_jsonl_by_run.items():
        df = read_metrics(path)
        all_selected = (
            "selected_fraction" in df and bool((pd.to_numeric(df["selected_fraction"]) >= 1.0).all())
        )
        for key in LOSS_KINDS:
            if key == "loss" and all_selected and df["loss_all"].notna().any():
                merged.append(run)
                continue
            if df[key].notna().any():
                frames.append(
                    pd.DataFrame({"run": run, "tokens_seen": df["tokens_seen"], "kind": key, "loss": df[key]})
                )
    if not frames:
        raise ValueError(f"figure6: no finite losses in {_names(map(str, metrics_jsonl_by_run.values()))}")
    data = pd.concat(frames, ignore_index=True)

    fig, (ax,) = _new_figure(width=7.2)
    for (run, kind), sub in data.groupby(["run", "kind"], sort=False):
        ax.plot(sub["tokens_seen"], sub["loss"], color=colours[run], linestyle=LOSS_KINDS[kind][1])
    ax.xaxis.set_major_formatter(TOKENS_FORMATTER)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("mean cross-entropy (nats/token)")
    ax.set_title("Training loss on selected, all and unselected tokens")
    ax.grid(alpha=0.3)
    run_handles = [Line2D([], [], color=colours[r], label=r) for r in runs]
    kinds_drawn = [k for k in LOSS_KINDS if k in set(data["kind"])]
    kind_handles = [
        Line2D([], [], color="0.3", linestyle=LOSS_KINDS[k][1], label=LOSS_KINDS[k][0]) for k in kinds_drawn
    ]
    first = ax.legend(handles=run_handles, title="run", loc="upper right")
    ax.add_artist(first)
    ax.legend(handles=kind_handles, title="loss on", loc="upper center")
    out = _save(fig, out_png)

    sources = "; ".join(f"{run}: {path}" for run, path in metrics_jsonl_by_run.items())
    caption = (
        f"Training loss against tokens seen for {_names(runs)}: mean cross-entropy on the tokens "
        "each run selected (solid), on all loss-bearing tokens (dashed) and on the unselected tokens "
        f"(dotted), as logged on the training batches (metrics.jsonl; {sources}). This is the data "
        "behind the paper's Figure 6 only as far as the training log gives it: the paper evaluates "
        "SLM and CLM on the same held-out tokens (those SLM selects, those it does not, and a "
        "downstream corpus); here each run is measured on its own training batches and its own "
        "selection, and there is no downstream-corpus loss."
    )
    if merged:
        caption += (
            f" {_names(merged)} selected every token, so the selected-token loss equals the all-token "
            "loss and only the latter is drawn."
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
    return {"a": float(a), "c": float(c), "r2": float(r2), "rmse": math.sqrt(sse / len(x)), "n": int(len(x))}


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
        grid, log_linear(grid, fit["a"], fit["c"]), color="black", linewidth=1.2,
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
        right.plot(sub["ratio"], sub["value"], marker="s", linestyle="--", color=paper_colours[task],
                   label=f"{task} (paper)")
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


def make_figures(
    checkpoints_csv: str | Path,
    out_dir: str | Path,
    *,
    accuracy_tasks: list[str],
    loss_task: str | None,
    metrics_by_run: Mapping[str, str | Path],
    ratio_runs: Mapping[str, float],
) -> dict[str, str]:
    """Every figure the run's outputs support; returns {file name: caption}.

    ``metrics_by_run``: the training logs to compare (Figure 6); ``ratio_runs``: runs that differ
    only in their selection ratio, with that ratio (Figure 9; CLM is 1.0); ``loss_task``: a
    held-out loss task whose value per checkpoint is the loss axis of Figure 7.
    """
    out_dir = Path(out_dir)
    captions = {}
    result = figure1_accuracy_vs_tokens(checkpoints_csv, accuracy_tasks, out_dir / "figure1.png")
    captions["figure1.png"] = str(result)
    captions["figure6.png"] = str(figure6_losses(metrics_by_run, out_dir / "figure6.png"))
    table = pd.read_csv(checkpoints_csv)
    if loss_task is not None:
        wide = table.pivot_table(index=["run", "tokens_seen"], columns="task", values="value").reset_index()
        points = pd.DataFrame({
            "run": wide["run"],
            "loss": wide[loss_task],
            "accuracy": 100 * wide[accuracy_tasks].mean(axis=1),
        })
        result = figure7_accuracy_vs_loss(points, out_dir / "figure7.png", source=str(checkpoints_csv),
                                          loss_label=f"held-out loss ({loss_task})",
                                          accuracy_label="mean accuracy (%)")
        captions["figure7.png"] = str(result)
    finals = table[table["run"].isin(list(ratio_runs))]
    finals = finals[finals["tokens_seen"] == finals.groupby("run")["tokens_seen"].transform("max")]
    finals = finals[finals["task"].isin(accuracy_tasks)]
    results = pd.DataFrame({"ratio": finals["run"].map(ratio_runs), "task": finals["task"],
                            "value": finals["value"]})
    result = figure9_ratio_ablation(results, out_dir / "figure9.png", source=str(checkpoints_csv),
                                    values_in="fraction")
    captions["figure9.png"] = str(result)
    return captions
