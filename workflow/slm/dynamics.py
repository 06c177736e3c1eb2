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

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from slm.data.packed import PackedShard
from slm.io import atomic_path, atomic_write_text, read_json
from slm.model import load_for_inference, resolve_device
from slm.score import open_scores, sequence_losses

log = logging.getLogger(__name__)

CATEGORIES = ("H->H", "L->H", "H->L", "L->L")
HH, LH, HL, LL = range(4)
UNCLASSIFIED = -1
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


def checkpoint_losses(
    model_dirs: list[str],
    shard_dir: str | Path,
    out_npz: str | Path,
    *,
    max_sequences: int,
    seed: int,
    batch_size: int,
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
        reference = np.asarray(open_scores(reference_scores, shard)[flat], dtype=np.float32)
    seen = list(tokens_seen) if tokens_seen is not None else read_tokens_seen(model_dirs)
    dev = resolve_device(device)
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
        model, _ = load_for_inference(model_dir, dev, precision)
        sequence_losses(model, tokens, seq_len, batch_size=batch_size, out=losses[m])
        del model
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
    *,
    threshold: float,
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
    cats[valid] = classify(data["losses"][:, valid], threshold=threshold)
    return cats


def dynamics_summary(
    npz_path: str | Path,
    out_csv_shares: str | Path,
    out_csv_curves: str | Path,
    *,
    threshold: float,
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
def _tokens_text(tokenizer, ids) -> list[str]:
    return [tokenizer.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False) for i in ids]


def _sequence_rows(sequence_index, texts: list[str], classes: list[str], titles: list[str], seq_len: int) -> list[dict]:
    """The shown sequences for the template: ``{index, tokens: [{text, cls, title}]}``."""
    tokens = [{"text": t, "cls": c, "title": h} for t, c, h in zip(texts, classes, titles)]
    return [
        {"index": int(index), "tokens": tokens[s * seq_len : (s + 1) * seq_len]}
        for s, index in enumerate(sequence_index)
    ]


def html_view(
    npz_path: str | Path,
    out_html: str | Path,
    *,
    tokenizer_dir: str | Path,
    threshold: float,
    n_sequences: int = 8,
    ratio: float | None = None,
    ratio_of: str | None = None,
    run: str = "",
    source: str | Path | None = None,
) -> None:
    """A self-contained HTML page: the first ``n_sequences`` sequences of the slice, tokens coloured by
    category (paper Table 4); with ``ratio``, a second view marking the top ``ratio`` of the shown tokens
    by excess loss under the final checkpoint of this run (``unit="batch"``; Table 6). For an SLM run
    these are the tokens it would select; ``ratio_of`` names the run the ratio comes from when it is
    another (e.g. the CLM run's view ranks CLM's own losses at SLM's ratio, and says so).

    Categories come from classifying the whole slice (as in :func:`dynamics_summary`). Each token is a
    ``<span class="tok ...">`` holding its escaped ``tokenizer.decode([id])``; whitespace is kept with
    ``white-space: pre-wrap``. ``source`` is the losses file named in the header (default ``npz_path``;
    the final path when the file is written under a temporary name). Rendered from
    ``templates/tokens.html.j2``.
    """
    from jinja2 import Environment, PackageLoader
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
    index = data["sequence_index"][:n_show]
    texts = _tokens_text(tokenizer, data["tokens"][shown])
    names = data["kind_names"]
    kinds = [names[k] if k < len(names) else f"kind{k}" for k in data["kinds"][shown]]
    first, last = data["losses"][0][shown], data["losses"][-1][shown]

    classified = cats >= 0
    counts = np.bincount(cats[classified], minlength=len(CATEGORIES))
    legend = [(c, 100.0 * counts[i] / max(1, classified.sum())) for i, c in enumerate(CATEGORIES)]
    shown_cats = cats[shown]
    categories = _sequence_rows(
        index,
        texts,
        [f"c{c}" if c >= 0 else "noloss" for c in shown_cats],
        [
            f"{CATEGORIES[c]}; {kind}; loss {a:.2f} → {b:.2f}" if c >= 0 else f"{kind}; no loss"
            for c, kind, a, b in zip(shown_cats, kinds, first, last)
        ],
        seq_len,
    )
    selection = None
    if ratio is not None:
        reference = data["reference"][shown]
        ok = torch.from_numpy(
            (data["valid"][shown] & np.isfinite(reference) & np.isfinite(last)).reshape(n_show, seq_len)
        )
        excess = token_scores(
            "excess", torch.from_numpy(np.nan_to_num(last)), torch.from_numpy(np.nan_to_num(reference))
        ).reshape(n_show, seq_len)
        selected = select_tokens(excess, ok, ratio, "batch").numpy().reshape(-1)
        excess, ok = excess.numpy().reshape(-1), ok.numpy().reshape(-1)
        whose = f"{run}'s" if run else "the"
        title = f"Top {100 * ratio:g}% of tokens by excess loss under {whose} final model"
        title += f" (the selection ratio of {ratio_of})" if ratio_of and ratio_of != run else " (its selection)"
        selection = {
            "title": title,
            "n_selected": int(selected.sum()),
            "n_candidates": int(ok.sum()),
            "rows": _sequence_rows(
                index,
                texts,
                [("sel" if s else "unsel") if o else "noloss" for s, o in zip(selected, ok)],
                [
                    f"excess {e:.3f} (loss {b:.2f}, reference {r:.2f})" if o else "no loss"
                    for e, b, r, o in zip(excess, last, reference, ok)
                ],
                seq_len,
            ),
        }
    page = (
        Environment(loader=PackageLoader("slm"), autoescape=True, keep_trailing_newline=True)
        .get_template("tokens.html.j2")
        .render(
            run=run,
            source=str(source if source is not None else npz_path),
            n_models=len(data["model_dirs"]),
            tokens_seen=[int(s) for s in data["tokens_seen"]],
            threshold=threshold,
            legend=legend,
            category_colours=[CATEGORY_COLOURS[c] for c in CATEGORIES],
            selected_colour=SELECTED_COLOUR,
            categories=categories,
            selection=selection,
        )
    )
    atomic_write_text(out_html, page)
    log.info("wrote %s (%d sequences%s)", out_html, n_show, f", selection at ratio {ratio}" if ratio else "")
