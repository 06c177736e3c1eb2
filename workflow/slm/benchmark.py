"""Benchmarks of the pipeline's hot loops (reference scoring, the trainer) and of the per-token loss.

:func:`benchmark` packs text files with a tokenizer at a chosen sequence length, initialises a Llama of
a chosen size (or a preset shape), then runs its arms ``repeats`` times, interleaved: scoring the
packed tokens, and training with the real trainer once per selection ratio (1.0 = CLM first, the
baseline every other ratio is compared with). It reports, per arm, tokens/s per device (median and
range over the repeats), MFU against the device's dense bf16 peak, the ratio to CLM (from the pairs of
the same repeat), scoring/training, the share of the step spent selecting tokens, and peak memory.
Warm-up (the first logged window of each training run) is excluded. With ``compare_cpu`` it also
scores on the CPU and reports how far the device's per-token losses are from the CPU's.

    python -m slm benchmark --tokenizer results/data/tokenizer --files results/data/raw/corpus/*.jsonl \\
        --spec '{"seq_len": 256, "steps": 20, "ratios": [1.0, 0.6]}'

Under ``torchrun --nproc-per-node N -m slm benchmark ...`` the trainer runs on N ranks (gloo on the
CPU, nccl on GPUs), and the table's tokens/s are per rank. :func:`throughput_table` puts the results of
one set-up at several world sizes into one table (``python -m slm benchmark-table``). ``snakemake
benchmarks`` runs the benchmark at each world size of the config's ``benchmarks.throughput``, then that
table, :func:`loss_memory` and :mod:`slm.numerics`.

:func:`loss_memory` measures the peak memory of one per-token loss computation (forward and backward
at a given vocabulary), the plain full-logits path against :func:`slm.model.linear_cross_entropy`,
each in a fresh process, and how far their values and gradients are apart::

    python -m slm loss-memory --spec '{"vocab_size": 32000, "hidden_size": 2048, "tokens": 8192}'
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from slm.data.packed import pack_documents
from slm.data.sources import iter_files
from slm.distributed import World, barrier, process_group, rank_device
from slm.io import atomic_write_text, read_json
from slm.launch import split_batch
from slm.model import compute_dtype, init_model, linear_cross_entropy, resolve_device
from slm.schema import check_section
from slm.score import score_shard
from slm.train import TrainConfig, Trainer

log = logging.getLogger(__name__)

# The options of benchmark and loss_memory: sections of the config schema, the one place of their
# defaults and ranges (benchmarks.throughput and benchmarks.loss_memory in the config).
BENCHMARK_OPTIONS = "/definitions/benchmark_options"
LOSS_MEMORY_OPTIONS = "/definitions/loss_memory_options"
DEFAULT_MODEL = {"hidden_size": 192, "num_layers": 4, "num_heads": 4, "intermediate_size": 512}
# Shapes to benchmark at (random init); a spec's own seq_len and model keys override the preset's. The
# schema's benchmark_options.preset lists their names.
PRESETS = {
    "tinyllama-1.1b": {
        "seq_len": 2048,
        "model": {
            "hidden_size": 2048,
            "num_layers": 22,
            "num_heads": 32,
            "num_kv_heads": 4,
            "intermediate_size": 5632,
            "vocab_size": 32000,
            "tie_word_embeddings": False,
        },
    },
}
# Dense (no sparsity) bf16 tensor-core peaks in TFLOPS, matched in this order against the device
# name; the vendors' data sheets, as tabulated by pytorch/torchtitan.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("MI300X", 1300.0),
    ("MI325X", 1300.0),
)


def peak_tflops(device_name: str) -> float | None:
    """The device's dense bf16 peak from :data:`PEAK_BF16_TFLOPS`, or None when it is not listed."""
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in device_name), None)


