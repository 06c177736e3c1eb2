"""Tests for slm.data.eval_tasks: lm-eval 0.4.13 loads and scores the generated task YAMLs."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from slm.data.eval_tasks import (
    FLEXIBLE_FILTER,
    GEN_FILTER,
    TASKS,
    build_task_configs,
    write_task_yamls,
)
from slm.data.generate import generate_all, parse_steps

N_GEN, N_MC, N_PPL, N_FEWSHOT = 7, 6, 3, 4


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module", autouse=True)
def datasets_cache(tmp_path_factory):
    """Keep the `json` builder's Arrow cache of the tmp files out of the user's HF cache."""
    import datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            datasets.config,
            "HF_DATASETS_CACHE",
            tmp_path_factory.mktemp("hf_datasets_cache"),
        )
        yield


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaltasks")
    generate_all(
        root / "data",
        seed=11,
        hq_problems=60,
        corpus_shards=1,
        docs_per_shard=4,
        pretrain_docs=2,
        eval_problems=N_GEN,
        eval_mc_problems=N_MC,
        eval_ppl_docs=N_PPL,
        fewshot_problems=N_FEWSHOT,
        max_operand=20,
        min_steps=2,
        max_steps=3,
        kind_weights={"math": 1.0},
    )
    eval_dir = root / "data" / "eval"
    paths = write_task_yamls(eval_dir, root / "tasks", num_fewshot=3, max_gen_toks=24)
    return {
        "root": root,
        "eval_dir": eval_dir,
        "tasks_dir": root / "tasks",
        "paths": paths,
    }


@pytest.fixture(scope="module")
def task_dict(env):
    from lm_eval.tasks import TaskManager, get_task_dict

    tm = TaskManager(include_path=str(env["tasks_dir"]), include_defaults=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return get_task_dict(list(TASKS), tm)


def test_yaml_files(env):
    assert [p.name for p in env["paths"]] == [f"{t}.yaml" for t in TASKS]
    configs = build_task_configs(
        env["eval_dir"], num_fewshot=3, max_gen_toks=24, step_file=env["tasks_dir"] / "arith_step.jsonl"
    )
    for path in env["paths"]:
        cfg = yaml.safe_load(path.read_text())
        assert cfg == configs[path.stem]
        assert cfg["task"] == path.stem and cfg["dataset_path"] == "json"
        for f in cfg["dataset_kwargs"]["data_files"].values():
            assert Path(f).is_absolute() and Path(f).is_file()
    gen = yaml.safe_load(env["paths"][0].read_text())
    assert gen["num_fewshot"] == 3 and gen["generation_kwargs"]["max_gen_toks"] == 24
    assert gen["generation_kwargs"]["until"] == ["\n\n", "Question:"]
    assert [f["name"] for f in gen["filter_list"]] == [GEN_FILTER, FLEXIBLE_FILTER]
    assert GEN_FILTER == "strict-match"  # the key config/config.yaml's evaluation.metrics names
    leftovers = [p.name for p in env["tasks_dir"].iterdir() if p.suffix != ".yaml"]
    assert leftovers == ["arith_step.jsonl"]  # no temp files left


def test_tasks_load_with_prompts(env, task_dict):
    assert set(task_dict) == set(TASKS)
    eval_dir = env["eval_dir"]

    gen = task_dict["arith_gen"]
    docs = list(gen.eval_docs)
    rows = read_jsonl(eval_dir / "arith_gen.jsonl")
    assert len(docs) == N_GEN
    assert gen.doc_to_text(docs[0]) == f"Question: {rows[0]['question']}\nAnswer:"
    assert gen.doc_to_target(docs[0]) == rows[0]["answer"]
    ctx = gen.fewshot_context(docs[0], 3)
    shots = read_jsonl(eval_dir / "arith_fewshot.jsonl")
    blocks = ctx.split("\n\n")
    assert len(blocks) == 4
    assert blocks[-1] == f"Question: {rows[0]['question']}\nAnswer:"
    shown = {s["question"]: s["solution"] for s in shots}
    for block in blocks[:3]:
        m = re.fullmatch(r"Question: (.+)\nAnswer: (.+)", block)
        assert m and shown[m.group(1)] == m.group(2)  # worked solution in the few-shot examples

    mc = task_dict["arith_mc"]
    docs = list(mc.eval_docs)
    rows = read_jsonl(eval_dir / "arith_mc.jsonl")
    assert len(docs) == N_MC
    assert mc.fewshot_context(docs[0], 0) == f"Question: {rows[0]['question']}\nAnswer: The answer is"
    assert mc.doc_to_choice(docs[0]) == rows[0]["choices"]
    assert mc.doc_to_target(docs[0]) == rows[0]["label"]
    reqs = mc.construct_requests(docs[0], mc.fewshot_context(docs[0], 0))
    assert [r.arguments[1] for r in reqs] == [" " + c for c in rows[0]["choices"]]

    ppl = task_dict["math_ppl"]
    docs = list(ppl.eval_docs)
    rows = read_jsonl(eval_dir / "math_ppl.jsonl")
    assert len(docs) == N_PPL
    assert ppl.doc_to_target(docs[0]) == rows[0]["text"]


def test_lm_eval_validate_cli(env):
    exe = Path(sys.executable).parent / "lm-eval"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lm_eval"]
    proc = subprocess.run(
        [
            *cmd,
            "validate",
            "--tasks",
            ",".join(TASKS),
            "--include_path",
            str(env["tasks_dir"]),
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All tasks found" in proc.stdout


class OracleLM:
    """An lm-eval LM that answers from the held-out files. generate_until: the worked solution for
    questions in ``right``; the solution without its "The answer is N." sentence for questions in
    ``partial``; a wrong first "The answer is" otherwise. loglikelihood prefers the correct MC answer;
    loglikelihood_rolling gives exactly 1 bit per byte."""

    def __new__(cls, eval_dir: Path, right: set[str], partial: set[str] = frozenset()):
        from lm_eval.api.model import LM

        gen = {r["question"]: r for r in read_jsonl(eval_dir / "arith_gen.jsonl")}
        mc = {r["question"]: r for r in read_jsonl(eval_dir / "arith_mc.jsonl")}

        def question(ctx: str) -> str:
            return ctx.rsplit("Question: ", 1)[1].split("\nAnswer:", 1)[0]

        def generate(row: dict) -> str:
            if row["question"] in right:
                return " " + row["solution"]
            if row["question"] in partial:
                return " " + row["solution"].split(" The answer is")[0]
            # strict takes the first "The answer is N" (wrong), flexible the last number (right)
            n = int(row["answer"])
            return f" {n + 1} - 1 = {n}. The answer is {n + 1}. No: The answer is {n}"

        class _Oracle(LM):
            def generate_until(self, requests, disable_tqdm=False):
                return [generate(gen[question(r.args[0])]) for r in requests]

            def loglikelihood(self, requests, disable_tqdm=False):
                def score(r):
                    context, target = r.args
                    if context.endswith("="):  # arith_step: greedy exactly on the true result
                        a, op, b = context.rsplit("\n", 1)[1].split(". ")[-1].split()[-4:-1]
                        true = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
                        return (-0.5, target == f" {true}")
                    good = target.strip() == mc[question(context)]["answer"]
                    return (-1.0 if good else -9.0, False)

                return [score(r) for r in requests]

            def loglikelihood_rolling(self, requests, disable_tqdm=False):
                return [-len(r.args[0].encode("utf-8")) * math.log(2) for r in requests]

        return _Oracle()


def test_step_documents_cut_each_solution_before_each_result(env):
    from slm.data.eval_tasks import step_documents

    rows = read_jsonl(env["eval_dir"] / "arith_gen.jsonl")
    docs = step_documents(env["eval_dir"])
    assert len(docs) == sum(len(parse_steps(row["solution"])) for row in rows)
    by_question = {row["question"]: row for row in rows}
    for doc in docs:
        question, prefix = doc["context"].removeprefix("Question: ").split("\nAnswer: ")
        solution = by_question[question]["solution"]
        assert (prefix + doc["target"]) == solution[: len(prefix) + len(doc["target"])]
        a, op, b, c = parse_steps(prefix + doc["target"])[-1]
        assert doc["target"] == f" {c}" and prefix.endswith(f"{a} {op} {b} =")


def test_scoring_with_oracle(env):
    """exact_match compares the number after the first 'The answer is' (strict) / the last number
    (flexible) with the answer field; MC and perplexity metrics see the oracle's scores.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    rows = read_jsonl(env["eval_dir"] / "arith_gen.jsonl")
    right = {r["question"] for r in rows[:3]}
    partial = {r["question"] for r in rows[3:5]}
    tm = TaskManager(include_path=str(env["tasks_dir"]), include_defaults=False)
    res = lm_eval.simple_evaluate(
        model=OracleLM(env["eval_dir"], right, partial),
        tasks=list(TASKS),
        task_manager=tm,
        bootstrap_iters=0,
        log_samples=True,
    )
    r = res["results"]
    assert r["arith_gen"][f"exact_match,{GEN_FILTER}"] == pytest.approx(3 / N_GEN)
    assert r["arith_gen"][f"exact_match,{FLEXIBLE_FILTER}"] == 1.0
    assert r["arith_mc"]["acc,none"] == 1.0 and r["arith_mc"]["acc_norm,none"] == 1.0
    assert r["math_ppl"]["bits_per_byte,none"] == pytest.approx(1.0)
    assert r["math_ppl"]["byte_perplexity,none"] == pytest.approx(2.0)
    n_steps = sum(len(parse_steps(row["solution"])) for row in rows)
    assert len(res["samples"]["arith_step"]) == n_steps
    assert r["arith_step"]["acc,none"] == 1.0
    strict = [s for s in res["samples"]["arith_gen"] if s["filter"] == GEN_FILTER]
    assert sorted(s["target"] for s in strict) == sorted(r["answer"] for r in rows)
    invalid = [s["filtered_resps"][0] for s in strict if s["doc"]["question"] in partial]
    assert invalid == ["[invalid]"] * 2


