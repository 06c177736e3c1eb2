"""The numerics measurement: old autocast trainer path vs the bf16-weights policy, and mask overlap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from slm.numerics import _overlap, format_numerics, numerics


def test_overlap_is_jaccard_and_share_over_all_batches():
    a = [torch.tensor([True, True, False, False]), torch.tensor([True, False])]
    b = [torch.tensor([True, False, True, False]), torch.tensor([True, False])]
    # Intersection 2 (one per batch), union 4, a selects 3.
    assert _overlap(a, b) == {"jaccard": 0.5, "share_of_selected": pytest.approx(2 / 3)}


def test_numerics_measures_each_path_against_an_independent_forward(base_model, shards, workdir):
    from slm.data.packed import PackedShard
    from slm.dynamics import validation_slice

    result = numerics(base_model, base_model, shards[0], max_sequences=6, batch_size=3, ratio=0.6)
    assert result["n_sequences"] == 6
    # Independent: the old trainer path by hand (autocast, full logits) vs bf16 weights (full logits).
    shard = PackedShard.open(shards[0])
    rows = validation_slice(shard.n_sequences, 6, 0)
    ids = torch.from_numpy(np.stack([np.asarray(shard.tokens[shard.sequence_slice(int(r))], np.int64) for r in rows]))
    fp32 = AutoModelForCausalLM.from_pretrained(base_model)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        old = fp32(input_ids=ids).logits
    with torch.no_grad():
        new = fp32.to(torch.bfloat16)(input_ids=ids).logits

    def ce(logits):
        return F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
        )

    diff = (ce(old) - ce(new)).abs()
    got = result["difference"]["current: old trainer vs policy"]
    assert got["max"] == pytest.approx(float(diff.max()), rel=0.05, abs=2e-3)
    assert got["mean"] == pytest.approx(float(diff.mean()), rel=0.05, abs=2e-4)
    assert got["max"] > 0  # the two paths really differ
    for overlap in result["mask_overlap"].values():
        assert 0 < overlap["jaccard"] <= overlap["share_of_selected"] <= 1
    assert "Jaccard" in format_numerics(result)
