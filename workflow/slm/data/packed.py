"""Packed token shards: the corpus cut once into fixed-length sequences, memory-mapped.

Layout of a shard directory (OLMo-style aligned arrays):

- ``tokens.npy``  flat token ids, ``n_sequences * seq_len`` long (uint16 when the vocabulary fits);
- ``kinds.npy``   uint8 span-kind id of every token (0 = unlabelled), aligned with ``tokens.npy``;
- ``doc_starts.npy`` int64 offset of each document's first token in the flat array;
- ``index.json``  shapes, dtype, eos id, token hash, provenance.

Documents are concatenated with EOS after each and cut into ``seq_len`` chunks; the tail that does
not fill a chunk is dropped. Scoring and training both read exactly these sequences, so a token's
reference loss is taken in the same context in which it is trained.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slm.data.generate import KIND_NAMES, TOOL_SOLUTION_KINDS, tool_solution_spans
from slm.fingerprint import tokenizer_fingerprint
from slm.io import atomic_path, atomic_write_json, read_json, sha256_file

FORMAT_VERSION = 1


def source_name(source: dict | None) -> str:
    """The files or dataset a shard is packed from, for messages."""
    source = source or {}
    return ", ".join(map(str, source.get("files") or [])) or str(source.get("path") or source.get("source") or "?")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def _token_kinds(offsets: list[tuple[int, int]], spans: list | None, kind_ids: dict[str, int]) -> np.ndarray:
    """Kind of each token = kind of the span containing the token's first character."""
    kinds = np.zeros(len(offsets), dtype=np.uint8)
    if not spans:
        return kinds
    span_starts = [span[0] for span in spans]
    for i, (start, _end) in enumerate(offsets):
        j = bisect.bisect_right(span_starts, start) - 1
        if j >= 0 and start < spans[j][1]:
            kinds[i] = kind_ids[spans[j][2]]
    return kinds


# Where a shard's span kinds come from: the source's own spans (the generated corpus has them), or the
# fences of tool-integrated solutions (data.tir), with their kind names.
SPAN_LABELS = {"source": KIND_NAMES, "tool_solution": TOOL_SOLUTION_KINDS}


def labelled_documents(
    documents: Iterable[tuple[str, list | None]], labels: str, source: dict | None = None
) -> tuple[Iterable[tuple[str, list | None]], tuple[str, ...]]:
    """``documents`` with the spans that ``labels`` (a key of :data:`SPAN_LABELS`, the source spec's
    ``spans``) names, and their kind names."""
    if labels not in SPAN_LABELS:
        raise ValueError(f"source key 'spans' of {source_name(source)}: one of {sorted(SPAN_LABELS)}, got {labels!r}")
    if labels == "source":
        return documents, SPAN_LABELS[labels]

    def tool_solutions():
        for number, (text, _spans) in enumerate(documents, start=1):
            try:
                yield text, tool_solution_spans(text)
            except ValueError as err:
                raise ValueError(f"{source_name(source)}: document {number}: {err}") from None

    return tool_solutions(), SPAN_LABELS[labels]


