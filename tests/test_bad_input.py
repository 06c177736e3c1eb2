"""The bad-input catalogue: every entry is one bad input, refused with a message that names the
config key or the file, and leaving everything already produced as it was.

Config entries go through what the workflow runs before any job (the schema, then slm.config, as in
workflow/rules/common.smk); file entries through the stage's own entry point (``python -m slm
<stage>``, in-process), against copies of produced shards, scores, models and outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.exceptions import WorkflowError

from conftest import SEQ_LEN, TINY_LLAMA, write_corpus
from slm.cli import main
from slm.config import ConfigError
from slm.data.generate import MAX_RESULT
from slm.data.tokenizer import train_tokenizer
from slm.schema import config_schema
from slm.score import score_shard
from slm.selection import SCORE_FUNCTIONS, UNITS, WEIGHTINGS
from smoke import REPO, SMOKE_CONFIG, workflow_checks


def produced(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: modification time and content hash."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def names(message: str, key: str) -> bool:
    """Whether ``message`` names ``key`` (dotted, or as the schema validator's ['a']['b'] path)."""
    brackets = "".join(f"['{part}']" for part in key.split("."))
    return key in message or brackets in message


def _set(path: str, value):
    def change(config, tmp):
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    return change


def _drop(path: str):
    def change(config, tmp):
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        del node[leaf]

    return change


def _corpus_file(text: bytes, **keys):
    """data.corpus from one local file with ``text`` (written into the test's directory)."""

    def change(config, tmp):
        (tmp / "corpus.jsonl").write_bytes(text)
        config["data"]["corpus"] = {"source": "files", "paths": ["corpus.jsonl"], **keys}

    return change


def _both(*changes):
    def change(config, tmp):
        for c in changes:
            c(config, tmp)

    return change


GOOD_RECORD = b'{"text": "Question: 2 + 3 = 5"}\n'

# (what is wrong, the change to the smoke config, the key or file the message must name)
CONFIG_CASES = [
    # types and ranges (the schema)
    ("ratio above 1", _set("runs.slm.ratio", 1.5), "runs.slm.ratio"),
    ("ratio zero", _set("runs.slm.ratio", 0), "runs.slm.ratio"),
    ("ratio a string", _set("runs.slm.ratio", "0.6"), "runs.slm.ratio"),
    ("unknown selection unit", _set("runs.slm.unit", "token"), "runs.slm.unit"),
    ("unknown score function", _set("runs.slm.score_fn", "loss"), "runs.slm.score_fn"),
    ("unknown method", _set("runs.slm.method", "dpo"), "runs.slm.method"),
    ("batch size zero", _set("training.batch_size", 0), "training.batch_size"),
    ("negative learning rate", _set("training.lr", -1e-3), "training.lr"),
    ("beta2 of 1", _set("training.beta2", 1.0), "training.beta2"),
    ("sequence length a string", _set("sequence_length", "64"), "sequence_length"),
    ("fractional seed", _set("seed", 1.5), "seed"),
    ("unknown device", _set("device", "tpu"), "device"),
    ("unknown precision", _set("precision", "fp16"), "precision"),
    ("max_operand below 3", _set("data.generator.max_operand", 2), "data.generator.max_operand"),
    ("max_operand above 499", _set("data.generator.max_operand", 500), "data.generator.max_operand"),
    ("negative kind weight", _set("data.generator.kind_weights.noise", -0.1), "data.generator.kind_weights.noise"),
    ("unknown span kind", _set("data.generator.kind_weights.spam", 0.1), "spam"),
    ("vocabulary below the byte alphabet", _set("tokenizer.train.vocab_size", 100), "tokenizer.train.vocab_size"),
    ("checkpoint at zero tokens", _set("training.checkpoints", [0]), "training.checkpoints"),
    ("evaluation limit zero", _set("evaluation.limit", 0), "evaluation.limit"),
    ("model size missing", _drop("base_model.init.hidden_size"), "hidden_size"),
    ("evaluation tasks missing", _drop("evaluation.tasks"), "tasks"),
    # unknown keys
    ("unknown top-level key", _set("trainig", {"lr": 1e-3}), "trainig"),
    ("unknown training option", _set("training.learning_rate", 1e-3), "learning_rate"),
    ("unknown run key", _set("runs.slm.ratios", 0.5), "ratios"),
    ("unknown resources stage", _set("resources.pretrain", {"gpus": 1}), "pretrain"),
    ("unknown resources key", _set("resources.train.gpu", 1), "gpu"),
    # how keys fit together (slm.config)
    ("max_tokens and epochs", _set("training.epochs", 1), "training"),
    ("loss kind the corpus lacks", _set("training.loss_kinds", ["program"]), "training.loss_kinds"),
    (
        "loss kind of no tool-integrated solution",
        _both(
            _set("data.tir", {"source": "generated"}),
            _set("tool_integrated", {"runs": ["slm"], "training": {"epochs": 1, "loss_kinds": ["program", "math"]}}),
        ),
        "tool_integrated.training.loss_kinds",
    ),
    (
        "micro-batch not dividing the batch",
        _set("training", {"lr": 3.0e-3, "batch_size": 4, "micro_batch_size": 3, "max_tokens": 8192}),
        "training.micro_batch_size",
    ),
    (
        "micro-batch not dividing the schema's default batch",
        _set("reference", {"lr": 3.0e-3, "micro_batch_size": 5, "epochs": 1}),
        "reference.micro_batch_size",
    ),
    ("min_steps above max_steps", _set("data.generator.min_steps", 3), "data.generator.min_steps"),
    (
        "no positive kind weight",
        _set("data.generator.kind_weights", {"math": 0, "noise": 0}),
        "data.generator.kind_weights",
    ),
    ("checkpoint past the budget", _set("training.checkpoints", [8192]), "training.checkpoints"),
    ("task without a metric", _drop("evaluation.metrics.arith_mc"), "evaluation.metrics"),
    ("clm run with selection settings", _set("runs.clm.unit", "sequence"), "runs.clm.unit"),
    ("dynamics of an unknown run", _set("dynamics.runs", ["dpo"]), "dynamics.runs"),
    ("run of an unknown base model", _set("runs.slm.base_model", "strong"), "runs.slm.base_model"),
    # resource requests the device or the cluster profile cannot express (slm.resources)
    ("GPUs on a CPU run", _set("resources.train", {"gpus": 2}), "resources.train.gpus"),
    (
        "scoring on two GPUs",
        _both(_set("device", "cuda"), _set("resources.score", {"gpus": 2})),
        "resources.score",
    ),
    (
        "several nodes without GPUs",
        _both(_set("device", "cuda"), _set("resources.train", {"gpus": 0, "nodes": 2})),
        "resources.train.nodes",
    ),
    (
        "cores per task and per GPU at once",
        _both(_set("device", "cuda"), _set("resources.train", {"gpus": 1, "cpus": 8})),
        "resources.train.cpus",
    ),
    ("fractional GPUs", _set("resources.train", {"gpus": 0.5}), "resources.train.gpus"),
    ("memory of zero", _set("resources.score", {"mem_mb": 0}), "resources.score.mem_mb"),
    ("retries that shrink", _set("resources.default", {"retry_growth": 0.5}), "resources.default.retry_growth"),
    # the measurements of `snakemake benchmarks`
    ("benchmark option unknown", _set("benchmarks.throughput", {"stepz": 5}), "stepz"),
    ("benchmark without the CLM baseline first", _set("benchmarks.throughput", {"ratios": [0.6, 1.0]}), "ratios"),
    (
        "benchmark batch that does not split over a world size",
        _set("benchmarks.throughput", {"world_sizes": [1, 3]}),
        "benchmarks.throughput.batch_size",
    ),
    ("numerics ratio above 1", _set("benchmarks.numerics", {"ratio": 1.5}), "benchmarks.numerics.ratio"),
    # missing files and model paths
    ("missing corpus file", _set("data.corpus", {"source": "files", "paths": ["gone.jsonl"]}), "gone.jsonl"),
    (
        "missing base model directory",
        _both(_set("base_model", {"path": "./models/gone"}), _set("tokenizer", {"from_base_model": True})),
        "base_model.path",
    ),
    ("missing reference model directory", _set("reference", {"path": "./models/gone"}), "reference.path"),
    (
        "missing reference init model",
        _set("reference", {"epochs": 1, "init_model": "/models/gone"}),
        "reference.init_model",
    ),
    # local data that cannot be read, found before any job
    ("empty corpus file", _corpus_file(b""), "corpus.jsonl"),
    ("corpus not UTF-8", _corpus_file(b'{"text": "caf\xe9"}\n'), "corpus.jsonl"),
    ("corpus line not JSON", _corpus_file(b"{text: 1}\n"), "corpus.jsonl"),
    ("dataset field that does not exist", _corpus_file(GOOD_RECORD, text_field="content"), "text_field"),
    ("template of a missing field", _corpus_file(GOOD_RECORD, template="{query}"), "template"),
]


@pytest.mark.parametrize("change, key", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config(tmp_path, change, key):
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    change(config, tmp_path)
    before = produced(tmp_path)
    with pytest.raises((WorkflowError, ConfigError)) as err:
        workflow_checks(config, tmp_path)
    assert names(str(err.value), key), str(err.value)[:2000]
    assert produced(tmp_path) == before


def test_the_smoke_config_passes():
    workflow_checks(yaml.safe_load(SMOKE_CONFIG.read_text()), REPO)


def test_rules_the_schema_shares_with_the_code():
    """The schema is the source of each range; the code's own constants must agree with it."""
    schema = config_schema()
    run = schema["properties"]["runs"]["additionalProperties"]["properties"]
    assert tuple(run["unit"]["enum"]) == UNITS
    assert tuple(run["weighting"]["enum"]) == WEIGHTINGS
    assert tuple(run["score_fn"]["enum"]) == SCORE_FUNCTIONS
    operand = schema["properties"]["data"]["properties"]["generator"]["properties"]["max_operand"]
    assert operand["maximum"] == MAX_RESULT // 2


# -- files, through the stages' entry points -----------------------------------------------------


@pytest.fixture
def produced_run(tmp_path, base_model, shards, workdir):
    """Copies of produced inputs (a model, two token shards, their scores by that model) and of an
    output a run already wrote (a final model), and the training command over them."""
    root = tmp_path / "results"
    shutil.copytree(base_model, root / "base")
    data = []
    for i, shard in enumerate(shards):
        shutil.copytree(shard, root / f"packed-{i}")
        score_shard(root / "base", root / f"packed-{i}", root / f"scores-{i}", batch_size=8, device="cpu")
        data.append(str(root / f"packed-{i}"))
    shutil.copytree(base_model, root / "run" / "final")  # a final model from an earlier run
    options = {"ratio": 0.6, "batch_size": 4, "max_tokens": 4 * SEQ_LEN * 4, "device": "cpu", "seed": 1}
    paths = {
        "init_model": str(root / "base"),
        "reference_model": str(root / "base"),
        "data": data,
        "scores": [str(root / f"scores-{i}") for i in range(2)],
        "out_dir": str(root / "run" / "final"),
        "state_dir": str(root / "state"),
    }
    return root, options, paths


def train_command(options: dict, paths: dict) -> list[str]:
    return ["train", "--options", json.dumps(options), "--paths", json.dumps(paths), "--threads", "1"]


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path: Path):
    path.write_bytes(b"\x00not an array\x00" * 16)


def _other_tokenizer(root: Path, vocab_size: int) -> Path:
    corpus = write_corpus(root.parent / "other.jsonl", 80, seed=9)
    out = root.parent / f"other-tokenizer-{vocab_size}"
    train_tokenizer([corpus], out, vocab_size=vocab_size)
    return out


def _repack(root: Path, tokenizer_dir: Path):
    """Both token shards re-prepared with another tokenizer, their scores re-made to match."""
    from transformers import AutoTokenizer

    from slm.data.packed import pack_documents
    from slm.data.sources import iter_files

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    for i in range(2):
        corpus = write_corpus(root.parent / f"doc-{i}.jsonl", 60, seed=i)
        pack_documents(iter_files([corpus]), tokenizer, root / f"packed-{i}", seq_len=SEQ_LEN)
        meta_path = root / f"scores-{i}" / "meta.json"
        index = json.loads((root / f"packed-{i}" / "index.json").read_text())
        meta = json.loads(meta_path.read_text())
        np.save(root / f"scores-{i}" / "scores.npy", np.zeros(index["n_tokens"], dtype=np.float16))
        meta.update(n_tokens=index["n_tokens"], tokens_sha256=index["tokens_sha256"])
        meta_path.write_text(json.dumps(meta))


def _other_reference(root: Path):
    from slm.model import init_model

    init_model(root / "base", root / "other-reference", **TINY_LLAMA, seed=5)
    for i in range(2):
        score_shard(root / "other-reference", root / f"packed-{i}", root / f"scores-{i}", batch_size=8, device="cpu")


# (what is wrong, how the produced inputs are spoiled, the file the message must name)
FILE_CASES = [
    ("init model directory missing", lambda r, p: p.update(init_model=str(r / "gone")), "gone"),
    ("token shard missing", lambda r, p: shutil.rmtree(r / "packed-1"), "packed-1/index.json"),
    ("token array truncated", lambda r, p: _truncate(r / "packed-0" / "tokens.npy"), "packed-0/tokens.npy"),
    ("token array corrupt", lambda r, p: _garble(r / "packed-1" / "tokens.npy"), "packed-1/tokens.npy"),
    ("span-kind array truncated", lambda r, p: _truncate(r / "packed-0" / "kinds.npy"), "packed-0/kinds.npy"),
    ("shard index not JSON", lambda r, p: (r / "packed-0" / "index.json").write_text("{"), "packed-0/index.json"),
    ("score array truncated", lambda r, p: _truncate(r / "scores-0" / "scores.npy"), "scores-0/scores.npy"),
    ("score array corrupt", lambda r, p: _garble(r / "scores-1" / "scores.npy"), "scores-1/scores.npy"),
    ("score metadata missing", lambda r, p: (r / "scores-1" / "meta.json").unlink(), "scores-1/meta.json"),
    ("score shards of other tokens", lambda r, p: p.update(scores=p["scores"][::-1]), "scores-1"),
    ("score shard from another reference model", lambda r, p: _other_reference(r), "scores-0"),
    ("tokenizer other than the model's", lambda r, p: _repack(r, _other_tokenizer(r, 290)), "packed-0"),
    ("tokenizer larger than the model's vocabulary", lambda r, p: _repack(r, _other_tokenizer(r, 420)), "packed-0"),
]


@pytest.mark.parametrize("spoil, file", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_file_stops_training_before_it_starts(produced_run, spoil, file):
    root, options, paths = produced_run
    spoil(root, paths)
    before = produced(root)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        main(train_command(options, paths))
    assert file in str(err.value), str(err.value)
    assert produced(root) == before  # the earlier final model too
    assert not (root / "state").exists()  # refused before the first step


def test_bad_training_options_name_the_option(produced_run):
    root, options, paths = produced_run
    before = produced(root)
    for bad, option in (({"ratio": 1.2}, "'ratio'"), ({"ratoi": 0.6}, "ratoi"), ({"unit": "token"}, "'unit'")):
        with pytest.raises(ValueError, match=option):
            main(train_command({**options, **bad}, paths))
    with pytest.raises(SystemExit):  # argparse: "argument --options: not valid JSON"
        main(["train", "--options", "{ratio: 0.6", "--paths", json.dumps(paths)])
    assert produced(root) == before


def test_unreadable_training_state_is_named_and_training_starts_over(produced_run, caplog):
    root, options, paths = produced_run
    (root / "state" / "step-000000002").mkdir(parents=True)
    (root / "state" / "step-000000002" / "trainer.pt").write_bytes(b"PK\x03\x04 truncated zip")
    with caplog.at_level(logging.WARNING, logger="slm.train"):
        main(train_command(options, paths))
    assert f"ignoring saved state {root / 'state' / 'step-000000002'}: it cannot be read" in caplog.text
    assert json.loads((root / "run" / "final" / "train_stats.json").read_text())["steps"] == 4


def test_scoring_refuses_a_shard_of_another_tokenizer(produced_run):
    root, _, _ = produced_run
    _repack(root, _other_tokenizer(root, 290))
    before = produced(root)
    args = ["score", "--shard", str(root / "packed-0"), "--out", str(root / "s"), "--batch-size", "8"]
    with pytest.raises(ValueError, match="packed-0 does not fit model"):
        main([*args, "--model", str(root / "base"), "--device", "cpu"])
    with pytest.raises(FileNotFoundError, match="gone"):
        main([*args, "--model", str(root / "gone")])
    assert produced(root) == before


# (what is wrong, the file's bytes, text keys of the source, what the message must name)
DATA_CASES = [
    ("empty corpus", b"", {}, "corpus.jsonl"),
    ("only empty documents", b'{"text": ""}\n{"text": ""}\n', {}, "corpus.jsonl"),
    ("shorter than one sequence", b'{"text": "2 + 2 = 4"}\n', {}, "sequence_length"),
    ("not UTF-8", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', {}, "corpus.jsonl:2"),
    ("line not JSON", b'{"text": "ok"}\n{"text": \n', {}, "corpus.jsonl:2"),
    ("field that does not exist", GOOD_RECORD, {"text_field": "content"}, "text_field"),
    ("field that is not text", b'{"text": 42}\n', {}, "text_field"),
    ("template of a missing field", GOOD_RECORD, {"template": "{query}\n{response}"}, "'query'"),
    ("messages that are not a list", b'{"messages": "hi"}\n', {"messages_field": "messages"}, "messages_field"),
]


@pytest.mark.parametrize("text, keys, name", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_bad_data_stops_prepare(tmp_path, tokenizer_dir, text, keys, name):
    (tmp_path / "corpus.jsonl").write_bytes(text)
    out = tmp_path / "packed" / "shard-000"
    out.mkdir(parents=True)
    (out / "index.json").write_text("{}")  # what an earlier prepare left there
    before = produced(tmp_path)
    source = json.dumps({"source": "files", **keys})
    args = ["prepare", "--source", source, "--files", str(tmp_path / "corpus.jsonl"), "--tokenizer", str(tokenizer_dir)]
    with pytest.raises(ValueError) as err:
        main([*args, "--seq-len", "64", "--out", str(out)])
    assert name in str(err.value), str(err.value)
    assert produced(tmp_path) == before


def test_unknown_lm_eval_task(tmp_path, base_model):
    from slm.evaluate import evaluate_model

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "local_ppl.yaml").write_text(
        "task: local_ppl\ndataset_path: json\ndataset_kwargs: {data_files: {test: x.jsonl}}\n"
        "test_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list: [{metric: bits_per_byte}]\n"
    )
    before = produced(tmp_path)
    with pytest.raises(ValueError, match="local_pll"):
        evaluate_model(
            str(base_model), ["local_pll"], tmp_path / "out.json", context_length=32, include_path=tasks, device="cpu"
        )
    assert produced(tmp_path) == before


def test_tokenizer_vocabulary_below_the_schema_minimum(tmp_path, corpus_files):
    with pytest.raises(ValueError, match="vocab_size must be >= 257"):
        train_tokenizer(corpus_files, tmp_path / "tok", vocab_size=256)
    assert not (tmp_path / "tok").exists()
