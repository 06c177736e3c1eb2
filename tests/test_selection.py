import numpy as np
import pytest
import torch

from slm.selection import document_ids, n_selected, select_tokens, soft_weights, token_scores


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
        select_tokens(scores, valid, 0.5, "paragraph")


def test_excess_loss_is_current_minus_reference():
    current = torch.tensor([[float("nan"), 3.0, 1.0, 2.0]])
    reference = torch.tensor([[float("nan"), 2.9, 0.1, 2.5]])
    excess = token_scores("excess", current, reference)
    assert torch.allclose(excess[:, 1:], torch.tensor([[0.1, 0.9, -0.5]]))
    mask = select_tokens(excess, _valid(current.shape), 0.34, "batch")
    assert mask.tolist() == [[False, False, True, False]]


def test_document_ids_start_after_each_eos():
    eos = 0
    tokens = torch.tensor([[5, 6, 0, 7, 8, 0], [9, 0, 3, 3, 3, 3]])
    assert document_ids(tokens, eos).tolist() == [[0, 0, 0, 1, 1, 1], [2, 2, 3, 3, 3, 3]]


def test_document_selection_keeps_the_documents_with_the_highest_mean_score():
    tokens = torch.tensor([[5, 6, 0, 7, 8, 0, 4, 4]])
    docs = document_ids(tokens, 0)  # fragments: positions 0-2, 3-5, 6-7
    scores = torch.tensor([[0.0, 1.0, 1.0, 5.0, -9.0, 0.0, 2.0, 2.0]])
    valid = _valid(scores.shape)  # 7 valid tokens
    # means over valid tokens: doc0 (pos 1-2) 1.0, doc1 (-4/3), doc2 2.0; 4 of 7 tokens kept:
    # doc2 whole (2 tokens), then doc0 (2 tokens); doc1 holds the single best token but is dropped.
    mask = select_tokens(scores, valid, 4 / 7, "document", docs)
    assert mask.tolist() == [[False, True, True, False, False, False, True, True]]
    # Token-level selection would keep the best single token of doc1.
    assert select_tokens(scores, valid, 4 / 7, "batch")[0, 3]


def test_document_selection_cuts_the_last_document_by_position():
    tokens = torch.tensor([[5, 5, 5, 5, 5, 5]])
    mask = select_tokens(torch.zeros(1, 6), _valid((1, 6)), 0.6, "document", document_ids(tokens, 0))
    assert mask.tolist() == [[False, True, True, True, False, False]]


def test_soft_weights_follow_the_score_and_average_one():
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    valid = _valid(scores.shape)
    weights = soft_weights(scores, valid, temperature=1.0)
    expected = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0) * 3
    assert weights[0, 0] == 0 and torch.allclose(weights[0, 1:], expected)
    assert weights[valid].mean().item() == pytest.approx(1.0)
    flat = soft_weights(scores, valid, temperature=1e6)
    assert torch.allclose(flat[valid], torch.ones(3), atol=1e-4)
