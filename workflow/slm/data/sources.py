"""Document sources: local jsonl/txt/parquet files or a Hugging Face dataset, one iterator of documents.

A document is ``(text, spans)``; ``spans`` is a list of ``(start_char, end_char, kind_name)`` when the
source labels its text (the generated corpus does), else ``None``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

Document = tuple[str, list | None]

LOCAL_FORMATS = ("jsonl", "json", "txt", "parquet")


def _fmt(path: Path, declared: str | None) -> str:
    fmt = declared or path.suffix.lstrip(".")
    if fmt not in LOCAL_FORMATS:
        raise ValueError(f"{path}: unknown data file format {fmt!r}; allowed: {', '.join(LOCAL_FORMATS)}")
    return fmt


def _iter_jsonl(path: Path, text_field: str) -> Iterator[Document]:
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{lineno}: text is not valid UTF-8 ({err})") from err
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err})") from err
            if not isinstance(record, dict) or text_field not in record:
                raise ValueError(f"{path}:{lineno}: record has no field {text_field!r} (data key text_field)")
            if not isinstance(record[text_field], str):
                raise ValueError(f"{path}:{lineno}: field {text_field!r} is not a string")
            yield record[text_field], record.get("spans")


def _iter_txt(path: Path) -> Iterator[Document]:
    try:
        yield path.read_bytes().decode("utf-8"), None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: text is not valid UTF-8 ({err})") from err


def _iter_parquet(path: Path, text_field: str) -> Iterator[Document]:
    import datasets

    for record in datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True):
        yield record[text_field], None


def iter_files(paths: list[str | Path], *, text_field: str = "text", fmt: str | None = None) -> Iterator[Document]:
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        kind = _fmt(path, fmt)
        if kind in ("jsonl", "json"):
            yield from _iter_jsonl(path, text_field)
        elif kind == "txt":
            yield from _iter_txt(path)
        else:
            yield from _iter_parquet(path, text_field)


def iter_hub(spec: dict, *, shard: int = 0, num_shards: int = 1) -> Iterator[Document]:
    """Documents of a Hugging Face dataset (``path``, optional ``name``, ``split``, ``text_field``)."""
    import datasets

    dataset = datasets.load_dataset(
        spec["path"], spec.get("name"), split=spec.get("split", "train"), streaming=spec.get("streaming", True)
    )
    if num_shards > 1:
        dataset = dataset.shard(num_shards=num_shards, index=shard)
    text_field = spec.get("text_field", "text")
    limit = spec.get("max_documents")
    for count, record in enumerate(dataset):
        if limit is not None and count >= limit:
            break
        yield record[text_field], None


def iter_documents(spec: dict, *, files: list[str | Path] | None = None, shard: int = 0, num_shards: int = 1):
    """Iterate a source spec: ``{"source": "hf", ...}`` or local ``files`` (already resolved by the caller)."""
    if spec.get("source") == "hf":
        yield from iter_hub(spec, shard=shard, num_shards=num_shards)
    else:
        yield from iter_files(files or [], text_field=spec.get("text_field", "text"), fmt=spec.get("format"))