def flops_per_token(config, seq_len: int) -> dict[str, float]:
    """Model FLOPs per token by torchtitan's count: 6N + 12·L·h·s for a training step (forward and
    backward), a third of it for a forward pass. N counts every parameter but the input embedding,
    and the output projection also when it shares the embedding's weights (its matmul runs either way)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    if model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        n += model.get_output_embeddings().weight.numel()
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_len
    return {"counted_parameters": n, "training": 6 * n + attention, "forward": (6 * n + attention) / 3}


def _peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory since the last reset, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _steady(metrics: list[dict]) -> tuple[float, float | None]:
    """Throughput (tokens/s over all ranks) and the selection's share of the step time, over the logged
    windows after the first (which holds warm-up and allocation)."""
    windows = metrics[1:] or metrics
    # Equal-token windows: a window's time is proportional to 1 / its rate.
    times = [1.0 / m["tokens_per_second"] for m in windows]
    shares = [m.get("selection_share") for m in windows]
    share = sum(s * t for s, t in zip(shares, times)) / sum(times) if None not in shares else None
    return len(times) / sum(times), share


def _shared_tempdir(world: World) -> tuple[tempfile.TemporaryDirectory | None, Path]:
    """A temporary directory made by rank 0 (None on the other ranks) and its path, which every rank learns."""
    tmp = tempfile.TemporaryDirectory(prefix="slm-benchmark-") if world.is_main else None
    path = [tmp.name if tmp else None]
    if world.size > 1:
        dist.broadcast_object_list(path, src=0)
    return tmp, Path(path[0])


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def benchmark(tokenizer_dir: str | Path, files: list[str], **options) -> dict | None:
    """Run every arm ``repeats`` times, interleaved; return the set-up, one row per run and a summary.

    ``options`` are those of the config schema's ``benchmark_options`` (``benchmarks.throughput`` in
    config/README.md): checked against it, unset ones at its defaults. ``preset`` names a shape in
    :data:`PRESETS`; ``model`` keys (those of :func:`slm.model.init_model`) and ``seq_len`` override it.
    ``peak_tflops_override`` is the peak to compute MFU against when the device is not in
    :data:`PEAK_BF16_TFLOPS` (e.g. a CPU).

    Under torchrun the training arms run on every rank (``batch_size`` is the global batch) and rank 0
    alone packs, initialises and scores (scoring is one job per shard in the workflow); the result is
    returned on rank 0, None on the other ranks.
    """
    o = check_section(options, BENCHMARK_OPTIONS, "benchmarks.throughput", closed=True)
    preset, steps, batch_size, micro_batch_size, precision, seed = (
        o[k] for k in ("preset", "steps", "batch_size", "micro_batch_size", "precision", "seed")
    )
    shape = PRESETS.get(preset, {"seq_len": 256, "model": DEFAULT_MODEL})
    seq_len = o["seq_len"] or shape["seq_len"]
    model = {**shape["model"], **(o["model"] or {})}
    world = World.from_env()
    dev = rank_device(resolve_device(o["device"]), world)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    result = {
        "device": str(dev),
        "device_name": device_name,
        "world_size": world.size,
        "precision": precision,
        "preset": preset,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "micro_batch_size": split_batch(batch_size, micro_batch_size, world.size)[1],
        "steps": steps,
        "repeats": o["repeats"],
        "ratios": o["ratios"],
        "model": model,
        "peak_tflops": o["peak_tflops_override"] or peak_tflops(device_name),
    }
    log_every = max(1, steps // 5)
    with process_group(dev, world):
        tmp, work = _shared_tempdir(world)
        if world.is_main:  # the data, the model and (below) scoring: one process
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            index = pack_documents(iter_files(files), tokenizer, work / "shard", seq_len=seq_len)
            result["corpus_tokens"] = index["n_tokens"]
            result["parameters"] = init_model(
                tokenizer_dir, work / "model", max_position_embeddings=seq_len, seed=seed, **model
            )
            result["flops_per_token"] = flops_per_token(AutoConfig.from_pretrained(work / "model"), seq_len)
        runs = result["runs"] = []
        for repeat in range(o["repeats"]):
            if world.is_main:
                _reset_peak(dev)
                meta = score_shard(
                    work / "model",
                    work / "shard",
                    work / f"scores-{repeat}",
                    batch_size=o["score_batch_size"],
                    device=str(dev),
                    precision=precision,
                )
                runs.append(
                    {
                        "arm": "scoring",
                        "ratio": None,
                        "repeat": repeat,
                        "world_size": 1,
                        "tokens_per_second": meta["tokens_per_second"],
                        "peak_memory_mb": _peak_memory_mb(dev),
                    }
                )
            barrier(world)
            for ratio in o["ratios"]:
                run = work / f"ratio-{ratio}-{repeat}"
                cfg = TrainConfig(
                    init_model=str(work / "model"),
                    data=[str(work / "shard")],
                    out_dir=str(run / "model"),
                    state_dir=str(run / "state"),
                    scores=[str(work / "scores-0")] if ratio < 1.0 else None,
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
                tps, share = _steady(trainer.metrics)
                runs.append(
                    {
                        "arm": "training",
                        "ratio": ratio,
                        "repeat": repeat,
                        "world_size": world.size,
                        "tokens_per_second": tps / world.size,
                        "peak_memory_mb": _peak_memory_mb(dev),
                        "wall_s": time.perf_counter() - start,
                        "final_loss_all": trainer.metrics[-1]["loss_all"],
                        **({"selection_share": share} if share is not None else {}),
                    }
                )
        if o["compare_cpu"] and dev.type != "cpu" and world.is_main:
            result["vs_cpu"] = _compare_with_cpu(work, o["score_batch_size"])
        barrier(world)
        if not world.is_main:
            return None
        tmp.cleanup()
    result["summary"] = summarise(result)
    return result


def _compare_with_cpu(work: Path, score_batch_size: int) -> dict:
    cpu = score_shard(work / "model", work / "shard", work / "scores-cpu", batch_size=score_batch_size, device="cpu")
    on_device = np.load(work / "scores-0" / "scores.npy").astype(np.float32)
    on_cpu = np.load(work / "scores-cpu" / "scores.npy").astype(np.float32)
    diff = np.abs(on_device - on_cpu)[~np.isnan(on_cpu)]
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "cpu_tokens_per_second": cpu["tokens_per_second"],
    }


def summarise(result: dict) -> list[dict]:
    """One row per arm: tokens/s per device and its spread over the repeats, MFU of the median, the ratio
    to CLM (training) or to CLM training (scoring, on one device) from runs of the same repeat, selection
    share and the largest peak memory."""
    runs, peak = result["runs"], result["peak_tflops"]
    flops = result["flops_per_token"]
    clm = {r["repeat"]: r["tokens_per_second"] for r in runs if r["arm"] == "training" and r["ratio"] == 1.0}
    rows = []
    for arm, ratio in dict.fromkeys((r["arm"], r["ratio"]) for r in runs):
        same = [r for r in runs if r["arm"] == arm and r["ratio"] == ratio]
        tps = _spread([r["tokens_per_second"] for r in same])
        per_token = flops["forward" if arm == "scoring" else "training"]
        shares = [r["selection_share"] for r in same if "selection_share" in r]
        rows.append(
            {
                "arm": arm,
                "ratio": ratio,
                "world_size": same[0]["world_size"],
                "tokens_per_second": tps,
                "mfu": tps["median"] * per_token / (peak * 1e12) if peak else None,
                "vs_clm_training": _spread([r["tokens_per_second"] / clm[r["repeat"]] for r in same]),
                "selection_share": _spread(shares) if shares and ratio != 1.0 else None,
                "peak_memory_mb": max(r["peak_memory_mb"] for r in same),
            }
        )
    return rows


def _fmt_spread(s: dict, fmt: str) -> str:
    return f"{s['median']:{fmt}} [{s['min']:{fmt}}–{s['max']:{fmt}}]"


SUMMARY_COLUMNS = (
    "arm",
    "world size",
    "tokens/s per device",
    "MFU",
    "vs CLM training",
    "selection share of step",
    "peak memory (MiB)",
)
# The keys of a result that make two results (at different world sizes) one comparison.
SETUP_KEYS = ("device_name", "precision", "preset", "seq_len", "model", "batch_size", "steps", "repeats", "ratios")


def arm_name(row: dict) -> str:
    """A summary row's arm as shown: ``scoring``, ``train CLM (ratio 1.0)``, ``train SLM (ratio 0.6)``."""
    if row["arm"] == "scoring":
        return "scoring"
    return "train CLM (ratio 1.0)" if row["ratio"] == 1.0 else f"train SLM (ratio {row['ratio']})"


