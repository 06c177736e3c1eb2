"""Document sources: local jsonl/txt/parquet files, a Hugging Face dataset, or a weighted mixture of
those, as one iterator of documents.

A document is ``(text, spans)``; ``spans`` is a list of ``(start_char, end_char, kind_name)`` when the
source labels its text (the generated corpus does), else ``None``.

How a record becomes text (``files`` records with fields, and ``hf``), first match wins:

* ``messages_field``: a list of chat messages (``{"role", "content"}`` as in Tulu-v2, or
  ``{"from", "value"}`` as in OpenHermes-2.5), rendered in the Tulu format
  ``<|user|>\\n...\\n<|assistant|>\\n...\\n`` (roles ``human``/``gpt`` become ``user``/``assistant``);
* ``template``: a Python format string over the record's fields, e.g. ``"{query}\\n{response}"``
  (literal braces doubled);
* ``text_field`` (default ``text``): one field. Only here are a record's ``spans`` kept.

A ``mixture`` interleaves its components' documents, by documents, in proportion to their weights
(see :func:`iter_mixture`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

Document = tuple[str, list | None]

LOCAL_FORMATS = ("jsonl", "json", "txt", "parquet")
COMPONENT_SOURCES = ("hf", "files")
EXHAUSTED = ("stop", "drop")
CHAT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}

log = logging.getLogger(__name__)


def _fmt(path: Path, declared: str | None) -> str:
    fmt = declared or path.suffix.lstrip(".")
    if fmt not in LOCAL_FORMATS:
        raise ValueError(f"{path}: unknown data file format {fmt!r}; allowed: {', '.join(LOCAL_FORMATS)}")
    return fmt


def render_chat(messages, where: str = "record") -> str:
    """Chat messages as one text in the Tulu format: ``<|role|>\\ncontent\\n`` per message."""
    if not isinstance(messages, list):
        raise ValueError(f"{where}: messages_field is not a list of messages (got {type(messages).__name__})")
    parts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"{where}: message {i} is not an object (data key messages_field)")
        role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            raise ValueError(f"{where}: message {i} needs role/content (or from/value) keys (data key messages_field)")
        parts.append(f"<|{CHAT_ROLES.get(role, role)}|>\n{content}\n")
    return "".join(parts)


def record_text(
    record: dict,
    *,
    text_field: str = "text",
    template: str | None = None,
    messages_field: str | None = None,
    where: str = "record",
) -> Document:
    """The document of one record (see the module docstring for the precedence of the three keys).

    Raises ``ValueError`` naming ``where`` and the data key when the record does not fit."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: record is not an object (got {type(record).__name__})")
    if messages_field is not None:
        if messages_field not in record:
            raise ValueError(f"{where}: record has no field {messages_field!r} (data key messages_field)")
        return render_chat(record[messages_field], where), None
    if template is not None:
        try:
            return template.format_map(record), None
        except KeyError as err:
            raise ValueError(
                f"{where}: record has no field {err.args[0]!r} named in the data key template "
                f"{template!r}; fields: {sorted(record)}"
            ) from err
        except (ValueError, IndexError, AttributeError) as err:
            raise ValueError(f"{where}: data key template {template!r} is not a valid format string ({err})") from err
    if text_field not in record:
        raise ValueError(f"{where}: record has no field {text_field!r} (data key text_field)")
    if not isinstance(record[text_field], str):
        raise ValueError(f"{where}: field {text_field!r} is not a string (data key text_field)")
    return record[text_field], record.get("spans")


def _text_options(spec: dict) -> dict:
    return {
        "text_field": spec.get("text_field") or "text",
        "template": spec.get("template"),
        "messages_field": spec.get("messages_field"),
    }


def _iter_jsonl(path: Path, options: dict) -> Iterator[Document]:
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
            yield record_text(record, where=f"{path}:{lineno}", **options)


def _iter_txt(path: Path) -> Iterator[Document]:
    try:
        yield path.read_bytes().decode("utf-8"), None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: text is not valid UTF-8 ({err})") from err


def _iter_parquet(path: Path, options: dict) -> Iterator[Document]:
    import datasets

    for row, record in enumerate(datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)):
        text, _ = record_text(record, where=f"{path}: row {row}", **options)
        yield text, None


def iter_files(
    paths: list[str | Path],
    *,
    text_field: str = "text",
    fmt: str | None = None,
    template: str | None = None,
    messages_field: str | None = None,
) -> Iterator[Document]:
    options = {"text_field": text_field, "template": template, "messages_field": messages_field}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        kind = _fmt(path, fmt)
        if kind in ("jsonl", "json"):
            yield from _iter_jsonl(path, options)
        elif kind == "txt":
            yield from _iter_txt(path)
        else:
            yield from _iter_parquet(path, options)


def iter_hub(spec: dict, *, shard: int = 0, num_shards: int = 1) -> Iterator[Document]:
    """Documents of a Hugging Face dataset (``path``, optional ``name``, ``split``, text keys).

    Sharding splits the dataset's source files (``IterableDataset.shard``, contiguous blocks); a
    streamed dataset with fewer files than ``num_shards`` is first split by parquet row group
    (``reshard``) and refused when that is still too few.
    """
    import datasets

    dataset = datasets.load_dataset(
        spec["path"], spec.get("name"), split=spec.get("split", "train"), streaming=spec.get("streaming", True)
    )
    if num_shards > 1:
        if isinstance(dataset, datasets.IterableDataset) and dataset.num_shards < num_shards:
            if hasattr(dataset, "reshard"):
                dataset = dataset.reshard()
            if dataset.num_shards < num_shards:
                raise ValueError(
                    f"hub dataset {spec['path']} streams from {dataset.num_shards} file(s)/row group(s), fewer than "
                    f"the {num_shards} shards asked for (data key shards): lower shards to at most {dataset.num_shards}"
                )
        dataset = dataset.shard(num_shards=num_shards, index=shard)
    options = _text_options(spec)
    limit = spec.get("max_documents")
    for count, record in enumerate(dataset):
        if limit is not None and count >= limit:
            break
        text, _ = record_text(record, where=f"{spec['path']} (shard {shard}/{num_shards}) record {count}", **options)
        yield text, None


