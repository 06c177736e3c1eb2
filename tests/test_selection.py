import numpy as np
import pytest
import torch

from slm.selection import n_selected, select_tokens, token_scores


def _valid(shape):
    valid = torch.ones(shape, dtype=torch.bool)
    valid[:, 0] = False
    return valid


@pytest.mark.parametrize("ratio", [0.1, 0.35, 0.6, 0.999])
def test_batch_selection_keeps_exactly_the_top_k_by_score(ratio):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(8, 50, generator=gen)
    valid = _valid(scores.shape)
    mask = select_tokens(scores, valid, ratio, "batch")
    n_valid = 8 * 49
    k = round(ratio * n_valid)
    assert int(mask.sum()) == k == n_selected(n_valid, ratio)
    assert not mask[:, 0].any()
    # Independent: the k-th largest valid score is the threshold.
    flat = np.sort(scores[valid].numpy())[::-1]
    assert scores[mask].min().item() == pytest.approx(flat[k - 1])
    assert (scores[valid & ~mask] <= flat[k - 1]).all()


def test_sequence_selection_keeps_top_k_of_each_row():
    scores = torch.randn(4, 21, generator=torch.Generator().manual_seed(1))
    scores[0] += 100  # a batch-level ranking would take everything from row 0
    mask = select_tokens(scores, _valid(scores.shape), 0.5, "sequence")
    assert mask.sum(dim=1).tolist() == [10, 10, 10, 10]
    batch_mask = select_tokens(scores, _valid(scores.shape), 0.5, "batch")
    assert batch_mask[0, 1:].all()


def test_ties_are_broken_by_position_deterministically():
    scores = torch.zeros(2, 6)
    mask = select_tokens(scores, _valid(scores.shape), 0.4, "batch")
    # 10 valid tokens, 4 selected: the first four valid positions in row-major order.
    assert mask.tolist() == [[False, True, True, True, True, False], [False] * 6]
    assert torch.equal(mask, select_tokens(scores, _valid(scores.shape), 0.4, "batch"))


def test_ratio_one_selects_every_valid_token_and_bad_ratio_fails():
    scores = torch.randn(3, 7)
    valid = _valid(scores.shape)
    assert torch.equal(select_tokens(scores, valid, 1.0), valid)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            select_tokens(scores, valid, bad)
    with pytest.raises(ValueError, match="unit"):
        select_tokens(scores, valid, 0.5, "document")


def test_excess_loss_is_current_minus_reference():
    current = torch.tensor([[float("nan"), 3.0, 1.0, 2.0]])
    reference = torch.tensor([[float("nan"), 2.9, 0.1, 2.5]])
    excess = token_scores("excess", current, reference)
    assert torch.allclose(excess[:, 1:], torch.tensor([[0.1, 0.9, -0.5]]))
    mask = select_tokens(excess, _valid(current.shape), 0.34, "batch")
    assert mask.tolist() == [[False, False, True, False]]