def _summary_table(rows: list[dict]) -> list[str]:
    """Summary rows as Markdown table lines (:data:`SUMMARY_COLUMNS`)."""
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    for row in rows:
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
        share = _fmt_spread(row["selection_share"], ".2%") if row["selection_share"] else "—"
        job = row.get("job_world_size", row["world_size"])
        ranks = f"{row['world_size']}" + (f" (in the {job}-rank job)" if job != row["world_size"] else "")
        lines.append(
            f"| {arm_name(row)} | {ranks} | {_fmt_spread(row['tokens_per_second'], ',.0f')} | {mfu} "
            f"| {_fmt_spread(row['vs_clm_training'], '.3f')} | {share} | {row['peak_memory_mb']:,.0f} |"
        )
    return lines


def _setup_lines(results: list[dict]) -> list[str]:
    """Header lines naming the set-up shared by ``results`` (one per world size, in that order)."""
    first = results[0]
    peak, flops = first["peak_tflops"], first["flops_per_token"]
    micro = ", ".join(f"{r['micro_batch_size']} per rank at world size {r['world_size']}" for r in results)
    return [
        f"device {first['device_name']} ({first['device']}), {first['precision']}, "
        f"{first['parameters'] / 1e6:.1f}M parameters, {first['steps']} steps of {first['batch_size']} x "
        f"{first['seq_len']} tokens (micro-batch {micro}), "
        f"{first['repeats']} interleaved repeats: median [min–max]",
        f"model FLOPs per token (6N + 12·L·h·s, N = {flops['counted_parameters'] / 1e6:.1f}M): "
        f"{flops['training'] / 1e9:.3f} G training, {flops['forward'] / 1e9:.3f} G forward; "
        + (f"MFU against {peak:g} TFLOPS dense bf16" if peak else "MFU n/a (no known peak for this device)"),
    ]


