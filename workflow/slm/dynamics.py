"""Token dynamics (Rho-1 section 2.1, Figure 3, Tables 4-7): how each token's loss moves during training.

Pipeline:

1. :func:`checkpoint_losses` takes a fixed, seeded validation slice of a packed shard and records the
   loss of every token under every model of a training trajectory (e.g. base, checkpoints, final) in
   one ``.npz`` file.
2. :func:`classify` sorts tokens into the paper's four categories: a least-squares line is fitted to
   each token's loss over the checkpoints, ``delta = fitted end - fitted start``;
   ``delta < -threshold`` is H->L, ``delta > threshold`` is L->H; otherwise the token is L->L when its
   final loss is at most the mean loss (over all tokens of the final checkpoint) and H->H when above.
3. :func:`dynamics_summary` writes category shares (overall and by span kind) and per-category mean
   loss curves; :func:`plot_dynamics` draws Figure 3 from the curves; :func:`html_view` renders
   Tables 4/6-style coloured text (by category, and by SLM selection under the final checkpoint).

File formats
------------
``checkpoint_losses`` ``.npz`` (all arrays, no pickles):

* ``losses``         float32 [n_models, n_tokens]: ``-log p(x_t | x_<t)`` within the packed sequence,
  NaN at every sequence start (no context);
* ``tokens``         int64 [n_tokens]; ``kinds`` uint8 [n_tokens] (span kind ids, 0 = other/unlabelled);
* ``sequence_index`` int64 [n_sequences]: which shard sequences form the slice, in the stored order;
* ``valid``          bool [n_tokens]: loss-bearing tokens (False at position 0 of every sequence);
* ``model_dirs``     str [n_models]; ``tokens_seen`` int64 [n_models];
* ``kind_names``     str [n_kinds]; ``seq_len``, ``seed`` int64 scalars; ``shard_dir`` str scalar;
* ``reference``      float32 [n_tokens] (only when reference scores were given): the stored reference
  loss of each token (from ``scores.npy`` of the matching score shard).
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from slm.data.packed import PackedShard
from slm.io import atomic_path, atomic_write_text, read_json
from slm.model import load_for_inference, per_token_losses, resolve_device

log = logging.getLogger(__name__)

CATEGORIES = ("H->H", "L->H", "H->L", "L->L")
HH, LH, HL, LL = range(4)
UNCLASSIFIED = -1
DEFAULT_THRESHOLD = 0.2
# Colours of the HTML view and legend (paper Table 4 style: one colour per category).
CATEGORY_COLOURS = {"H->H": "#f4a6a6", "L->H": "#f7c97e", "H->L": "#9fd89f", "L->L": "#c9d9f2"}
SELECTED_COLOUR = "#5b9bd5"


# --------------------------------------------------------------------------- losses over checkpoints
def _same_path(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def read_tokens_seen(model_dirs: list[str | Path]) -> list[int]:
    """Training tokens seen by each model of a trajectory, from its ``train_stats.json`` (0 when absent).

    The first model is the trajectory's starting point: when a later model was initialised from it
    (its ``train_stats.json`` names it as ``init_model``), it sits at 0 tokens of the run, whatever
    its own earlier training (e.g. the base model's pretraining) counted.
    """
    stats = []
    for d in model_dirs:
        path = Path(d) / "train_stats.json"
        stats.append(read_json(path, "training stats") if path.is_file() else {})
    seen = [int(s.get("tokens_seen", 0) or 0) for s in stats]
    if len(model_dirs) > 1 and any(
        s.get("init_model") and _same_path(s["init_model"], model_dirs[0]) for s in stats[1:]
    ):
        seen[0] = 0
    if any(b < a for a, b in zip(seen, seen[1:])):
        log.warning("tokens seen along the trajectory are not non-decreasing: %s (models %s)", seen, model_dirs)
    return seen


def validation_slice(n_sequences: int, max_sequences: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(max_sequences, n_sequences)`` sequences, drawn without replacement."""
    if max_sequences < 1:
        raise ValueError(f"max_sequences must be at least 1, got {max_sequences}")
    if max_sequences >= n_sequences:
        if max_sequences > n_sequences:
            log.warning("shard has only %d sequences (< max_sequences %d): using all", n_sequences, max_sequences)
        return np.arange(n_sequences, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_sequences, size=max_sequences, replace=False)).astype(np.int64)


