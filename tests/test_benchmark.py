"""The benchmark runs the real scorer and trainer and reports one entry per selection ratio."""

from __future__ import annotations

import pytest

from slm.benchmark import benchmark, format_result

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}


def test_benchmark_reports_every_ratio_against_clm(tokenizer_dir, corpus_files):
    result = benchmark(
        tokenizer_dir,
        [str(f) for f in corpus_files],
        seq_len=32,
        model=TINY,
        batch_size=4,
        micro_batch_size=2,
        steps=4,
        ratios=(1.0, 0.5),
        device="cpu",
    )
    assert [t["ratio"] for t in result["training"]] == [1.0, 0.5]
    clm, slm = result["training"]
    assert clm["vs_clm"] == 1.0
    assert slm["vs_clm"] == pytest.approx(slm["tokens_per_second"] / clm["tokens_per_second"])
    assert result["scoring"]["tokens_per_second"] > 0 and "vs_cpu" not in result["scoring"]
    # Both runs really trained the same initial model on the same tokens: different losses at the end.
    assert clm["final_loss_all"] != slm["final_loss_all"]
    table = format_result(result)
    assert "train SLM (ratio 0.5)" in table and "scoring" in table


def test_benchmark_needs_the_clm_baseline_first(tokenizer_dir, corpus_files):
    with pytest.raises(ValueError, match="'ratios' must start with 1.0"):
        benchmark(tokenizer_dir, [str(f) for f in corpus_files], ratios=(0.6,))
