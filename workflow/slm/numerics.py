"""How much the numeric path moves per-token losses and the tokens SLM selects.

Before the precision policy of :mod:`slm.model`, a ``precision: bf16`` run scored the corpus with bf16
weights but took the trainer's current loss with fp32 weights under bf16 autocast. This measures, on a
validation slice, the per-token difference between that old trainer path and the policy's path (bf16
weights, :func:`slm.model.per_token_losses`), each also against fp32, and the overlap of the top-``ratio``
excess-loss masks that each way gives, batch by batch as the trainer ranks (``unit: batch``)::

    python -m slm numerics --current results/models/base --reference results/models/reference/final \\
        --shard results/data/packed/corpus/shard-000 --out numerics.json
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slm.data.packed import PackedShard
from slm.dynamics import validation_slice
from slm.model import load_for_inference, per_token_losses
from slm.schema import check_section
from slm.selection import select_tokens

log = logging.getLogger(__name__)

PATHS = ("fp32", "bf16 autocast (old trainer)", "bf16 weights (policy)")
QUANTILES = (0.5, 0.9, 0.99, 0.999)
# The options of numerics: a section of the config schema (benchmarks.numerics), the one place of
# their defaults and ranges.
NUMERICS_OPTIONS = "/definitions/numerics_options"


def _autocast_losses(model, ids: torch.Tensor) -> torch.Tensor:
    """The old trainer path: fp32 weights under bf16 autocast, full logits, cross-entropy on them in fp32."""
    with torch.autocast(ids.device.type, dtype=torch.bfloat16):
        logits = model(input_ids=ids).logits
    ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
    return torch.cat([ce.new_full((len(ids), 1), float("nan")), ce.view(len(ids), -1)], dim=1)


def path_losses(model_dir: str | Path, ids: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Per-token losses of ``model_dir`` on ``ids`` by each of :data:`PATHS`."""
    fp32, _ = load_for_inference(model_dir, "cpu", "fp32")
    bf16, _ = load_for_inference(model_dir, "cpu", "bf16")
    compute = {
        PATHS[0]: lambda batch: per_token_losses(fp32, batch),
        PATHS[1]: lambda batch: _autocast_losses(fp32, batch),
        PATHS[2]: lambda batch: per_token_losses(bf16, batch),
    }
    out = {}
    with torch.inference_mode():
        for name, losses in compute.items():
            out[name] = np.concatenate(
                [losses(torch.from_numpy(ids[i : i + batch_size])).numpy() for i in range(0, len(ids), batch_size)]
            )
    return out


def _difference(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a[:, 1:] - b[:, 1:]).reshape(-1).astype(np.float64)
    return {
        "max": float(diff.max()),
        "mean": float(diff.mean()),
        **{f"q{q:g}": float(np.quantile(diff, q)) for q in QUANTILES},
    }


def _overlap(a: list[torch.Tensor], b: list[torch.Tensor]) -> dict:
    both = sum(int((x & y).sum()) for x, y in zip(a, b))
    either = sum(int((x | y).sum()) for x, y in zip(a, b))
    return {"jaccard": both / either, "share_of_selected": both / sum(int(x.sum()) for x in a)}


def numerics(current: str | Path, reference: str | Path, shard_dir: str | Path, **options) -> dict:
    """Per-token differences between the paths of :data:`PATHS` for the current and the reference model,
    and the overlap of the top-``ratio`` excess-loss masks (current minus reference loss, the reference
    rounded to float16 as stored by the scorer) per batch of ``batch_size`` sequences. The old pipeline's
    excess pairs the old trainer path with bf16-weight scores; each other way uses one path for both.
    ``options`` (``max_sequences``, ``batch_size``, ``ratio``, ``seed``) are those of the config schema's
    ``numerics_options`` (``benchmarks.numerics``), unset ones at its defaults."""
    options = check_section(options, NUMERICS_OPTIONS, "benchmarks.numerics", closed=True)
    max_sequences, batch_size, ratio, seed = (options[k] for k in ("max_sequences", "batch_size", "ratio", "seed"))
    shard = PackedShard.open(shard_dir)
    rows = validation_slice(shard.n_sequences, max_sequences, seed)
    ids = np.stack([np.asarray(shard.tokens[shard.sequence_slice(int(r))], dtype=np.int64) for r in rows])
    log.info("numerics: %d sequences x %d tokens of %s", len(rows), shard.seq_len, shard_dir)
    cur = path_losses(current, ids, batch_size)
    ref = {
        name: losses.astype(np.float16).astype(np.float32)
        for name, losses in path_losses(reference, ids, batch_size).items()
    }
    result = {
        "current": str(current),
        "reference": str(reference),
        "shard": str(shard_dir),
        "n_sequences": len(rows),
        "seq_len": shard.seq_len,
        "ratio": ratio,
        "batch_size": batch_size,
        "difference": {},
        "mask_overlap": {},
    }
    for model, losses in (("current", cur), ("reference", ref)):
        result["difference"][f"{model}: old trainer vs policy"] = _difference(losses[PATHS[1]], losses[PATHS[2]])
        for name in PATHS[1:]:
            result["difference"][f"{model}: {name} vs fp32"] = _difference(losses[name], losses[PATHS[0]])
    excess = {
        "fp32": cur[PATHS[0]] - ref[PATHS[0]],
        "old pipeline": cur[PATHS[1]] - ref[PATHS[2]],
        "policy": cur[PATHS[2]] - ref[PATHS[2]],
    }
    valid = np.ones(ids.shape, dtype=bool)
    valid[:, 0] = False
    masks = {
        way: [
            select_tokens(
                torch.from_numpy(scores[i : i + batch_size]), torch.from_numpy(valid[i : i + batch_size]), ratio
            )
            for i in range(0, len(ids), batch_size)
        ]
        for way, scores in excess.items()
    }
    for a, b in (("old pipeline", "policy"), ("old pipeline", "fp32"), ("policy", "fp32")):
        result["mask_overlap"][f"{a} vs {b}"] = _overlap(masks[a], masks[b])
    return result


def format_numerics(result: dict) -> str:
    lines = [
        f"{result['n_sequences']} sequences x {result['seq_len']} tokens of {result['shard']}; current "
        f"{result['current']}, reference {result['reference']}",
        "",
        "| per-token |loss difference| (nats) | max | mean | " + " | ".join(f"q{q:g}" for q in QUANTILES) + " |",
        "|---|---|---|" + "---|" * len(QUANTILES),
    ]
    for name, d in result["difference"].items():
        values = [d["max"], d["mean"], *(d[f"q{q:g}"] for q in QUANTILES)]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2e}" for v in values) + " |")
    lines += [
        "",
        f"| top-{result['ratio']:.0%} excess-loss masks (per batch of {result['batch_size']}) "
        "| Jaccard | share of selected |",
        "|---|---|---|",
    ]
    for name, o in result["mask_overlap"].items():
        lines.append(f"| {name} | {o['jaccard']:.4f} | {o['share_of_selected']:.4f} |")
    return "\n".join(lines)