def pack_documents(
    documents: Iterable[tuple[str, list | None]],
    tokenizer,
    out_dir: Path,
    *,
    seq_len: int,
    source: dict | None = None,
    batch_docs: int = 512,
    kind_names: tuple[str, ...] = KIND_NAMES,
) -> dict:
    """Tokenize ``documents`` and write a packed shard to ``out_dir`` atomically; return its index."""
    if seq_len < 2:
        raise ValueError(f"sequence_length must be at least 2, got {seq_len}")
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path} has no eos token")
    kind_ids = {name: i for i, name in enumerate(kind_names)}
    dtype = token_dtype(len(tokenizer))
    token_chunks: list[np.ndarray] = []
    kind_chunks: list[np.ndarray] = []
    doc_starts: list[int] = []
    n_tokens = 0
    n_docs = 0

    def flush(batch: list[tuple[str, list | None]]) -> None:
        nonlocal n_tokens, n_docs
        encoded = tokenizer(
            [text for text, _ in batch], add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        for (_, spans), ids, offsets in zip(batch, encoded["input_ids"], encoded["offset_mapping"]):
            unknown = {span[2] for span in spans or ()} - kind_ids.keys()
            if unknown:
                raise ValueError(f"unknown span kind(s) {sorted(unknown)}; known: {list(kind_names)}")
            doc_starts.append(n_tokens)
            token_chunks.append(np.asarray(ids + [eos_id], dtype=dtype))
            kind_chunks.append(np.append(_token_kinds(offsets, spans, kind_ids), np.uint8(0)))
            n_tokens += len(ids) + 1
            n_docs += 1

    batch: list[tuple[str, list | None]] = []
    for text, spans in documents:
        if not isinstance(text, str):
            raise TypeError(f"document text must be a string, got {type(text).__name__}")
        if text:
            batch.append((text, spans))
        if len(batch) >= batch_docs:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    n_sequences = n_tokens // seq_len
    if n_sequences == 0:
        raise ValueError(
            f"empty corpus for {out_dir} (source: {source_name(source)}): {n_docs} documents, {n_tokens} tokens, "
            f"fewer than one sequence of {seq_len} tokens (sequence_length)"
        )
    kept = n_sequences * seq_len
    tokens = np.concatenate(token_chunks)[:kept]
    kinds = np.concatenate(kind_chunks)[:kept]
    starts = np.asarray([s for s in doc_starts if s < kept], dtype=np.int64)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        np.save(tmp / "tokens.npy", tokens)
        np.save(tmp / "kinds.npy", kinds)
        np.save(tmp / "doc_starts.npy", starts)
        index = {
            "format_version": FORMAT_VERSION,
            "n_tokens": int(kept),
            "seq_len": int(seq_len),
            "n_sequences": int(n_sequences),
            "dtype": dtype.name,
            "vocab_size": len(tokenizer),
            "eos_id": int(eos_id),
            "n_documents": int(len(starts)),
            "dropped_tail_tokens": int(n_tokens - kept),
            "kind_names": list(kind_names),
            "tokens_sha256": sha256_file(tmp / "tokens.npy"),
            "tokenizer": str(tokenizer.name_or_path),
            "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
            "source": source or {},
        }
        atomic_write_json(tmp / "index.json", index)
    return index


def load_array(path: Path, remedy: str) -> np.ndarray:
    """Memory-map a ``.npy`` file; a missing, truncated or corrupt one raises ``ValueError`` naming it."""
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is missing, truncated or not a numpy array ({err}); {remedy}") from err


@dataclass
class PackedShard:
    """A memory-mapped packed shard."""

    path: Path
    index: dict
    tokens: np.ndarray
    kinds: np.ndarray

    @classmethod
    def open(cls, path: str | Path) -> PackedShard:
        path = Path(path)
        index = read_json(path / "index.json", "packed shard index")
        if index.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: packed shard format {index.get('format_version')}, expected {FORMAT_VERSION}")
        tokens, kinds = (load_array(path / name, "re-run the prepare step") for name in ("tokens.npy", "kinds.npy"))
        if tokens.shape != (index["n_tokens"],) or kinds.shape != tokens.shape:
            raise ValueError(
                f"{path}: array lengths {tokens.shape}/{kinds.shape} do not match index n_tokens "
                f"{index['n_tokens']}; re-run the prepare step"
            )
        return cls(path, index, tokens, kinds)

    @property
    def seq_len(self) -> int:
        return self.index["seq_len"]

    @property
    def n_sequences(self) -> int:
        return self.index["n_sequences"]

    def sequence_slice(self, i: int) -> slice:
        return slice(i * self.seq_len, (i + 1) * self.seq_len)


class PackedCorpus:
    """Several shards of equal sequence length addressed by one global sequence index."""

    def __init__(self, shard_dirs: list[str | Path]):
        if not shard_dirs:
            raise ValueError("no packed shards given")
        self.shards = [PackedShard.open(p) for p in shard_dirs]
        lengths = {s.seq_len for s in self.shards}
        if len(lengths) != 1:
            raise ValueError(f"packed shards have different sequence lengths {sorted(lengths)}: {shard_dirs}")
        self.seq_len = lengths.pop()
        self.kind_names = self.shards[0].index["kind_names"]
        self.offsets = np.cumsum([0] + [s.n_sequences for s in self.shards])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        shard = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return shard, int(i - self.offsets[shard])

    def gather(self, indices, arrays: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Rows ``indices`` of each per-shard flat array family in ``arrays`` (e.g. tokens, scores)."""
        out = [[] for _ in arrays]
        for i in indices:
            shard, row = self.locate(int(i))
            sl = self.shards[shard].sequence_slice(row)
            for family, rows in zip(arrays, out):
                rows.append(np.asarray(family[shard][sl]))
        return [np.stack(rows) for rows in out]
