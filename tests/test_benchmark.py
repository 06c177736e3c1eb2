"""The benchmark runs the real scorer and trainer, interleaved and repeated, and reports one row per arm;
its results at several world sizes make one throughput table; `snakemake benchmarks` runs them all."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
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
from slm.cli import main
from slm.config import ConfigError
from slm.schema import config_schema
from smoke import REPO, snakemake

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
        ratios=[1.0, 0.5],
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
    """Against the config schema's benchmark_options (the ranges of benchmarks.throughput), naming the key."""
    files = [str(f) for f in corpus_files]
    with pytest.raises(ConfigError, match=r"'benchmarks\.throughput\.ratios\.0': 1\.0 was expected"):
        benchmark(tokenizer_dir, files, ratios=[0.6])
    with pytest.raises(ConfigError, match=r"'benchmarks\.throughput\.preset': 'gpt-5' is not one of"):
        benchmark(tokenizer_dir, files, preset="gpt-5")
    with pytest.raises(ConfigError, match=r"'benchmarks\.throughput\.precision': 'fp8' is not one of"):
        benchmark(tokenizer_dir, files, precision="fp8")
    with pytest.raises(ConfigError, match="'stepz' was unexpected"):
        benchmark(tokenizer_dir, files, stepz=3)
    with pytest.raises(ConfigError, match=r"'benchmarks\.loss_memory\.tokens': 0 is less than"):
        loss_memory(tokens=0)


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


def test_schema_lists_every_preset():
    assert config_schema()["definitions"]["benchmark_options"]["properties"]["preset"]["enum"] == [None, *PRESETS]


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


# ------------------------------------------------------------------ the table and the workflow target
TABLE_SPEC = {
    "seq_len": 32,
    "model": TINY,
    "batch_size": 4,
    "steps": 4,
    "ratios": [1.0, 0.5],
    "repeats": 2,
    "device": "cpu",
    "peak_tflops_override": 1.0,
}


@pytest.fixture(scope="module")
def world_results(tmp_path_factory, tokenizer_dir, corpus_files) -> dict[int, Path]:
    """`python -m slm benchmark --out` at world sizes 1 (python) and 2 (torchrun, gloo): the rules' commands."""
    out = tmp_path_factory.mktemp("throughput")
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow"), "OMP_NUM_THREADS": "1"}
    args = ["-m", "slm", "benchmark", "--tokenizer", str(tokenizer_dir), "--files", *map(str, corpus_files)]
    launchers = {
        1: [sys.executable],
        2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"],
    }
    paths = {}
    for n, launcher in launchers.items():
        paths[n] = out / f"world-{n}.json"
        proc = subprocess.run(
            [*launcher, *args, "--spec", json.dumps(TABLE_SPEC), "--out", str(paths[n])],
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
    return paths


def test_throughput_table_has_every_arm_at_every_world_size(world_results, tmp_path):
    md, csv = tmp_path / "throughput.md", tmp_path / "throughput.csv"
    results = [str(world_results[n]) for n in (2, 1)]  # any order: rows come by arm, then world size
    main(["benchmark-table", "--results", *results, "--out-md", str(md), "--out-csv", str(csv)])
    table = pd.read_csv(csv)
    columns = ["arm", "ratio", "world_size", "job_world_size"]
    assert [(a, r if r == r else None, n, j) for a, r, n, j in table[columns].itertuples(index=False)] == [
        ("scoring", None, 1, 1),
        ("scoring", None, 1, 2),  # scoring runs on rank 0 alone at every world size
        ("training", 1.0, 1, 1),
        ("training", 1.0, 2, 2),
        ("training", 0.5, 1, 1),
        ("training", 0.5, 2, 2),
    ]
    text = md.read_text()
    assert "| scoring | 1 (in the 2-rank job) |" in text
    for n, path in world_results.items():
        result = json.loads(path.read_text())
        assert result["world_size"] == n
        runs = {(r["arm"], r["ratio"], r["repeat"]): r for r in result["runs"]}
        clm = [runs[("training", 1.0, k)]["tokens_per_second"] for k in range(2)]
        slm = [runs[("training", 0.5, k)]["tokens_per_second"] for k in range(2)]
        row = table[(table.arm == "training") & (table.ratio == 0.5) & (table.world_size == n)].iloc[0]
        # Recomputed from the runs of the JSON: tokens/s per rank, the SLM/CLM ratio of the same repeat.
        assert row.tokens_per_second_median == pytest.approx(statistics.median(slm))
        assert row.tokens_per_second_min == pytest.approx(min(slm))
        assert row.vs_clm_training_max == pytest.approx(max(s / c for s, c in zip(slm, clm)))
        assert row.mfu == pytest.approx(statistics.median(slm) * result["flops_per_token"]["training"] / 1e12)
        assert 0 < row.selection_share_min <= row.selection_share_median <= row.selection_share_max < 1
        assert f"| train SLM (ratio 0.5) | {n} | {statistics.median(slm):,.0f} [{min(slm):,.0f}–" in text
        assert f"{4 // n} per rank at world size {n}" in text
    scoring = table[table.arm == "scoring"]
    assert scoring.selection_share_median.isna().all() and (scoring.vs_clm_training_median > 0).all()
    assert table[table.ratio == 1.0].selection_share_median.isna().all()


def test_throughput_table_refuses_results_of_different_set_ups(world_results, tmp_path):
    def table(*results: Path) -> None:
        out = ["--out-md", str(tmp_path / "t.md"), "--out-csv", str(tmp_path / "t.csv")]
        main(["benchmark-table", "--results", *map(str, results), *out])

    other = json.loads(world_results[2].read_text())
    other["steps"] = 8
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"steps is 4 in .*world-1\.json but 8 in .*other\.json"):
        table(world_results[1], tmp_path / "other.json")
    shutil.copy(world_results[1], tmp_path / "again.json")
    with pytest.raises(ValueError, match=r"repeat a world size \(\[1, 1\]\)"):
        table(world_results[1], tmp_path / "again.json")
    assert not (tmp_path / "t.md").exists()