def format_result(result: dict) -> str:
    """The benchmark's summary as a Markdown table with header lines naming the set-up."""
    lines = [*_setup_lines([result]), "", *_summary_table(result["summary"])]
    if "vs_cpu" in result:
        v = result["vs_cpu"]
        lines += [
            "",
            f"per-token losses on {result['device']} vs cpu fp32: max |diff| {v['max_abs_diff']:.2e}, "
            f"mean |diff| {v['mean_abs_diff']:.2e} (cpu scoring {v['cpu_tokens_per_second']:,.0f} tokens/s)",
        ]
    return "\n".join(lines)


def _flat_spread(prefix: str, spread: dict | None) -> dict:
    return {f"{prefix}_{k}": (spread or {}).get(k) for k in ("median", "min", "max")}


def throughput_table(results: list[str | Path], out_md: str | Path, out_csv: str | Path) -> pd.DataFrame:
    """One table of the benchmark results of one set-up at several world sizes (``python -m slm benchmark
    --out`` JSONs): per arm, then world size, tokens/s per device (median [min–max] over the repeats), MFU
    where the device's peak is known, the ratio to CLM training of the same repeat (SLM/CLM, and
    scoring/training), the selection's share of the step and peak memory. Writes the Markdown table under
    the set-up's header lines and the CSV (spreads as ``_median``, ``_min``, ``_max`` columns); returns the
    CSV's frame. Results of different set-ups (keys :data:`SETUP_KEYS`) or of one world size twice are
    refused, naming the files."""
    loaded = sorted(((read_json(p, "benchmark result"), str(p)) for p in results), key=lambda rp: rp[0]["world_size"])
    (first, first_path), sizes = loaded[0], [r["world_size"] for r, _ in loaded]
    for result, path in loaded[1:]:
        for key in SETUP_KEYS:
            if result.get(key) != first.get(key):
                raise ValueError(
                    f"benchmark results of different set-ups: {key} is {first.get(key)!r} in {first_path} "
                    f"but {result.get(key)!r} in {path}"
                )
    if len(set(sizes)) < len(sizes):
        raise ValueError(f"benchmark results repeat a world size ({sizes}): {[p for _, p in loaded]}")
    order = [(row["arm"], row["ratio"]) for row in first["summary"]]
    rows = sorted(
        ({**row, "job_world_size": result["world_size"]} for result, _ in loaded for row in result["summary"]),
        key=lambda row: (order.index((row["arm"], row["ratio"])), row["job_world_size"]),
    )
    md = [
        *_setup_lines([r for r, _ in loaded]),
        "scoring runs on one device (rank 0) at every world size, its row marked with the job's ranks; "
        "training rows are per rank",
        "",
        *_summary_table(rows),
    ]
    atomic_write_text(out_md, "\n".join(md) + "\n")
    data = pd.DataFrame.from_records(
        [
            {
                "arm": row["arm"],
                "ratio": row["ratio"],
                "world_size": row["world_size"],
                "job_world_size": row["job_world_size"],
                **_flat_spread("tokens_per_second", row["tokens_per_second"]),
                "mfu": row["mfu"],
                **_flat_spread("vs_clm_training", row["vs_clm_training"]),
                **_flat_spread("selection_share", row["selection_share"]),
                "peak_memory_mb": row["peak_memory_mb"],
            }
            for row in rows
        ]
    )
    atomic_write_text(out_csv, data.to_csv(index=False))
    return data


