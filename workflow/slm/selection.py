"""Token selection for Selective Language Modeling: rank tokens by a score, keep the top fraction.

The paper ranks the tokens of the whole batch by excess loss (current minus reference) and keeps the
top k%. Ties are broken deterministically by position (earlier token first). The alternatives below
(per-sequence ranking, whole documents, soft weights) are the ablations users asked about.

Device-clean: every tensor is made on the input's device and nothing is read back to the host (the
counts that fix k stay on the device), so a selection runs on an accelerator without synchronising.
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


def _k(n_valid: torch.Tensor, ratio: float) -> torch.Tensor:
    """:func:`n_selected` on a device tensor of counts (same float64 product, same round-half-to-even),
    so that no count has to be read back to the host."""
    k = torch.round(n_valid.double() * ratio).long()
    return torch.where(n_valid > 0, torch.minimum(k.clamp(min=1), n_valid), torch.zeros_like(n_valid))


def _first_k(keys: torch.Tensor, valid: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Mask of the ``k`` valid entries with the smallest keys along the last dimension (``k`` broadcasts
    over the leading ones). A stable sort ranks ties by position; invalid entries rank last."""
    inf = torch.inf if keys.is_floating_point() else torch.iinfo(keys.dtype).max
    ranked = torch.where(valid, keys, torch.full_like(keys, inf))
    order = torch.sort(ranked, dim=-1, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order)
    )
    return valid & (rank < k)


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
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"selection ratio must be in (0, 1], got {ratio}")
    if ratio == 1.0:
        return valid.clone()
    scores = scores.detach().float()
    if unit == "sequence":
        return _first_k(-scores, valid, _k(valid.sum(dim=1, keepdim=True), ratio))
    flat_scores, flat_valid = scores.reshape(-1), valid.reshape(-1)
    k = _k(flat_valid.sum(), ratio)
    if unit == "batch":
        return _first_k(-flat_scores, flat_valid, k).view_as(valid)
    if doc_ids is None:
        raise ValueError("document-level selection needs the document ids of the tokens")
    docs = doc_ids.reshape(-1)
    # Room for one document per token, so the number of documents need not be read from the device;
    # unused slots have no valid token and rank last.
    n_slots = docs.numel()
    counts = flat_scores.new_zeros(n_slots).index_add_(0, docs, flat_valid.float())
    sums = flat_scores.new_zeros(n_slots).index_add_(0, docs, torch.where(flat_valid, flat_scores, 0.0))
    means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("-inf")))
    order = torch.sort(means, descending=True, stable=True).indices
    doc_rank = torch.empty_like(order).scatter_(0, order, torch.arange(n_slots, device=order.device))
    # Tokens rank by their document's rank, then (the stable sort) by position within the batch.
    return _first_k(doc_rank[docs], flat_valid, k).view_as(valid)


def soft_weights(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft reweighting instead of hard top-k: softmax of score / temperature over the batch's
    valid tokens, scaled to mean 1 (so the loss stays on the scale of a mean cross-entropy)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scores = scores.detach().float()
    logits = torch.where(valid, scores / temperature, torch.full_like(scores, float("-inf")))
    weights = torch.softmax(logits.reshape(-1), 0).view_as(scores) * valid.sum()
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
        # Drawn on the CPU from ``generator`` (a CPU generator) and moved: for a given generator state
        # the same tensor on every device and every rank.
        return torch.rand(current.shape, generator=generator).to(current.device)
    raise ValueError(f"score function must be one of {SCORE_FUNCTIONS}, got {score_fn!r}")