@pytest.fixture(scope="module")
def tiny_model(env):
    from slm.data.tokenizer import train_tokenizer
    from slm.model import init_model

    tokenizer_dir = env["root"] / "tokenizer"
    data = env["root"] / "data"
    train_tokenizer(
        [data / "hq.jsonl", data / "corpus" / "shard-000.jsonl"],
        tokenizer_dir,
        vocab_size=512,
        model_max_length=512,
    )
    model_dir = env["root"] / "model"
    init_model(
        tokenizer_dir,
        model_dir,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
        seed=0,
    )
    return model_dir


def test_simple_evaluate_tiny_llama(env, tiny_model):
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(env["tasks_dir"]), include_defaults=False)
    res = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_model},dtype=float32",
        tasks=list(TASKS),
        task_manager=tm,
        limit=5,
        device="cpu",
        batch_size=4,
        bootstrap_iters=0,
    )
    r = res["results"]
    for flt in (GEN_FILTER, FLEXIBLE_FILTER):
        assert 0.0 <= r["arith_gen"][f"exact_match,{flt}"] <= 1.0
    for key in ("acc,none", "acc_norm,none"):
        assert 0.0 <= r["arith_mc"][key] <= 1.0
    for key in ("word_perplexity,none", "byte_perplexity,none"):
        assert math.isfinite(r["math_ppl"][key]) and r["math_ppl"][key] > 1.0
    assert math.isfinite(r["math_ppl"]["bits_per_byte,none"]) and r["math_ppl"]["bits_per_byte,none"] > 0
    assert res["configs"]["arith_gen"]["num_fewshot"] == 3
    assert res["configs"]["arith_mc"]["num_fewshot"] == 0


