"""Content fingerprints of a training job's inputs: resumable state is used only with the inputs it
was made from, not merely the same paths.

A saved training state records :func:`input_fingerprint`: the hash of the run's options and the
content hashes of its inputs (the init model's weights, the packed token shards, the score shards
and the reference model). A rerun whose inputs differ in any of these starts from step 0, and
:func:`changed_inputs` names what changed. The checkpoints staged beside the state belong to it and
go with it.

Cheap by design: token and score shards carry the hashes written with them (``index.json``'s
``tokens_sha256``; ``meta.json``'s ``scores_sha256``, token hash and reference fingerprint), so only
model weights are read, once per process and file version (cached by size, mtime and inode).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from slm.io import read_json, sha256_file

_SHA256_CACHE: dict[tuple, str] = {}


def cached_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, computed once per process for each version (size, mtime, inode) of it."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _SHA256_CACHE:
        _SHA256_CACHE[key] = sha256_file(path)
    return _SHA256_CACHE[key]


def model_fingerprint(model_dir: str | Path) -> str:
    """Hash of a local model's weights (its safetensors files), or ``id:<hub id>`` for a model that
    is not a local directory."""
    path = Path(model_dir)
    weights = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not weights:
        return f"id:{model_dir}"
    return "sha256:" + ",".join(cached_sha256(w) for w in weights)


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of a tokenizer's vocabulary (every token and its id)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return "sha256:" + hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()


def shard_fingerprint(shard_dir: str | Path) -> str:
    """A packed token shard's identity: the token hash stored in its index."""
    index = read_json(Path(shard_dir) / "index.json", "packed shard index")
    return f"tokens:{index.get('tokens_sha256')}:{index.get('n_tokens')}x{index.get('seq_len')}"


def score_fingerprint(score_dir: str | Path) -> str:
    """A score shard's identity: the hash of its scores (stored in ``meta.json`` when scored; hashed
    here for shards written before that), the tokens it scores and the reference model that scored them."""
    score_dir = Path(score_dir)
    meta = read_json(score_dir / "meta.json", "score shard metadata")
    scores = meta.get("scores_sha256") or cached_sha256(score_dir / "scores.npy")
    return f"scores:{scores}:tokens:{meta.get('tokens_sha256')}:reference:{meta.get('reference_fingerprint')}"


def input_fingerprint(
    options: str,
    *,
    init_model: str,
    data: list[str],
    scores: list[str] | None = None,
    reference_model: str | None = None,
) -> dict:
    """What a training state was made from: ``options`` (the hash of the options that change the
    weights) and the content hash of every input."""
    return {
        "options": options,
        "init_model": model_fingerprint(init_model),
        "data": [shard_fingerprint(d) for d in data],
        "scores": [score_fingerprint(s) for s in scores] if scores else None,
        "reference_model": model_fingerprint(reference_model) if reference_model else None,
    }


def changed_inputs(saved, current: dict) -> list[str]:
    """The parts of ``current`` that differ from a saved fingerprint, e.g. ``["init_model"]``; a saved
    fingerprint of another format differs in everything."""
    if not isinstance(saved, dict):
        return ["fingerprint format"]
    return [key for key in current if saved.get(key) != current[key]]
