"""Throughput benchmark of the pipeline's two hot loops: reference scoring and the trainer.

Packs text files with a tokenizer at a chosen sequence length, initialises a Llama of a chosen size,
scores the packed tokens with it, then trains it with the real trainer once per selection ratio
(1.0 = CLM first, the baseline every other ratio is compared with). Prints tokens/s, peak memory and
the ratio to CLM; with ``compare_cpu`` it also scores on the CPU and reports how far the device's
per-token losses are from the CPU's.

    python -m slm benchmark --tokenizer results/data/tokenizer --files results/data/raw/corpus/*.jsonl \
        --spec '{"seq_len": 256, "steps": 20, "ratios": [1.0, 0.6]}'
"""

from __future__ import annotations

import logging
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from slm.data.packed import pack_documents
from slm.data.sources import iter_files
from slm.model import init_model, resolve_device
from slm.score import score_shard
from slm.train import TrainConfig, Trainer

log = logging.getLogger(__name__)

DEFAULT_MODEL = {"hidden_size": 192, "num_layers": 4, "num_heads": 4, "intermediate_size": 512}


def _peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory since the last reset, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _steady_tokens_per_second(metrics: list[dict]) -> float:
    """Throughput over the logged windows after the first (which holds warm-up and allocation)."""
    windows = [m["tokens_per_second"] for m in metrics[1:]] or [m["tokens_per_second"] for m in metrics]
    # Equal-token windows: the overall rate is the harmonic mean of the window rates.
    return len(windows) / sum(1.0 / w for w in windows)


def benchmark(
    tokenizer_dir: str | Path,
    files: list[str],
    *,
    seq_len: int = 256,
    model: dict | None = None,
    batch_size: int = 16,
    micro_batch_size: int | None = None,
    steps: int = 20,
    ratios: tuple[float, ...] = (1.0, 0.6),
    score_batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    compare_cpu: bool = False,
    seed: int = 0,
) -> dict:
    if not ratios or ratios[0] != 1.0:
        raise ValueError(f"benchmark option 'ratios' must start with 1.0 (the CLM baseline), got {ratios}")
    if steps < 2:
        raise ValueError(f"benchmark option 'steps' must be at least 2, got {steps}")
    dev = resolve_device(device)
    model = {**DEFAULT_MODEL, **(model or {})}
    result = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "precision": precision,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "micro_batch_size": micro_batch_size or batch_size,
        "steps": steps,
        "model": model,
    }
    with tempfile.TemporaryDirectory(prefix="slm-benchmark-") as tmp:
        work = Path(tmp)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        index = pack_documents(iter_files(files), tokenizer, work / "shard", seq_len=seq_len)
        result["corpus_tokens"] = index["n_tokens"]
        result["parameters"] = init_model(
            tokenizer_dir, work / "model", max_position_embeddings=seq_len, seed=seed, **model
        )

        _reset_peak(dev)
        meta = score_shard(
            work / "model",
            work / "shard",
            work / "scores",
            batch_size=score_batch_size,
            device=str(dev),
            precision=precision,
        )
        result["scoring"] = {"tokens_per_second": meta["tokens_per_second"], "peak_memory_mb": _peak_memory_mb(dev)}
        if compare_cpu and dev.type != "cpu":
            cpu = score_shard(
                work / "model",
                work / "shard",
                work / "scores-cpu",
                batch_size=score_batch_size,
                device="cpu",
                precision="fp32",
            )
            on_device = np.load(work / "scores" / "scores.npy").astype(np.float32)
            on_cpu = np.load(work / "scores-cpu" / "scores.npy").astype(np.float32)
            diff = np.abs(on_device - on_cpu)[~np.isnan(on_cpu)]
            result["scoring"]["vs_cpu"] = {
                "max_abs_diff": float(diff.max()),
                "mean_abs_diff": float(diff.mean()),
                "cpu_tokens_per_second": cpu["tokens_per_second"],
            }

        result["training"] = []
        log_every = max(1, steps // 5)
        for ratio in ratios:
            run = work / f"ratio-{ratio}"
            cfg = TrainConfig(
                init_model=str(work / "model"),
                data=[str(work / "shard")],
                out_dir=str(run / "model"),
                state_dir=str(run / "state"),
                scores=[str(work / "scores")] if ratio < 1.0 else None,
                reference_model=str(work / "model") if ratio < 1.0 else None,
                ratio=ratio,
                lr=1e-4,
                batch_size=batch_size,
                micro_batch_size=micro_batch_size,
                max_tokens=steps * batch_size * seq_len,
                save_every=steps + 1,
                log_every=log_every,
                seed=seed,
                device=str(dev),
                precision=precision,
            )
            _reset_peak(dev)
            start = time.perf_counter()
            trainer = Trainer(cfg)
            trainer.run()
            tps = _steady_tokens_per_second(trainer.metrics)
            result["training"].append(
                {
                    "ratio": ratio,
                    "tokens_per_second": tps,
                    "peak_memory_mb": _peak_memory_mb(dev),
                    "wall_s": time.perf_counter() - start,
                    "final_loss_all": trainer.metrics[-1]["loss_all"],
                    "vs_clm": tps / result["training"][0]["tokens_per_second"] if result["training"] else 1.0,
                }
            )
    return result


def format_result(result: dict) -> str:
    """The benchmark's figures as a Markdown table with a header line naming the set-up."""
    lines = [
        f"device {result['device_name']} ({result['device']}), {result['precision']}, "
        f"{result['parameters'] / 1e6:.1f}M parameters, {result['steps']} steps of {result['batch_size']} x "
        f"{result['seq_len']} tokens (micro-batch {result['micro_batch_size']})",
        "",
        "| stage | tokens/s | vs CLM | peak memory (MiB) |",
        "|---|---|---|---|",
        f"| scoring | {result['scoring']['tokens_per_second']:,.0f} | | {result['scoring']['peak_memory_mb']:,.0f} |",
    ]
    for t in result["training"]:
        name = "train CLM (ratio 1.0)" if t["ratio"] == 1.0 else f"train SLM (ratio {t['ratio']})"
        lines.append(f"| {name} | {t['tokens_per_second']:,.0f} | {t['vs_clm']:.3f} | {t['peak_memory_mb']:,.0f} |")
    if "vs_cpu" in result["scoring"]:
        v = result["scoring"]["vs_cpu"]
        lines += [
            "",
            f"per-token losses on {result['device']} vs cpu fp32: max |diff| {v['max_abs_diff']:.2e}, "
            f"mean |diff| {v['mean_abs_diff']:.2e} (cpu scoring {v['cpu_tokens_per_second']:,.0f} tokens/s)",
        ]
    return "\n".join(lines)