# --------------------------------------------------------------------------- mixtures
def check_mixture(spec: dict, key: str = "mixture") -> list[dict]:
    """Check a mixture spec; return its components. Errors name the key (``<key>.components[i].weight``)."""

    def fail(sub: str, why: str):
        raise ValueError(f"config key '{key}{sub}': {why}")

    components = spec.get("components")
    if not isinstance(components, list) or not components:
        fail(".components", "a mixture needs a non-empty list of components")
    for i, comp in enumerate(components):
        where = f".components[{i}]"
        if not isinstance(comp, dict):
            fail(where, "must be a mapping: {weight: W, source: hf|files, ...}")
        source = comp.get("source")
        if source == "mixture":
            fail(f"{where}.source", "mixtures do not nest: list the inner mixture's components here")
        if source not in COMPONENT_SOURCES:
            fail(f"{where}.source", f"must be one of {', '.join(COMPONENT_SOURCES)}, got {source!r}")
        weight = comp.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            fail(f"{where}.weight", f"must be a positive number, got {weight!r}")
        if "shards" in comp:
            fail(
                f"{where}.shards",
                "a component is not sharded on its own: give shards on the mixture, "
                "which cuts every component the same way",
            )
        if source == "hf" and not comp.get("path"):
            fail(f"{where}.path", "a hub component needs a dataset path")
        if source == "files" and (not isinstance(comp.get("paths"), list) or not comp["paths"]):
            fail(f"{where}.paths", "a files component needs a non-empty list of paths")
    exhausted = spec.get("exhausted", "stop")
    if exhausted not in EXHAUSTED:
        fail(".exhausted", f"must be one of {', '.join(EXHAUSTED)}, got {exhausted!r}")
    limit = spec.get("max_documents")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        fail(".max_documents", f"must be a positive integer, got {limit!r}")
    return components


def mixture_files(spec: dict) -> list[str]:
    """The local files of a mixture's ``files`` components (inputs of every shard), in order."""
    return [str(p) for comp in spec.get("components", []) if comp.get("source") == "files" for p in comp["paths"]]


def _component_documents(comp: dict, shard: int, num_shards: int) -> Iterator[Document]:
    if comp["source"] == "hf":
        yield from iter_hub(comp, shard=shard, num_shards=num_shards)
        return
    documents = iter_files(comp["paths"], fmt=comp.get("format"), **_text_options(comp))
    for index, document in enumerate(documents):  # local files: every num_shards-th document
        if index % num_shards == shard:
            yield document


def iter_mixture(spec: dict, *, shard: int = 0, num_shards: int = 1) -> Iterator[Document]:
    """Interleave the components' documents in proportion to their weights (by documents).

    Every draw picks a component with probability ``weight / sum(weights)`` from a
    ``random.Random`` seeded by ``(seed, shard, num_shards)`` and yields that component's next
    document, so the order depends only on the spec, never on the data. With ``exhausted: stop``
    (the default) the mixture ends when the component drawn has no document left (the proportions
    hold throughout); with ``exhausted: drop`` that component leaves the draw and the others go on
    (every document of every component is used once). ``max_documents`` caps the documents of each
    shard. With ``num_shards > 1`` every component yields only its shard ``shard``: a hub component
    by source files (as an ``hf`` source), a files component every ``num_shards``-th document.
    """
    components = check_mixture(spec)
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is not in [0, {num_shards})")
    weights = [float(comp["weight"]) for comp in components]
    streams = [_component_documents(comp, shard, num_shards) for comp in components]
    rng = random.Random(f"mixture:{spec.get('seed', 0)}:{shard}:{num_shards}")
    stop = spec.get("exhausted", "stop") == "stop"
    limit = spec.get("max_documents")
    active = list(range(len(components)))
    counts = [0] * len(components)
    chars = [0] * len(components)
    produced = 0
    try:
        while active and (limit is None or produced < limit):
            pick = rng.choices(active, weights=[weights[i] for i in active])[0]
            try:
                text, spans = next(streams[pick])
            except StopIteration:
                if stop:
                    break
                active.remove(pick)
                continue
            counts[pick] += 1
            chars[pick] += len(text)
            produced += 1
            yield text, spans
    finally:
        for i, comp in enumerate(components):
            name = comp.get("path") or ",".join(map(str, comp.get("paths", [])))
            log.info(
                "mixture shard %d/%d: component %d (%s, weight %s): %d documents, %d characters",
                shard,
                num_shards,
                i,
                name,
                comp["weight"],
                counts[i],
                chars[i],
            )


def iter_documents(spec: dict, *, files: list[str | Path] | None = None, shard: int = 0, num_shards: int = 1):
    """Iterate a source spec: ``hf``, ``mixture``, or local ``files`` (already resolved by the caller).

    A mixture reads its files components' ``paths`` from the spec (relative to the working directory);
    ``files`` then only serves to tell Snakemake the inputs and is not read again.
    """
    source = spec.get("source")
    if source == "hf":
        yield from iter_hub(spec, shard=shard, num_shards=num_shards)
    elif source == "mixture":
        yield from iter_mixture(spec, shard=shard, num_shards=num_shards)
    else:
        yield from iter_files(files or [], fmt=spec.get("format"), **_text_options(spec))