def _default_workdir(path: Path) -> Path:
    (path / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "config.yaml", path / "config" / "config.yaml")
    return path


def _shell(out: str, needle: str) -> str:
    """The one `Shell command:` line of a dry run that contains ``needle``."""
    (line,) = [line for line in out.splitlines() if line.startswith("Shell command:") and needle in line]
    return line


def test_benchmarks_target_runs_each_measurement_of_the_default_run(tmp_path):
    """`snakemake -n -p benchmarks`: world size 1 runs python, 2 and 4 torchrun with the job's threads split
    over the ranks, on the default run's tokenizer and raw corpus; numerics on its base model, reference
    model and corpus shard-000. The default target runs none of them."""
    workdir = _default_workdir(tmp_path)
    out = snakemake(workdir, "-n", "-p", "--cores", "2", "benchmarks").stdout
    corpus = " ".join(f"results/data/raw/corpus/shard-{i:03d}.jsonl" for i in range(4))
    one = _shell(out, "--out results/benchmarks/throughput/world-1.json")
    assert one.startswith("Shell command: OMP_NUM_THREADS=2 python -m slm benchmark --tokenizer results/data/tokenizer")
    assert f"--files {corpus} --spec" in one and '"steps": 20' in one and "world_sizes" not in one
    two = _shell(out, "--out results/benchmarks/throughput/world-2.json")
    assert two.startswith("Shell command: OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m slm benchmark")
    assert "--nproc-per-node 4 -m slm benchmark" in _shell(out, "--out results/benchmarks/throughput/world-4.json")
    table = _shell(out, "benchmark-table")
    assert "--results " + " ".join(f"results/benchmarks/throughput/world-{n}.json" for n in (1, 2, 4)) in table
    assert "--out-md results/benchmarks/throughput.md --out-csv results/benchmarks/throughput.csv" in table
    numerics = _shell(out, "slm numerics")
    assert "--current results/models/base --reference results/models/reference/final" in numerics
    assert "--shard results/data/packed/corpus/shard-000 " in numerics and "results/benchmarks/numerics.md" in numerics
    assert "--out results/benchmarks/loss_memory.json --out-md results/benchmarks/loss_memory.md" in _shell(
        out, "slm loss-memory"
    )
    default = snakemake(workdir, "-n", "--cores", "2").stdout
    assert "benchmark_throughput" not in default and "results/benchmarks" not in default


def test_benchmarks_batch_must_split_over_every_world_size(tmp_path):
    proc = snakemake(
        _default_workdir(tmp_path),
        "-n",
        "benchmarks",
        "--config",
        "benchmarks__throughput__world_sizes=[1,3]",
        check=False,
    )
    assert proc.returncode != 0
    assert "config key 'benchmarks.throughput.batch_size': 16 sequences do not split evenly over 3 ranks" in (
        proc.stdout + proc.stderr
    )