def _model_losses(model_dir, ids: np.ndarray, dev: torch.device, batch_size: int, precision: str) -> np.ndarray:
    model, _ = load_for_inference(model_dir, dev, precision)
    out = np.empty(ids.shape, dtype=np.float32)
    with torch.inference_mode():
        for first in range(0, len(ids), batch_size):
            batch = torch.from_numpy(ids[first : first + batch_size]).to(dev)
            out[first : first + batch_size] = per_token_losses(model, batch).cpu().numpy()
    del model
    return out


def checkpoint_losses(
    model_dirs: list[str],
    shard_dir: str | Path,
    out_npz: str | Path,
    *,
    max_sequences: int,
    seed: int,
    batch_size: int = 16,
    device: str = "cpu",
    precision: str = "fp32",
    reference_scores: str | None = None,
    tokens_seen: list[int] | None = None,
) -> dict:
    """Per-token losses of a seeded validation slice of ``shard_dir`` under every model of ``model_dirs``.

    ``model_dirs`` are ordered along training (e.g. base, checkpoints, final). ``precision`` is the run's,
    applied as the scorer applies it (:mod:`slm.model`), so the losses compare with the stored reference
    losses. ``reference_scores`` is a score shard directory (``scores.npy`` + ``meta.json``) for the same
    token shard; its losses are stored as ``reference``. ``tokens_seen`` overrides what
    :func:`read_tokens_seen` finds. Writes ``out_npz`` atomically (format in the module docstring) and
    returns a small summary dict.
    """
    if not model_dirs:
        raise ValueError("no models given")
    for d in model_dirs:
        if Path(d).is_dir() and not (Path(d) / "config.json").is_file():
            raise FileNotFoundError(f"model directory {d} has no config.json")
    if tokens_seen is not None and len(tokens_seen) != len(model_dirs):
        raise ValueError(f"{len(tokens_seen)} tokens_seen values for {len(model_dirs)} models")
    shard = PackedShard.open(shard_dir)
    seq_len = shard.seq_len
    rows = validation_slice(shard.n_sequences, max_sequences, seed)
    flat = (rows[:, None] * seq_len + np.arange(seq_len)[None, :]).reshape(-1)
    tokens = np.asarray(shard.tokens[flat], dtype=np.int64)
    kinds = np.asarray(shard.kinds[flat], dtype=np.uint8)
    valid = np.ones((len(rows), seq_len), dtype=bool)
    valid[:, 0] = False
    valid = valid.reshape(-1)
    reference = None
    if reference_scores is not None:
        from slm.score import open_scores

        reference = np.asarray(open_scores(reference_scores, shard)[flat], dtype=np.float32)
    seen = list(tokens_seen) if tokens_seen is not None else read_tokens_seen(model_dirs)
    dev = resolve_device(device)
    ids = tokens.reshape(len(rows), seq_len)
    losses = np.empty((len(model_dirs), len(flat)), dtype=np.float32)
    start = time.perf_counter()
    log.info(
        "token dynamics: %d models x %d sequences x %d tokens of %s (seed %d) on %s",
        len(model_dirs),
        len(rows),
        seq_len,
        shard_dir,
        seed,
        dev,
    )
    for m, model_dir in enumerate(model_dirs):
        losses[m] = _model_losses(model_dir, ids, dev, batch_size, precision).reshape(-1)
        log.info(
            "model %d/%d %s (tokens seen %d): mean loss %.4f [%.1fs]",
            m + 1,
            len(model_dirs),
            model_dir,
            seen[m],
            float(np.nanmean(losses[m][valid])),
            time.perf_counter() - start,
        )
    if not np.isfinite(losses[:, valid]).all():
        log.warning("%d non-finite losses on loss-bearing tokens", int((~np.isfinite(losses[:, valid])).sum()))
    arrays = {
        "losses": losses,
        "tokens": tokens,
        "kinds": kinds,
        "sequence_index": rows,
        "valid": valid,
        "model_dirs": np.asarray([str(d) for d in model_dirs]),
        "tokens_seen": np.asarray(seen, dtype=np.int64),
        "kind_names": np.asarray(list(shard.index.get("kind_names", []))),
        "seq_len": np.int64(seq_len),
        "seed": np.int64(seed),
        "shard_dir": np.asarray(str(shard_dir)),
    }
    if reference is not None:
        arrays["reference"] = reference
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz" to a bare name
            np.savez(handle, **arrays)
    summary = {
        "n_models": len(model_dirs),
        "n_sequences": int(len(rows)),
        "n_tokens": int(len(flat)),
        "n_valid": int(valid.sum()),
        "tokens_seen": seen,
        "mean_loss": [float(np.nanmean(step_losses[valid])) for step_losses in losses],
        "reference": reference is not None,
    }
    log.info("wrote %s: %s", out_npz, summary)
    return summary


