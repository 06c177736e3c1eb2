"""The one per-token loss (chunked, never the whole batch's logits) and the precision policy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from slm.model import compute_dtype, fsdp_mixed_precision, linear_cross_entropy, load_for_inference, per_token_losses

VOCAB = 300


def _llama(tie: bool, dtype: torch.dtype = torch.float32, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    return LlamaForCausalLM(config).to(dtype)


def _plain_losses(model, ids: torch.Tensor) -> torch.Tensor:
    """The path the chunked loss replaces: full logits, cast to fp32, cross-entropy per token."""
    logits = model(input_ids=ids).logits
    ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, VOCAB), ids[:, 1:].reshape(-1), reduction="none")
    return torch.cat([ce.new_full((len(ids), 1), float("nan")), ce.view(len(ids), -1)], dim=1)


def _weighted_grads(model, losses: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    (losses.nan_to_num(0.0) * weights).sum().backward()
    return {name: p.grad.float().clone() for name, p in model.named_parameters()}


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (3, 17), generator=gen)
    # Arbitrary per-token upstream gradients: selection weights (zeros included) over a normaliser.
    weights = torch.rand(3, 17, generator=gen) * (torch.rand(3, 17, generator=gen) > 0.3) / 11.0
    return ids, weights


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("chunk_tokens", [1, 7, 48, 1000])
def test_chunked_loss_equals_the_full_logits_path_in_values_and_gradients(tie, chunk_tokens, batch):
    ids, weights = batch
    model = _llama(tie)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie
    chunked = per_token_losses(model, ids, chunk_tokens=chunk_tokens)
    plain = _plain_losses(model, ids)
    assert chunked.dtype == torch.float32 and chunked.shape == ids.shape
    assert chunked[:, 0].isnan().all() and not chunked[:, 1:].isnan().any()
    torch.testing.assert_close(chunked[:, 1:], plain[:, 1:], rtol=1e-5, atol=1e-5)
    got = _weighted_grads(model, chunked, weights)
    want = _weighted_grads(model, plain, weights)
    assert got.keys() == want.keys() and ("lm_head.weight" in got) == (not tie)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)


def test_gradients_of_hidden_states_and_head_match_autograd_in_double():
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(2, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    ids = torch.randint(0, 11, (2, 6), generator=gen)
    upstream = torch.randn(2, 6, dtype=torch.float64, generator=gen)

    def chunked(h, w):
        return (linear_cross_entropy(h, w, ids, chunk_tokens=4)[:, 1:] * upstream[:, 1:]).sum()

    # The logits of this path are fp32 by design; compare against plain autograd on the same fp32 logits.
    def plain(h, w):
        logits = (h[:, :-1] @ w.T).float()
        ce = F.cross_entropy(logits.reshape(-1, 11), ids[:, 1:].reshape(-1), reduction="none").view(2, 5)
        return (ce.double() * upstream[:, 1:]).sum()

    got = torch.autograd.grad(chunked(hidden, weight), (hidden, weight))
    want = torch.autograd.grad(plain(hidden, weight), (hidden, weight))
    for g, w in zip(got, want):
        assert g.dtype == torch.float64
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tie", [True, False])
def test_bf16_parameters_give_the_bf16_full_logits_path_within_bf16_tolerance(tie, batch):
    ids, weights = batch
    model = _llama(tie, torch.bfloat16)
    chunked = per_token_losses(model, ids, chunk_tokens=5)
    plain = _plain_losses(model, ids)
    assert chunked.dtype == torch.float32
    # Same bf16 hidden states and weights; only the blocking of the bf16 head matmul differs.
    torch.testing.assert_close(chunked[:, 1:], plain[:, 1:], rtol=2e-2, atol=2e-2)
    got = _weighted_grads(model, chunked, weights)
    want = _weighted_grads(model, plain, weights)
    for name in want:
        scale = want[name].abs().max().clamp(min=1e-6)
        assert (got[name] - want[name]).abs().max() / scale < 3e-2, name


def test_a_head_with_a_bias_is_refused(batch):
    ids, _ = batch
    model = _llama(False)
    model.lm_head = torch.nn.Linear(32, VOCAB, bias=True)
    with pytest.raises(ValueError, match="bias-free linear output layer"):
        per_token_losses(model, ids)


def test_precision_policy_names_its_dtypes_in_one_place(base_model):
    assert compute_dtype("fp32") is torch.float32 and compute_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        compute_dtype("fp16")
    policy = fsdp_mixed_precision("bf16")
    assert policy.param_dtype is torch.bfloat16 and policy.reduce_dtype is torch.float32
    model, _ = load_for_inference(base_model, "cpu", "bf16")
    assert not model.training and {p.dtype for p in model.parameters()} == {torch.bfloat16}