# --------------------------------------------------------------------------- memory of the loss
LOSS_PATHS = ("plain", "chunked")


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _loss_memory_arm(path: str, options: dict, out: str) -> dict:
    """One loss computation (forward and backward with per-token upstream gradients) in this process;
    returns the memory it added at its peak. Runs in a fresh process, so the peak is this computation's."""
    dev = torch.device(options["device"])
    dtype = compute_dtype(options["precision"])
    tokens, hidden_size, vocab = options["tokens"], options["hidden_size"], options["vocab_size"]
    gen = torch.Generator(dev).manual_seed(options["seed"])
    # Made in their final dtype: no transient copy raises the high-water mark before the measurement.
    hidden = torch.empty(1, tokens + 1, hidden_size, device=dev, dtype=dtype).normal_(generator=gen)
    weight = torch.empty(vocab, hidden_size, device=dev, dtype=dtype).normal_(std=hidden_size**-0.5, generator=gen)
    hidden.requires_grad_()
    weight.requires_grad_()
    ids = torch.randint(0, vocab, (1, tokens + 1), generator=gen, device=dev)
    upstream = torch.rand(1, tokens, generator=gen, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    else:
        before = _resident_bytes()
        high_water_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if path == "plain":
        logits = hidden[:, :-1] @ weight.T
        losses = F.cross_entropy(logits.float().reshape(-1, vocab), ids[:, 1:].reshape(-1), reduction="none")
    else:
        losses = linear_cross_entropy(hidden, weight, ids, options["chunk_tokens"])[:, 1:].reshape(-1)
    (losses * upstream.reshape(-1)).sum().backward()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        added = torch.cuda.max_memory_allocated(dev) - before
        gap = 0
    else:
        added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        gap = high_water_before - before
    seconds = time.perf_counter() - start
    torch.save({"losses": losses.detach().cpu(), "hidden": hidden.grad.cpu(), "weight": weight.grad.cpu()}, out)
    return {"peak_added_mb": added / 2**20, "high_water_gap_mb": gap / 2**20, "seconds": seconds}


def loss_memory(**options) -> dict:
    """Peak memory added by one per-token loss computation over ``tokens`` tokens (forward, then backward
    with per-token upstream gradients), the plain full-logits path against the chunked one, each in a
    fresh process; and the largest differences between their losses and gradients. ``options`` are those
    of the config schema's ``loss_memory_options`` (``benchmarks.loss_memory``), unset ones at its defaults.

    On the CPU the peak is the process's resident high-water mark above its resident size before the
    computation (``high_water_gap_mb`` says how far the high-water mark already was above it, an amount
    the measurement could hide); on CUDA it is the allocator's peak above what was allocated before.
    """
    options = check_section(options, LOSS_MEMORY_OPTIONS, "benchmarks.loss_memory", closed=True)
    options["device"] = str(resolve_device(options["device"]))
    result = {**options, "paths": {}}
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="slm-loss-memory-") as tmp:
        for path in LOSS_PATHS:
            with context.Pool(1) as pool:
                result["paths"][path] = pool.apply(_loss_memory_arm, (path, options, f"{tmp}/{path}.pt"))
        plain, chunked = (torch.load(f"{tmp}/{path}.pt") for path in LOSS_PATHS)
    result["max_abs_loss_diff"] = float((plain["losses"] - chunked["losses"]).abs().max())
    for name in ("hidden", "weight"):
        diff = (plain[name].float() - chunked[name].float()).abs().max()
        result[f"max_rel_grad_{name}_diff"] = float(diff / plain[name].float().abs().max())
    result["memory_ratio"] = result["paths"]["plain"]["peak_added_mb"] / result["paths"]["chunked"]["peak_added_mb"]
    return result


def format_loss_memory(result: dict) -> str:
    lines = [
        f"per-token loss, {result['tokens']} tokens, vocabulary {result['vocab_size']}, "
        f"hidden {result['hidden_size']}, {result['precision']} on {result['device']}, "
        f"chunk {result['chunk_tokens'] or 'default'} tokens",
        "",
        "| path | peak memory added (MiB) | high-water gap before (MiB) | seconds |",
        "|---|---|---|---|",
    ]
    for path, arm in result["paths"].items():
        lines.append(
            f"| {path} | {arm['peak_added_mb']:,.0f} | {arm['high_water_gap_mb']:,.0f} | {arm['seconds']:.2f} |"
        )
    lines += [
        "",
        f"plain / chunked peak: {result['memory_ratio']:.2f}x; max |loss diff| {result['max_abs_loss_diff']:.2e}; "
        f"max relative gradient diff: hidden {result['max_rel_grad_hidden_diff']:.2e}, "
        f"head weight {result['max_rel_grad_weight_diff']:.2e}",
    ]
    return "\n".join(lines)