def load_dynamics(npz_path: str | Path) -> dict:
    """The arrays of a :func:`checkpoint_losses` file as a dict (strings as Python lists/str)."""
    with np.load(npz_path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    for key in ("model_dirs", "kind_names"):
        out[key] = [str(s) for s in out[key]]
    out["shard_dir"] = str(out["shard_dir"])
    out["seq_len"] = int(out["seq_len"])
    return out


# --------------------------------------------------------------------------- classification
def selection_losses(npz_by_run: dict[str, str | Path], selector: str, ratio: float) -> pd.DataFrame:
    """Held-out losses on the tokens SLM selects and on the rest, per run and checkpoint (Figure 6).

    At each point of the trajectory the ``selector`` run (the SLM run) picks the top ``ratio`` of the
    slice's loss-bearing tokens by excess loss (its loss there minus the reference loss), ranked over
    the whole slice as over a training batch. Every run's mean loss on those selected tokens and on
    the unselected ones is reported, so SLM and CLM are compared on the same tokens at each point.
    All files must hold the same slice, reference losses and trajectory points.
    Columns: ``run``, ``tokens_seen``, ``selected_loss``, ``unselected_loss``, ``selected_tokens``.
    """
    from slm.selection import select_tokens

    if selector not in npz_by_run:
        raise ValueError(f"selection_losses: selector run {selector!r} is not among {sorted(npz_by_run)}")
    data = {run: load_dynamics(path) for run, path in npz_by_run.items()}
    base = data[selector]
    if "reference" not in base:
        raise ValueError(f"{npz_by_run[selector]}: no reference losses (run the dynamics with reference scores)")
    for run, d in data.items():
        same = (
            np.array_equal(d["tokens"], base["tokens"])
            and np.array_equal(d["tokens_seen"], base["tokens_seen"])
            and np.array_equal(d.get("reference"), base["reference"], equal_nan=True)
        )
        if not same:
            raise ValueError(
                f"{npz_by_run[run]} and {npz_by_run[selector]} do not hold the same slice, reference "
                "losses and checkpoints: rerun their token dynamics with one config"
            )
    valid = torch.from_numpy(base["valid"])[None, :]
    rows = []
    for m, seen in enumerate(base["tokens_seen"]):
        excess = torch.from_numpy(np.nan_to_num(base["losses"][m] - base["reference"], nan=-np.inf))[None, :]
        selected = select_tokens(excess, valid, ratio, "batch")[0].numpy()
        unselected = base["valid"] & ~selected
        for run, d in data.items():
            rows.append(
                {
                    "run": run,
                    "tokens_seen": int(seen),
                    "selected_loss": float(np.nanmean(d["losses"][m][selected])),
                    "unselected_loss": float(np.nanmean(d["losses"][m][unselected])),
                    "selected_tokens": int(selected.sum()),
                }
            )
    return pd.DataFrame(rows)


def fitted_delta(losses: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """Least-squares line through each column of ``losses`` [n_points, n_tokens]: fitted end - start.

    ``x`` defaults to the checkpoint index 0..n_points-1 (the paper fits over checkpoints). The
    result is invariant to any affine rescaling of ``x``, so normalised tokens seen gives the same
    answer as raw tokens seen, and as the index when checkpoints are evenly spaced in tokens.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 2 or losses.shape[0] < 2:
        raise ValueError(f"losses must be [n_points >= 2, n_tokens], got shape {losses.shape}")
    x = np.arange(losses.shape[0], dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    if x.shape != (losses.shape[0],):
        raise ValueError(f"x has shape {x.shape}, expected ({losses.shape[0]},)")
    xc = x - x.mean()
    denom = float(xc @ xc)
    if denom == 0.0:
        raise ValueError(f"cannot fit a line over identical x values {x.tolist()}")
    slope = (xc @ losses) / denom  # sum(xc) = 0, so the column means drop out
    return slope * (x[-1] - x[0])


def classify(
    losses: np.ndarray,
    x: np.ndarray | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    mean_loss: float | None = None,
) -> np.ndarray:
    """Category id (index into :data:`CATEGORIES`) of every token; -1 where any loss is not finite.

    ``losses`` is [n_points, n_tokens] ordered along training. ``delta`` is from :func:`fitted_delta`
    (``x`` = checkpoint index by default). ``delta < -threshold``: H->L; ``delta > threshold``: L->H;
    otherwise L->L when the token's final loss (last checkpoint, observed) is at most ``mean_loss``
    and H->H when above. ``mean_loss`` defaults to the mean final-checkpoint loss over all
    classifiable tokens, i.e. "low" and "high" are relative to the average token at the end.
    """
    losses = np.asarray(losses)
    ok = np.isfinite(losses).all(axis=0)
    delta = fitted_delta(np.where(ok, losses, 0.0), x)
    final = losses[-1].astype(np.float64)
    if mean_loss is None:
        mean_loss = float(final[ok].mean()) if ok.any() else float("nan")
    out = np.where(final <= mean_loss, LL, HH).astype(np.int8)
    out[delta > threshold] = LH
    out[delta < -threshold] = HL
    out[~ok] = UNCLASSIFIED
    return out


# --------------------------------------------------------------------------- summary tables
def _categorise(data: dict, threshold: float) -> np.ndarray:
    """Category of every token of a loaded npz (-1 for invalid tokens)."""
    valid = data["valid"]
    cats = np.full(valid.shape, UNCLASSIFIED, dtype=np.int8)
    cats[valid] = classify(data["losses"][:, valid], None, threshold)
    return cats


def dynamics_summary(
    npz_path: str | Path,
    out_csv_shares: str | Path,
    out_csv_curves: str | Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """Category shares and per-category loss curves of a :func:`checkpoint_losses` file.

    ``out_csv_shares`` (long form): ``kind, category, n_tokens, share``, where ``share`` is the % of
    the kind's classified tokens in the category; ``kind = "all"`` first, then one block per span kind
    present when the slice has labelled kinds (any kind id > 0). Each kind's shares sum to 100.
    ``out_csv_curves`` (long form): ``category, checkpoint, tokens_seen, mean_loss, share, n_tokens,
    model_dir``: the mean loss of the category's tokens under each model (Figure 3).
    Returns the shares table.
    """
    data = load_dynamics(npz_path)
    cats = _categorise(data, threshold)
    classified = cats >= 0
    n_dropped = int((data["valid"] & ~classified).sum())
    if n_dropped:
        log.warning("%d loss-bearing tokens with non-finite losses left unclassified", n_dropped)
    n_all = int(classified.sum())
    if n_all == 0:
        raise ValueError(f"{npz_path}: no classifiable tokens")
    kinds = data["kinds"]
    names = data["kind_names"]
    blocks = [("all", classified)]
    if (kinds[classified] > 0).any():
        for k in np.unique(kinds[classified]):
            name = names[k] if k < len(names) else f"kind{k}"
            blocks.append((name, classified & (kinds == k)))
    share_rows = []
    for kind, mask in blocks:
        counts = np.bincount(cats[mask], minlength=len(CATEGORIES))
        for c, category in enumerate(CATEGORIES):
            share_rows.append(
                {
                    "kind": kind,
                    "category": category,
                    "n_tokens": int(counts[c]),
                    "share": 100.0 * counts[c] / mask.sum(),
                }
            )
    shares = pd.DataFrame(share_rows)
    curve_rows = []
    losses = data["losses"]
    for c, category in enumerate(CATEGORIES):
        mask = cats == c
        n = int(mask.sum())
        for m, (model_dir, seen) in enumerate(zip(data["model_dirs"], data["tokens_seen"])):
            curve_rows.append(
                {
                    "category": category,
                    "checkpoint": m,
                    "tokens_seen": int(seen),
                    "mean_loss": float(losses[m][mask].astype(np.float64).mean()) if n else float("nan"),
                    "share": 100.0 * n / n_all,
                    "n_tokens": n,
                    "model_dir": model_dir,
                }
            )
    curves = pd.DataFrame(curve_rows)
    atomic_write_text(out_csv_shares, shares.to_csv(index=False))
    atomic_write_text(out_csv_curves, curves.to_csv(index=False))
    overall = shares[shares["kind"] == "all"].set_index("category")["share"]
    log.info(
        "token categories of %d tokens (threshold %.2f): %s",
        n_all,
        threshold,
        ", ".join(f"{c} {overall[c]:.1f}%" for c in CATEGORIES),
    )
    return shares


# --------------------------------------------------------------------------- Figure 3
def plot_dynamics(curves_csv: str | Path, out_png: str | Path) -> None:
    """Figure 3: one panel per category, mean loss against tokens seen, share in the title.

    Tokens seen is the x-axis when it increases strictly along the trajectory; otherwise the
    checkpoint index is used (and labelled so).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = pd.read_csv(curves_csv)
    missing = {"category", "checkpoint", "tokens_seen", "mean_loss", "share"} - set(curves.columns)
    if missing:
        raise ValueError(f"{curves_csv}: missing columns {sorted(missing)}")
    fig = Figure(figsize=(10, 7.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).reshape(-1)
    for ax, label, category in zip(axes, "abcd", CATEGORIES):  # the paper's panel order
        rows = curves[curves["category"] == category].sort_values("checkpoint")
        share = float(rows["share"].iloc[0]) if len(rows) else 0.0
        ax.set_title(f"({label}) Loss of {category.replace('->', '→')} tokens ({share:.1f}%)")
        x = rows["tokens_seen"].to_numpy()
        by_tokens = len(x) > 1 and bool(np.all(np.diff(x) > 0))
        if not by_tokens:
            x = rows["checkpoint"].to_numpy()
        ax.set_xlabel("tokens seen" if by_tokens else "checkpoint")
        ax.set_ylabel("mean loss")
        y = rows["mean_loss"].to_numpy(dtype=float)
        if len(rows) and np.isfinite(y).any():
            ax.plot(x, y, marker="o", color=f"C{CATEGORIES.index(category)}")
            ax.grid(alpha=0.3)
        else:
            ax.text(0.5, 0.5, "no tokens", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")


# --------------------------------------------------------------------------- Tables 4/6: coloured text
_CSS = (
    """
body { font-family: sans-serif; margin: 1.5em; }
.seq { font-family: monospace; white-space: pre-wrap; border: 1px solid #ccc; padding: .5em; margin: .5em 0;
       line-height: 1.6; }
.tok { border-radius: 2px; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .5em; font-family: monospace; }
"""
    + "".join(f".c{i} {{ background: {CATEGORY_COLOURS[c]}; }}\n" for i, c in enumerate(CATEGORIES))
    + f".sel {{ background: {SELECTED_COLOUR}; color: white; }}\n"
    + ".unsel { color: #777; }\n.noloss { color: #999; }\n"
)


def _tokens_text(tokenizer, ids) -> list[str]:
    return [tokenizer.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False) for i in ids]


def html_view(
    npz_path: str | Path,
    out_html: str | Path,
    *,
    tokenizer_dir: str | Path,
    n_sequences: int = 8,
    ratio: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> None:
    """A self-contained HTML page: the first ``n_sequences`` sequences of the slice, tokens coloured by
    category (paper Table 4); with ``ratio``, a second view marking the tokens SLM selects under the
    final checkpoint (top ``ratio`` by excess loss over the shown tokens, ``unit="batch"``; Table 6).

    Categories come from classifying the whole slice (as in :func:`dynamics_summary`). Each token is a
    ``<span class="tok ...">`` holding its escaped ``tokenizer.decode([id])``; whitespace is kept with
    ``white-space: pre-wrap``.
    """
    from transformers import AutoTokenizer

    from slm.selection import select_tokens, token_scores

    data = load_dynamics(npz_path)
    if ratio is not None and "reference" not in data:
        raise ValueError(f"{npz_path} holds no reference losses: cannot show SLM selection (ratio={ratio})")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cats = _categorise(data, threshold)
    seq_len = data["seq_len"]
    n_show = min(n_sequences, len(data["sequence_index"]))
    shown = slice(0, n_show * seq_len)
    texts = _tokens_text(tokenizer, data["tokens"][shown])
    losses = data["losses"]
    kinds = data["kinds"][shown]
    names = data["kind_names"]
    valid = data["valid"][shown]

    def kind_name(k: int) -> str:
        return names[k] if k < len(names) else f"kind{k}"

    classified = cats >= 0
    counts = np.bincount(cats[classified], minlength=len(CATEGORIES))
    parts = [
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Token dynamics</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Token dynamics</h1><p>{html.escape(str(npz_path))}: {len(data['model_dirs'])} models "
        f"(tokens seen {', '.join(str(int(s)) for s in data['tokens_seen'])}); categories by a least-squares "
        f"line over the checkpoints, threshold {threshold}.</p>",
        '<section id="categories"><h2>Tokens by loss category</h2><div class="legend">',
    ]
    for c, category in enumerate(CATEGORIES):
        share = 100.0 * counts[c] / max(1, classified.sum())
        parts.append(f'<span class="c{c}">{html.escape(category)} ({share:.1f}%)</span>')
    parts.append('<span class="noloss">no loss (sequence start)</span></div>')
    first, last = losses[0][shown], losses[-1][shown]
    for s in range(n_show):
        parts.append(f'<h3>sequence {int(data["sequence_index"][s])}</h3><div class="seq">')
        for t in range(s * seq_len, (s + 1) * seq_len):
            c = int(cats[t])
            if c >= 0:
                title = f"{CATEGORIES[c]}; {kind_name(int(kinds[t]))}; loss {first[t]:.2f} → {last[t]:.2f}"
                cls = f"c{c}"
            else:
                title, cls = f"{kind_name(int(kinds[t]))}; no loss", "noloss"
            parts.append(f'<span class="tok {cls}" title="{html.escape(title)}">{html.escape(texts[t])}</span>')
        parts.append("</div>")
    parts.append("</section>")
    if ratio is not None:
        reference = data["reference"][shown].reshape(n_show, seq_len)
        final = last.reshape(n_show, seq_len)
        ok = torch.from_numpy(valid.reshape(n_show, seq_len) & np.isfinite(reference) & np.isfinite(final))
        excess = token_scores(
            "excess", torch.from_numpy(np.nan_to_num(final)), torch.from_numpy(np.nan_to_num(reference))
        )
        selected = select_tokens(excess, ok, ratio, "batch").numpy().reshape(-1)
        excess = excess.numpy().reshape(-1)
        ok = ok.numpy().reshape(-1)
        parts.append(
            f'<section id="selection"><h2>Tokens selected by SLM (top {100 * ratio:g}% by excess loss, final '
            f'checkpoint)</h2><div class="legend"><span class="sel">selected ({int(selected.sum())} of '
            f'{int(ok.sum())})</span><span class="unsel">not selected</span>'
            '<span class="noloss">no loss</span></div>'
        )
        for s in range(n_show):
            parts.append(f'<h3>sequence {int(data["sequence_index"][s])}</h3><div class="seq">')
            for t in range(s * seq_len, (s + 1) * seq_len):
                if ok[t]:
                    cls = "sel" if selected[t] else "unsel"
                    title = f"excess {excess[t]:.3f} (loss {last[t]:.2f}, reference {data['reference'][t]:.2f})"
                else:
                    cls, title = "noloss", "no loss"
                parts.append(f'<span class="tok {cls}" title="{html.escape(title)}">{html.escape(texts[t])}</span>')
            parts.append("</div>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    atomic_write_text(out_html, "".join(parts))
    log.info("wrote %s (%d sequences%s)", out_html, n_show, f", selection at ratio {ratio}" if ratio else "")
