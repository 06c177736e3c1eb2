"""Token selection for Selective Language Modeling: rank tokens by a score, keep the top fraction.

The paper ranks the tokens of the whole batch by excess loss (current minus reference) and keeps the
top k%. Ties are broken deterministically by position (earlier token first).
"""

from __future__ import annotations

import torch

UNITS = ("batch", "sequence")
SCORE_FUNCTIONS = ("excess", "current", "reference", "random")


def n_selected(n_valid: int, ratio: float) -> int:
    """How many of ``n_valid`` loss-bearing tokens a ratio keeps (at least one when any exist)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"selection ratio must be in (0, 1], got {ratio}")
    return min(n_valid, max(1, round(ratio * n_valid))) if n_valid else 0


def _top_mask(scores: torch.Tensor, valid: torch.Tensor, ratio: float) -> torch.Tensor:
    """Select the top ``ratio`` of the valid entries of a 1-D score vector."""
    k = n_selected(int(valid.sum()), ratio)
    ranked = torch.where(valid, scores, torch.full_like(scores, float("-inf")))
    # A stable descending sort keeps equal scores in position order: deterministic tie-breaking.
    order = torch.sort(ranked, descending=True, stable=True).indices[:k]
    mask = torch.zeros_like(valid)
    mask[order] = True
    return mask


def select_tokens(scores: torch.Tensor, valid: torch.Tensor, ratio: float, unit: str = "batch") -> torch.Tensor:
    """Boolean mask (same shape as ``scores``, [sequences, length]) of the selected tokens.

    ``valid`` marks loss-bearing tokens. ``unit="batch"`` ranks all tokens of the batch together,
    ``unit="sequence"`` keeps the top ``ratio`` of each sequence.
    """
    if unit not in UNITS:
        raise ValueError(f"selection unit must be one of {UNITS}, got {unit!r}")
    if ratio == 1.0:
        return valid.clone()
    scores = scores.detach().float()
    if unit == "batch":
        return _top_mask(scores.reshape(-1), valid.reshape(-1), ratio).view_as(valid)
    return torch.stack([_top_mask(s, v, ratio) for s, v in zip(scores, valid)])


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
