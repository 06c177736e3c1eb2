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


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _tied_batch(seed: int = 3):
    """Scores with many ties (a few distinct values), documents of varied lengths, loss-bearing mask."""
    gen = torch.Generator().manual_seed(seed)
    current = torch.randint(0, 4, (5, 24), generator=gen).float() / 2
    reference = torch.randint(0, 3, (5, 24), generator=gen).float() / 2
    tokens = torch.randint(1, 6, (5, 24), generator=gen)
    tokens[torch.rand(5, 24, generator=gen) < 0.15] = 0  # EOS
    current[:, 0] = float("nan")
    reference[:, 0] = float("nan")
    return current, reference, tokens, _valid(current.shape)


def _python_top_k(scores: list[float], positions: list[int], k: int) -> set[int]:
    """Independent rule: highest score first, ties by position."""
    return set(sorted(positions, key=lambda p: (-scores[p], p))[:k])


@pytest.mark.parametrize("unit", ["batch", "sequence", "document"])
def test_selection_with_ties_matches_an_independent_python_ranking(unit):
    current, reference, tokens, valid = _tied_batch()
    scores = current - reference
    docs = document_ids(tokens, 0)
    mask = select_tokens(scores, valid, 0.45, unit, docs if unit == "document" else None)
    flat, flat_valid, flat_docs = scores.reshape(-1).tolist(), valid.reshape(-1).tolist(), docs.reshape(-1).tolist()
    positions = [p for p in range(len(flat)) if flat_valid[p]]
    if unit == "batch":
        want = _python_top_k(flat, positions, n_selected(len(positions), 0.45))
    elif unit == "sequence":
        want = set()
        for row in range(scores.shape[0]):
            in_row = [p for p in positions if p // scores.shape[1] == row]
            want |= _python_top_k(flat, in_row, n_selected(len(in_row), 0.45))
    else:
        means = {}
        for p in positions:
            means.setdefault(flat_docs[p], []).append(flat[p])
        doc_order = sorted(means, key=lambda d: (-sum(means[d]) / len(means[d]), d))
        ranked = sorted(positions, key=lambda p: (doc_order.index(flat_docs[p]), p))
        want = set(ranked[: n_selected(len(positions), 0.45)])
    assert {p for p, m in enumerate(mask.reshape(-1).tolist()) if m} == want


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("score_fn", ["excess", "current", "reference", "random"])
@pytest.mark.parametrize("weighting", ["hard", "soft"])
@pytest.mark.parametrize("unit", ["batch", "sequence", "document"])
def test_every_unit_weighting_and_score_function_runs_on_device_like_on_cpu(device, score_fn, weighting, unit):
    current, reference, tokens, valid = _tied_batch()

    def weights_on(dev: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(7)  # a CPU generator, as the trainer passes
        scores = token_scores(score_fn, current.to(dev), reference.to(dev), generator)
        assert scores.device.type == dev
        if weighting == "soft":
            return soft_weights(scores, valid.to(dev), temperature=0.5)
        docs = document_ids(tokens.to(dev), 0) if unit == "document" else None
        return select_tokens(scores, valid.to(dev), 0.6, unit, docs)

    on_cpu, on_device = weights_on("cpu"), weights_on(device)
    assert on_device.device.type == device
    if weighting == "hard":
        assert on_device.dtype == torch.bool and torch.equal(on_device.cpu(), on_cpu)
    else:
        torch.testing.assert_close(on_device.cpu(), on_cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("unit", ["batch", "sequence", "document"])
def test_selection_does_not_synchronise_with_the_host(unit):
    current, reference, tokens, valid = _tied_batch()
    scores, valid, docs = (current - reference).cuda(), valid.cuda(), document_ids(tokens.cuda(), 0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        select_tokens(scores, valid, 0.6, unit, docs)
        soft_weights(scores, valid, 1.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_k_on_the_device_equals_n_selected():
    from slm.selection import _k

    n = torch.arange(0, 301)
    for ratio in (0.1, 0.25, 0.5, 0.6, 1 / 3, 0.999, 1.0):
        assert _k(n, ratio).tolist() == [n_selected(i, ratio) for i in range(301)]
