"""Shared fixtures: a tiny labelled corpus, a tokenizer trained on it, a tiny Llama, packed shards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from slm.data.packed import PackedShard, pack_documents
from slm.data.sources import iter_files
from slm.model import init_model
from smoke import SmokeRun, output_digest, smoke_workdir, snakemake, without_training_runs

SEQ_LEN = 32
# The tiny Llama of these tests (its tokenizer has 300 tokens).
TINY_LLAMA = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=128)


def _document(rng: random.Random) -> dict:
    """A short document with labelled spans: a sum (math), a random hex id (noise), a fixed footer."""
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    parts = [
        (f"Question: what is {a} + {b}?\nAnswer: {a} + {b} = {a + b}. The answer is {a + b}.\n", "math"),
        (f"id {rng.getrandbits(40):010x}\n", "noise"),
        ("Home | About | Contact\n", "boilerplate"),
    ]
    rng.shuffle(parts)
    text, spans = "", []
    for part, kind in parts:
        spans.append([len(text), len(text) + len(part), kind])
        text += part
    return {"text": text, "spans": spans}


def write_corpus(path: Path, n_docs: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps(_document(rng)) + "\n" for _ in range(n_docs)), encoding="utf-8")
    return path


def train_spec(run_dir: Path, base_model: Path, shards: list[Path], **overrides) -> dict:
    """Training options of a short run on the tiny corpus (6 steps of 4 sequences), under ``run_dir``."""
    spec = dict(
        init_model=str(base_model),
        data=[str(s) for s in shards],
        out_dir=str(run_dir / "run" / "final"),
        state_dir=str(run_dir / "state"),
        batch_size=4,
        max_tokens=4 * 32 * 6,
        lr=3e-3,
        warmup_steps=2,
        save_every=2,
        log_every=1,
        seed=3,
        device="cpu",
    )
    spec.update(overrides)
    return spec


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("core")


@pytest.fixture(scope="session")
def corpus_files(workdir) -> list[Path]:
    return [write_corpus(workdir / f"shard-{i}.jsonl", 60, seed=i) for i in range(2)]


@pytest.fixture(scope="session")
def tokenizer_dir(workdir, corpus_files) -> Path:
    from slm.data.tokenizer import train_tokenizer

    out = workdir / "tokenizer"
    train_tokenizer(corpus_files, out, vocab_size=300)
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def base_model(workdir, tokenizer_dir) -> Path:
    out = workdir / "base"
    init_model(tokenizer_dir, out, **TINY_LLAMA, seed=0)
    return out


@pytest.fixture(scope="session")
def shards(workdir, corpus_files, tokenizer) -> list[Path]:
    outs = []
    for i, path in enumerate(corpus_files):
        out = workdir / f"packed-{i}"
        pack_documents(iter_files([path]), tokenizer, out, seq_len=SEQ_LEN)
        outs.append(out)
    return outs


@pytest.fixture(scope="session")
def shard(shards) -> PackedShard:
    return PackedShard.open(shards[0])


@pytest.fixture(scope="session")
def score_dirs(workdir, base_model, shards) -> list[Path]:
    """The base model's per-token losses of each shard, as reference scores."""
    from slm.score import score_shard

    outs = []
    for i, shard in enumerate(shards):
        out = workdir / f"train-scores-{i}"
        score_shard(base_model, shard, out, batch_size=8, device="cpu")
        outs.append(out)
    return outs


@pytest.fixture(scope="session")
def smoke_local(tmp_path_factory) -> SmokeRun:
    """The smoke config run locally, once per session, the digest of its outputs taken right after
    (tests that add to its directory come later), and a copy of it before its training runs; the
    reference of the fault-injection and SLURM runs."""
    workdir = smoke_workdir(tmp_path_factory.mktemp("smoke"))
    proc = snakemake(workdir, "--cores", "2")
    (workdir / "console.log").write_text(proc.stdout + proc.stderr)  # what the user saw
    untrained = without_training_runs(workdir, tmp_path_factory.mktemp("smoke-untrained") / "run")
    return SmokeRun(workdir, output_digest(workdir), untrained)
