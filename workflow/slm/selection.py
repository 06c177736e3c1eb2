"""Token selection for Selective Language Modeling: rank tokens by a score, keep the top fraction.

The paper ranks the tokens of the whole batch by excess loss (current minus reference) and keeps the
top k%. Ties are broken deterministically by position (earlier token first). The alternatives below
(per-sequence ranking, whole documents, soft weights) are the ablations users asked about.
"""

from __future__ import annotations

import torch

UNITS = ("batch", "sequence", "document")
SCORE_FUNCTIONS = ("excess", "current", "reference", "random")
WEIGHTINGS = ("hard", "soft")


def n_selected(n_valid: int, ratio: float) -> int:
    """How many of ``n_valid`` loss-bearing tokens a ratio keeps (at least one when any exist)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"selection ratio must be in (0, 1], got {ratio}")
    return min(n_valid, max(1, round(ratio * n_valid))) if n_valid else 0


def _first_k(keys: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the ``k`` valid entries with the smallest keys (a stable sort: ties by position)."""
    ranked = torch.where(valid, keys, torch.full_like(keys, float("inf")))
    order = torch.sort(ranked, stable=True).indices[:k]
    mask = torch.zeros_like(valid)
    mask[order] = True
    return mask


def document_ids(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Id of the document fragment each token belongs to (a fragment ends at EOS or at a sequence end)."""
    starts = torch.zeros_like(tokens, dtype=torch.bool)
    starts[:, 0] = True
    starts[:, 1:] = tokens[:, :-1] == eos_id
    return torch.cumsum(starts.reshape(-1).long(), 0).view_as(tokens) - 1


def select_tokens(
    scores: torch.Tensor,
    valid: torch.Tensor,
    ratio: float,
    unit: str = "batch",
    doc_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean mask (same shape as ``scores``, [sequences, length]) of the selected tokens.

    ``valid`` marks loss-bearing tokens. ``unit="batch"`` ranks all tokens of the batch together;
    ``"sequence"`` keeps the top ``ratio`` of each sequence; ``"document"`` ranks the document
    fragments of the batch by their mean score and keeps whole fragments, best first, until the
    batch's top-``ratio`` token count is reached (the last fragment may be cut, by position).
    """
    if unit not in UNITS:
        raise ValueError(f"selection unit must be one of {UNITS}, got {unit!r}")
    if ratio == 1.0:
        return valid.clone()
    scores = scores.detach().float()
    if unit == "sequence":
        return torch.stack([_first_k(-s, v, n_selected(int(v.sum()), ratio)) for s, v in zip(scores, valid)])
    flat_scores, flat_valid = scores.reshape(-1), valid.reshape(-1)
    k = n_selected(int(flat_valid.sum()), ratio)
    if unit == "batch":
        return _first_k(-flat_scores, flat_valid, k).view_as(valid)
    if doc_ids is None:
        raise ValueError("document-level selection needs the document ids of the tokens")
    docs = doc_ids.reshape(-1)
    n_docs = int(docs.max()) + 1
    counts = torch.zeros(n_docs).index_add_(0, docs, flat_valid.float())
    sums = torch.zeros(n_docs).index_add_(0, docs, torch.where(flat_valid, flat_scores, 0.0))
    means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("-inf")))
    doc_rank = torch.empty(n_docs, dtype=torch.long)
    doc_rank[torch.sort(means, descending=True, stable=True).indices] = torch.arange(n_docs)
    # Rank tokens by their document's rank, then by position within the batch.
    keys = (doc_rank[docs] * docs.numel() + torch.arange(docs.numel())).double()
    return _first_k(keys, flat_valid, k).view_as(valid)


def soft_weights(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft reweighting instead of hard top-k: softmax of score / temperature over the batch's
    valid tokens, scaled to mean 1 (so the loss stays on the scale of a mean cross-entropy)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scores = scores.detach().float()
    logits = torch.where(valid, scores / temperature, torch.full_like(scores, float("-inf")))
    weights = torch.softmax(logits.reshape(-1), 0).view_as(scores) * int(valid.sum())
    return torch.where(valid, weights, torch.zeros_like(weights))


def token_scores(
    score_fn: str, current: torch.Tensor, reference: torch.Tensor | None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The ranking score of each token: higher is kept first."""
    if score_fn == "excess":
        return current - reference
    if score_fn == "current":
        return current.clone()
    if score_fn == "reference":
        # Low reference loss = what the reference model finds learnable and clean.
        return -reference
    if score_fn == "random":
        return torch.rand(current.shape, generator=generator)
    raise ValueError(f"score function must be one of {SCORE_FUNCTIONS}, got {score_fn!r}")
