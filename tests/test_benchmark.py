"""The benchmark runs the real scorer and trainer, interleaved and repeated, and reports one row per arm."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig

from slm.benchmark import (
    PRESETS,
    benchmark,
    flops_per_token,
    format_loss_memory,
    format_result,
    loss_memory,
    peak_tflops,
)

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}


def test_benchmark_reports_every_arm_against_clm(tokenizer_dir, corpus_files):
    result = benchmark(
        tokenizer_dir,
        [str(f) for f in corpus_files],
        seq_len=32,
        model=TINY,
        batch_size=4,
        micro_batch_size=2,
        steps=4,
        ratios=(1.0, 0.5),
        repeats=2,
        device="cpu",
        peak_tflops_override=1.0,
    )
    runs = result["runs"]
    # Interleaved: scoring, CLM, SLM, then the same again.
    assert [(r["arm"], r["ratio"], r["repeat"]) for r in runs] == [
        ("scoring", None, 0),
        ("training", 1.0, 0),
        ("training", 0.5, 0),
        ("scoring", None, 1),
        ("training", 1.0, 1),
        ("training", 0.5, 1),
    ]
    scoring, clm, slm = result["summary"]
    assert {row["world_size"] for row in result["summary"]} == {1}
    assert clm["vs_clm_training"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    pairs = [s["tokens_per_second"] / c["tokens_per_second"] for c, s in zip(runs[1::3], runs[2::3])]
    assert slm["vs_clm_training"]["median"] == pytest.approx(sum(pairs) / 2)
    assert scoring["vs_clm_training"]["min"] == pytest.approx(
        min(s["tokens_per_second"] / c["tokens_per_second"] for s, c in zip(runs[0::3], runs[1::3]))
    )
    # MFU of the median against the given peak (1 TFLOPS), training at 6N + 12·L·h·s per token.
    flops = result["flops_per_token"]
    assert slm["mfu"] == pytest.approx(slm["tokens_per_second"]["median"] * flops["training"] / 1e12)
    assert scoring["mfu"] == pytest.approx(scoring["tokens_per_second"]["median"] * flops["forward"] / 1e12)
    assert clm["selection_share"] is None and 0 < slm["selection_share"]["median"] < 1
    # Both runs really trained the same initial model on the same tokens: different losses at the end.
    assert runs[1]["final_loss_all"] != runs[2]["final_loss_all"]
    table = format_result(result)
    assert "train SLM (ratio 0.5)" in table and "| scoring | 1 |" in table and "world size" in table


def test_benchmark_options_are_checked_before_work(tokenizer_dir, corpus_files):
    files = [str(f) for f in corpus_files]
    with pytest.raises(ValueError, match="'ratios' must start with 1.0"):
        benchmark(tokenizer_dir, files, ratios=(0.6,))
    with pytest.raises(ValueError, match="'preset' must be one of"):
        benchmark(tokenizer_dir, files, preset="gpt-5")
    with pytest.raises(ValueError, match="precision must be one of"):
        benchmark(tokenizer_dir, files, precision="fp8")


def test_flops_per_token_counts_every_matmul_parameter():
    h, inter, layers, heads, kv, vocab, seq = 64, 160, 3, 8, 2, 500, 128
    head_dim = h // heads
    per_layer = 2 * h * h + 2 * h * kv * head_dim + 3 * h * inter  # q, o; k, v; gate, up, down
    for tie in (True, False):
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=h,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            tie_word_embeddings=tie,
        )
        flops = flops_per_token(config, seq)
        # The output projection runs whether or not it shares the embedding's weights; norms are tiny.
        n = layers * per_layer + vocab * h
        assert flops["counted_parameters"] - n == layers * 2 * h + h  # the RMSNorm weights
        assert flops["training"] == 6 * flops["counted_parameters"] + 12 * layers * h * seq
        assert flops["forward"] == pytest.approx(flops["training"] / 3)


def test_tinyllama_preset_has_the_published_shape_and_flop_count():
    shape = PRESETS["tinyllama-1.1b"]
    m = shape["model"]
    config = LlamaConfig(
        vocab_size=m["vocab_size"],
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["num_layers"],
        num_attention_heads=m["num_heads"],
        num_key_value_heads=m["num_kv_heads"],
        tie_word_embeddings=m["tie_word_embeddings"],
    )
    flops = flops_per_token(config, shape["seq_len"])
    # 1.1B parameters with a 65.5M-parameter embedding; about 7.3 GFLOP per token at 2048.
    assert flops["counted_parameters"] + 32000 * 2048 == pytest.approx(1.1e9, rel=0.01)
    assert flops["training"] == pytest.approx(7.3e9, rel=0.01)


def test_peak_flops_by_device_name():
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("cpu") is None


def test_loss_memory_runs_both_paths_and_they_agree():
    result = loss_memory(vocab_size=300, hidden_size=16, tokens=64, chunk_tokens=16, precision="fp32")
    assert set(result["paths"]) == {"plain", "chunked"}
    assert all(arm["peak_added_mb"] >= 0 for arm in result["paths"].values())
    assert result["max_abs_loss_diff"] < 1e-5
    assert result["max_rel_grad_hidden_diff"] < 1e-5 and result["max_rel_grad_weight_diff"] < 1e-5
    assert "plain / chunked peak" in format_loss_memory(result)
