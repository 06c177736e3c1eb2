"""Score a packed shard with the reference model: the loss of every token, in its training context."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from slm.data.packed import PackedShard, load_array
from slm.fingerprint import model_fingerprint
from slm.io import atomic_path, atomic_write_json, read_json, sha256_file
from slm.model import check_vocabulary, load_for_inference, per_token_losses, resolve_device
from slm.progress import progress

log = logging.getLogger(__name__)

ALIGNMENT = (
    "scores[i] = -log p_ref(tokens[i] | tokens[s..i-1]) where s = i - i % seq_len is the start of the "
    "packed sequence holding token i; NaN at every sequence start (no context)"
)


def sequence_losses(
    model, tokens: np.ndarray, seq_len: int, *, batch_size: int, out: np.ndarray, desc: str = "per-token losses"
) -> np.ndarray:
    """Fill ``out`` with the per-token losses of packed sequences under ``model``, batch by batch.

    ``tokens`` holds whole sequences of ``seq_len`` tokens back to back (a packed shard, or rows taken
    from one); ``out`` has its length and any float dtype. Each sequence is its own context: ``out[i]``
    follows :data:`ALIGNMENT`. Progress (slm.progress) is shown as ``desc``.
    """
    n_seq = len(tokens) // seq_len
    device = next(model.parameters()).device
    with torch.inference_mode(), progress(len(out), desc, "tok", unit_scale=True) as bar:
        for first in range(0, n_seq, batch_size):
            rows = range(first, min(first + batch_size, n_seq))
            block = np.asarray(tokens[rows.start * seq_len : rows.stop * seq_len], dtype=np.int64)
            ids = torch.from_numpy(block).view(len(rows), seq_len).to(device)
            losses = per_token_losses(model, ids)
            out[rows.start * seq_len : rows.stop * seq_len] = losses.reshape(-1).cpu().numpy()
            bar.update(len(rows) * seq_len)
    return out


def score_shard(
    model_dir: str | Path,
    shard_dir: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int,
    device: str = "auto",
    precision: str = "fp32",
) -> dict:
    shard = PackedShard.open(shard_dir)
    check_vocabulary(model_dir, [shard])
    log.info("scoring the %d tokens of %s with %s", shard.index["n_tokens"], shard_dir, model_dir)
    dev = resolve_device(device)
    model, _ = load_for_inference(model_dir, dev, precision)
    seq_len = shard.seq_len
    scores = np.empty(shard.index["n_tokens"], dtype=np.float16)
    start = time.perf_counter()
    sequence_losses(model, shard.tokens, seq_len, batch_size=batch_size, out=scores, desc=f"score {shard_dir}")
    elapsed = time.perf_counter() - start
    meta = {
        "n_tokens": int(len(scores)),
        "seq_len": seq_len,
        "tokens_sha256": shard.index["tokens_sha256"],
        "token_shard": str(shard_dir),
        "reference_model": str(model_dir),
        "reference_fingerprint": model_fingerprint(model_dir),
        "alignment": ALIGNMENT,
        "dtype": "float16",
        "precision": precision,
        "mean_loss": float(np.nanmean(scores.astype(np.float32))),
        "tokens_per_second": len(scores) / elapsed,
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        np.save(tmp / "scores.npy", scores)
        meta["scores_sha256"] = sha256_file(tmp / "scores.npy")
        atomic_write_json(tmp / "meta.json", meta)
    log.info(
        "wrote %s: %d tokens, mean loss %.4f, %.0f tokens/s",
        out_dir,
        len(scores),
        meta["mean_loss"],
        meta["tokens_per_second"],
    )
    return meta


class ScoreMismatchError(ValueError):
    """A score shard that does not belong to its token shard or to the expected reference model."""


def open_scores(score_dir: str | Path, shard: PackedShard, reference_model: str | Path | None = None) -> np.ndarray:
    """Memory-map a score shard after checking that it scores exactly ``shard``'s tokens."""
    score_dir = Path(score_dir)
    meta = read_json(score_dir / "meta.json", "score shard metadata")
    problems = []
    if meta.get("n_tokens") != shard.index["n_tokens"]:
        problems.append(f"token count {meta.get('n_tokens')} != {shard.index['n_tokens']}")
    if meta.get("seq_len") != shard.seq_len:
        problems.append(f"sequence length {meta.get('seq_len')} != {shard.seq_len}")
    if meta.get("tokens_sha256") != shard.index["tokens_sha256"]:
        problems.append("token hash differs (the shard was re-prepared after scoring)")
    if reference_model is not None and meta.get("reference_fingerprint") != model_fingerprint(reference_model):
        problems.append(f"scored by another reference model than {reference_model}")
    scores = load_array(score_dir / "scores.npy", "re-run the scoring step for this shard")
    if scores.shape != (shard.index["n_tokens"],):
        problems.append(f"scores.npy has shape {scores.shape}")
    if problems:
        raise ScoreMismatchError(
            f"score shard {score_dir} does not match token shard {shard.path}: "
            + "; ".join(problems)
            + ". Re-run the scoring step for this shard."
        )
    return scores
