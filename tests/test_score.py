import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import SEQ_LEN
from slm.data.packed import PackedShard
from slm.score import ScoreMismatchError, open_scores, score_shard


@pytest.fixture(scope="module")
def scored(workdir, base_model, shards):
    out = workdir / "scores-0"
    score_shard(base_model, shards[0], out, batch_size=3, device="cpu")
    return out


def _reference_losses(model, ids: list[int]) -> np.ndarray:
    """Independent computation: log-softmax of a plain transformers forward pass, gathered."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    return np.array([-logp[t - 1, ids[t]].item() for t in range(1, len(ids))])


def test_stored_score_is_the_reference_loss_inside_its_training_sequence(scored, base_model, shard):
    scores = np.load(scored / "scores.npy")
    assert scores.dtype == np.float16 and scores.shape == shard.tokens.shape
    model = AutoModelForCausalLM.from_pretrained(base_model)
    for row in (0, 3, shard.n_sequences - 1):
        sl = shard.sequence_slice(row)
        ids = shard.tokens[sl].tolist()
        stored = scores[sl]
        assert np.isnan(stored[0])
        np.testing.assert_allclose(stored[1:], _reference_losses(model, ids), rtol=2e-3, atol=2e-3)
    # The same token scored in another context (a window shifted by half a sequence) has another
    # loss: the alignment to the packed sequences matters.
    start = SEQ_LEN // 2
    shifted = _reference_losses(model, shard.tokens[start : start + SEQ_LEN].tolist())
    assert not np.allclose(
        shifted[SEQ_LEN // 2 :], scores[SEQ_LEN + 1 : SEQ_LEN + 1 + len(shifted) - SEQ_LEN // 2], atol=1e-2
    )


def test_score_metadata_identifies_shard_and_model(scored, shard, base_model):
    meta = json.loads((scored / "meta.json").read_text())
    assert meta["n_tokens"] == shard.index["n_tokens"]
    assert meta["tokens_sha256"] == shard.index["tokens_sha256"]
    assert meta["reference_fingerprint"].startswith("sha256:")
    assert "NaN at every sequence start" in meta["alignment"]
    assert open_scores(scored, shard, base_model).shape == shard.tokens.shape


def test_a_score_shard_for_other_tokens_is_refused(scored, shards):
    other = PackedShard.open(shards[1])
    with pytest.raises(ScoreMismatchError, match=r"scores-0 does not match token shard .*packed-1"):
        open_scores(scored, other)


def test_a_score_shard_from_another_reference_model_is_refused(scored, shard, workdir, tokenizer_dir):
    from slm.model import init_model

    other = workdir / "other-model"
    init_model(
        tokenizer_dir,
        other,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        seed=7,
    )
    with pytest.raises(ScoreMismatchError, match="another reference model"):
        open_scores(scored, shard, other)


def test_bf16_scores_are_the_losses_of_the_bf16_weights(scored, workdir, base_model, shard, shards):
    """precision bf16: the scorer computes with the weights cast to bf16 (the policy every stage shares)
    and takes cross-entropy from fp32 logits."""
    out = workdir / "scores-bf16"
    meta = score_shard(base_model, shards[0], out, batch_size=4, device="cpu", precision="bf16")
    assert meta["precision"] == "bf16"
    scores = np.load(out / "scores.npy").astype(np.float32)
    model = AutoModelForCausalLM.from_pretrained(base_model).to(torch.bfloat16)
    fp32_scores = np.load(scored / "scores.npy").astype(np.float32)
    for row in (0, shard.n_sequences - 1):
        sl = shard.sequence_slice(row)
        ids = torch.from_numpy(np.asarray(shard.tokens[sl], dtype=np.int64))[None]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        want = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none").numpy()
        np.testing.assert_allclose(scores[sl][1:], want, rtol=1e-2, atol=1e-2)
    # And it is not the fp32 path: bf16 weights move the losses.
    assert np.nanmax(np.abs(scores - fp32_scores)) > 1e-3
