"""Document sources: record-to-text keys (template, chat messages) and weighted mixtures, offline."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from slm.config import ConfigError, check_config, n_shards, shard_arguments, source_files
from slm.data.sources import check_mixture, iter_documents, iter_files, iter_mixture, render_chat

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def component_files(tmp_path: Path, sizes: dict[str, int], files_per_component: int = 1) -> dict[str, list[str]]:
    """Per component name, jsonl files whose documents are '<name>-<i>'."""
    out = {}
    for name, size in sizes.items():
        chunk = -(-size // files_per_component)
        out[name] = [
            write_jsonl(
                tmp_path / name / f"part-{k}.jsonl",
                [{"text": f"{name}-{i}"} for i in range(k * chunk, min(size, (k + 1) * chunk))],
            )
            for k in range(files_per_component)
        ]
    return out


def mixture(files: dict[str, list[str]], weights: dict[str, float], **extra) -> dict:
    return {
        "source": "mixture",
        "components": [{"weight": weights[name], "source": "files", "paths": paths} for name, paths in files.items()],
        **extra,
    }


def names(documents) -> list[str]:
    return [text for text, _ in documents]


def shares(texts: list[str]) -> dict[str, float]:
    counts = Counter(t.split("-")[0] for t in texts)
    return {k: v / len(texts) for k, v in counts.items()}


@pytest.fixture()
def three(tmp_path):
    return component_files(tmp_path, {"web": 4000, "code": 4000, "math": 4000})


def test_mixture_follows_the_weights_by_documents(three):
    spec = mixture(three, {"web": 6, "code": 3, "math": 1}, max_documents=3000, seed=1)
    texts = names(iter_documents(spec))
    assert len(texts) == 3000
    got = shares(texts)
    for name, want in {"web": 0.6, "code": 0.3, "math": 0.1}.items():
        assert got[name] == pytest.approx(want, abs=0.03)
    for name in ("web", "code", "math"):  # each component is read in order, none skipped
        own = [int(t.split("-")[1]) for t in texts if t.startswith(name)]
        assert own == list(range(len(own)))


def test_mixture_is_deterministic_and_seeded(three):
    spec = mixture(three, {"web": 6, "code": 3, "math": 1}, max_documents=500, seed=3)
    first = names(iter_documents(spec))
    assert names(iter_documents(spec)) == first
    assert names(iter_documents({**spec, "seed": 4})) != first


def test_mixture_stops_when_the_first_component_runs_out(tmp_path):
    files = component_files(tmp_path, {"big": 2000, "small": 50})
    texts = names(iter_mixture(mixture(files, {"big": 1, "small": 1}, seed=0)))
    counts = Counter(t.split("-")[0] for t in texts)
    assert counts["small"] == 50 and 0 < counts["big"] < 200  # stopped at the first draw from an empty 'small'


def test_mixture_drop_uses_every_document_once(tmp_path):
    files = component_files(tmp_path, {"big": 300, "small": 50})
    texts = names(iter_mixture(mixture(files, {"big": 1, "small": 1}, exhausted="drop")))
    assert sorted(texts) == sorted([f"big-{i}" for i in range(300)] + [f"small-{i}" for i in range(50)])


def test_sharded_mixture_splits_every_component_disjointly(tmp_path):
    files = component_files(tmp_path, {"web": 600, "math": 300}, files_per_component=2)
    spec = mixture(files, {"web": 2, "math": 1}, exhausted="drop", seed=5)
    parts = [
        names(iter_documents(spec, files=source_files({"data": {"corpus": spec}}, "corpus"), shard=s, num_shards=3))
        for s in range(3)
    ]
    seen = [t for part in parts for t in part]
    assert len(seen) == len(set(seen)) == 900  # disjoint, and together every document
    for part in parts:
        assert 250 <= len(part) <= 350 and shares(part)["web"] == pytest.approx(2 / 3, abs=0.1)
    # with the default exhausted: stop each shard is a prefix of its drop version's proportions
    stopped = [names(iter_documents({**spec, "exhausted": "stop"}, shard=s, num_shards=3)) for s in range(3)]
    flat = [t for part in stopped for t in part]
    assert len(flat) == len(set(flat)) and set(flat) <= set(seen)


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"weight": 0, "source": "files", "paths": ["x.jsonl"]}, "components[1].weight"),
        ({"source": "files", "paths": ["x.jsonl"]}, "components[1].weight"),
        ({"weight": 1, "source": "generated"}, "components[1].source"),
        ({"weight": 1, "source": "mixture", "components": []}, "components[1].source"),
        ({"weight": 1, "source": "hf", "path": "a/b", "shards": 4}, "components[1].shards"),
        ({"weight": 1, "source": "hf"}, "components[1].path"),
    ],
)
def test_bad_component_is_refused_naming_the_key(three, bad, key):
    spec = mixture(three, {"web": 1, "code": 1, "math": 1})
    spec["components"][1] = bad
    with pytest.raises(ValueError, match=re.escape(f"'data.corpus.{key}'")):
        check_mixture(spec, key="data.corpus")
    with pytest.raises(ValueError, match=re.escape(key)):
        next(iter_documents(spec))


def test_template_and_chat_messages_become_text(tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"query": "What is 2+3?", "response": "2+3=5. The answer is 5."}])
    assert names(iter_files([qa], template="{query}\n{response}")) == ["What is 2+3?\n2+3=5. The answer is 5."]
    tulu = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    hermes = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
        ]
    }
    chat = write_jsonl(tmp_path / "chat.jsonl", [tulu])
    assert names(iter_files([chat], messages_field="messages")) == ["<|user|>\nHi\n<|assistant|>\nHello!\n"]
    assert render_chat(hermes["conversations"]) == "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello!\n"
    with pytest.raises(ValueError, match="template"):
        list(iter_files([qa], template="{question}\n{response}"))
    spec = {
        "source": "mixture",
        "components": [
            {"weight": 1, "source": "files", "paths": [qa], "template": "Q: {query}\nA: {response}"},
            {"weight": 1, "source": "files", "paths": [chat], "messages_field": "messages"},
        ],
        "exhausted": "drop",
    }
    assert sorted(names(iter_documents(spec))) == sorted(
        ["Q: What is 2+3?\nA: 2+3=5. The answer is 5.", "<|user|>\nHi\n<|assistant|>\nHello!\n"]
    )


def test_hub_component_is_sharded_by_source_files(tmp_path, monkeypatch):
    """A hub component read from a local dataset directory (no network): shards split its files."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    hub = tmp_path / "hubdata"
    for k in range(4):
        write_jsonl(hub / f"train-{k}.jsonl", [{"body": f"hub-{k * 10 + i}"} for i in range(10)])
    local = component_files(tmp_path, {"loc": 40})
    spec = {
        "source": "mixture",
        "exhausted": "drop",
        "shards": 2,
        "components": [
            {"weight": 1, "source": "hf", "path": str(hub), "text_field": "body"},
            {"weight": 1, "source": "files", "paths": local["loc"]},
        ],
    }
    parts = [names(iter_documents(spec, shard=s, num_shards=2)) for s in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted([f"hub-{i}" for i in range(40)] + [f"loc-{i}" for i in range(40)])
    assert {t for t in parts[0] if t.startswith("hub")} == {f"hub-{i}" for i in range(20)}  # files 0-1
    with pytest.raises(ValueError, match="shards"):
        list(iter_documents(spec, shard=0, num_shards=5))


def _config(corpus: dict, **overrides) -> dict:
    """A config as the schema leaves it for slm.config (which reads the defaults the schema fills in)."""
    config = {
        "data": {"high_quality": {"source": "files", "paths": []}, "corpus": corpus},
        "tokenizer": {"from_base_model": True},
        "base_model": {"path": "org/model"},
        "reference": {"epochs": 1, "batch_size": 16},
        "training": {"max_tokens": 100, "batch_size": 16},
        "runs": {"slm": {"method": "slm", "ratio": 0.6}},
        "evaluation": {"tasks": ["t"], "metrics": {"t": "acc,none"}},
    }
    config.update(overrides)
    return config


def test_config_checks_and_shards_of_a_mixture(tmp_path, three):
    spec = mixture(three, {"web": 6, "code": 3, "math": 1}, shards=4)
    config = _config(spec)
    check_config(config, base_dir=tmp_path)
    assert n_shards(config, "corpus") == 4
    assert shard_arguments(config, "corpus", "002") == (2, 4)
    assert source_files(config, "corpus") == three["web"] + three["code"] + three["math"]
    missing = mixture({**three, "math": ["nowhere.jsonl"]}, {"web": 6, "code": 3, "math": 1})
    with pytest.raises(ConfigError, match=r"data\.corpus\.components\[2\]\.paths.*nowhere\.jsonl"):
        check_config(_config(missing), base_dir=tmp_path)
    hub = {"source": "mixture", "components": [{"weight": 1, "source": "hf", "path": "a/b"}]}
    with pytest.raises(ConfigError, match="tokenizer.train"):
        check_config(_config(hub, tokenizer={"train": {"vocab_size": 300}}, base_model={"init": {}}))
    with pytest.raises(ConfigError, match=r"data\.corpus\.components\[0\]\.weight"):
        check_config(_config({"source": "mixture", "components": [{"weight": -1, "source": "hf", "path": "a"}]}))


def test_schema_accepts_mixtures_and_refuses_bad_components(three):
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["data"]["corpus"] = mixture(three, {"web": 6, "code": 3, "math": 1}, shards=2)
    config["data"]["corpus"]["components"][0].update(template="{text}")
    validate(config, schema)
    assert config["data"]["corpus"]["exhausted"] == "stop"  # schema default filled in
    for bad in (
        {"weight": 1, "source": "hf", "path": "a/b", "shards": 2},  # shards belong to the mixture
        {"weight": 1, "source": "files", "paths": ["x"], "colour": "red"},
        {"source": "files", "paths": ["x"]},
    ):
        config["data"]["corpus"]["components"][1] = bad
        with pytest.raises(WorkflowError):
            validate(config, schema)