def test_errors(env, tmp_path):
    with pytest.raises(FileNotFoundError, match="arith_gen.jsonl"):
        write_task_yamls(tmp_path / "nowhere", tmp_path / "tasks")
    with pytest.raises(ValueError, match="num_fewshot"):
        write_task_yamls(env["eval_dir"], tmp_path / "tasks", num_fewshot=N_FEWSHOT + 1)
    with pytest.raises(ValueError, match="max_gen_toks"):
        write_task_yamls(env["eval_dir"], tmp_path / "tasks", max_gen_toks=0)
    partial = tmp_path / "partial"
    shutil.copytree(env["eval_dir"], partial)
    (partial / "math_ppl.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="math_ppl.jsonl"):
        write_task_yamls(partial, tmp_path / "tasks")
    assert not (tmp_path / "tasks").exists()


def test_zero_shot_yaml(env, tmp_path):
    from lm_eval.tasks import TaskManager, get_task_dict

    write_task_yamls(env["eval_dir"], tmp_path / "t0", num_fewshot=0)
    tm = TaskManager(include_path=str(tmp_path / "t0"), include_defaults=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        gen = get_task_dict(["arith_gen"], tm)["arith_gen"]
    doc = list(gen.eval_docs)[0]
    assert gen.fewshot_context(doc, 0) == f"Question: {doc['question']}\nAnswer:"


def test_num_fewshot_override(env):
    """lm-eval 0.4.13: an explicit num_fewshot overrides the YAML value, except where the YAML
    says 0 (arith_mc, math_ppl stay zero-shot)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(env["tasks_dir"]), include_defaults=False)
    res = lm_eval.simple_evaluate(
        model=OracleLM(env["eval_dir"], set()),
        tasks=list(TASKS),
        task_manager=tm,
        num_fewshot=1,
        limit=2,
        bootstrap_iters=0,
        log_samples=True,
    )
    assert res["configs"]["arith_gen"]["num_fewshot"] == 1
    assert res["configs"]["arith_mc"]["num_fewshot"] == 0
    assert res["configs"]["math_ppl"]["num_fewshot"] == 0
    prompt = res["samples"]["arith_gen"][0]["arguments"][0][0]
    assert prompt.count("Question: ") == 2
