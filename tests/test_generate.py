"""Tests for slm.data.generate (the seeded synthetic-data generator)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from slm.config import ConfigError
from slm.data.generate import (
    ANSWER_RE,
    BOILERPLATE,
    KIND_NAMES,
    MAX_MUL,
    MAX_RESULT,
    STEP_RE,
    GeneratorParams,
    generate_all,
    generate_harder_set,
    parse_steps,
)
from slm.schema import config_schema

PARAMS = dict(
    seed=7,
    hq_problems=60,
    corpus_shards=2,
    docs_per_shard=15,
    pretrain_docs=10,
    eval_problems=25,
    eval_mc_problems=25,
    eval_ppl_docs=5,
    fewshot_problems=5,
    validation_docs=8,
    tir_problems=6,
    max_operand=30,
    min_steps=2,
    max_steps=4,
    kind_weights={"math": 0.5, "noise": 0.2, "boilerplate": 0.15, "wrong_math": 0.15},
)
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "data"
    manifest = generate_all(out, **PARAMS)
    assert manifest == json.loads((out / "manifest.json").read_text())
    return out


def corpus_docs(data: Path) -> list[dict]:
    docs = []
    for i in range(PARAMS["corpus_shards"]):
        docs += read_jsonl(data / "corpus" / f"shard-{i:03d}.jsonl")
    return docs


def segments(docs: list[dict], kind: str) -> list[str]:
    """Texts of the spans of ``kind``; for wrong_math, whole segments (wrong_result spans joined in)."""
    if kind != "wrong_math":
        return [d["text"][s:e] for d in docs for s, e, k in d["spans"] if k == kind]
    out = []
    for d in docs:
        run = None
        for s, e, k in d["spans"] + [[len(d["text"]), len(d["text"]), "other"]]:
            if k in ("wrong_math", "wrong_result"):
                run = [run[0] if run else s, e]
            elif run:
                out.append(d["text"][run[0] : run[1]])
                run = None
    return out


def check_chain(steps, *, correct: bool) -> None:
    """Consecutive steps chain (a_i+1 == c_i), operands/results in range; ``correct`` checks
    every step's arithmetic."""
    assert PARAMS["min_steps"] <= len(steps) <= PARAMS["max_steps"], steps
    assert 2 <= steps[0][0] <= PARAMS["max_operand"], steps
    for i, (a, op, b, c) in enumerate(steps):
        if i:
            assert a == steps[i - 1][3], steps
        assert 0 <= c <= MAX_RESULT, steps
        if op == "*":
            assert 2 <= b <= MAX_MUL, steps
        else:
            assert 2 <= b <= PARAMS["max_operand"], steps
        if correct:
            assert OPS[op](a, b) == c, steps


def check_question_numbers(question: str, steps) -> None:
    """The numbers in the question are the start value and then each step's operand, in order."""
    assert [int(x) for x in re.findall(r"\d+", question)] == [steps[0][0]] + [s[2] for s in steps]


def test_files_and_manifest(data):
    m = json.loads((data / "manifest.json").read_text())
    expected = {
        "hq.jsonl": PARAMS["hq_problems"],
        "pretrain.jsonl": PARAMS["pretrain_docs"],
        "validation.jsonl": PARAMS["validation_docs"],
        "tir.jsonl": PARAMS["tir_problems"],
        "eval/arith_gen.jsonl": PARAMS["eval_problems"],
        "eval/arith_fewshot.jsonl": PARAMS["fewshot_problems"],
        "eval/arith_mc.jsonl": PARAMS["eval_mc_problems"],
        "eval/math_ppl.jsonl": PARAMS["eval_ppl_docs"],
        **{f"corpus/shard-{i:03d}.jsonl": PARAMS["docs_per_shard"] for i in range(PARAMS["corpus_shards"])},
    }
    assert {k: v["count"] for k, v in m["files"].items()} == expected
    for rel, info in m["files"].items():
        raw = (data / rel).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == info["sha256"]
        assert len(read_jsonl(data / rel)) == info["count"]
        assert raw.endswith(b"\n")
        raw.decode("utf-8")
    assert m["seed"] == PARAMS["seed"]
    assert {k: v for k, v in m["params"].items() if k != "kind_weights"} == {
        k: v for k, v in PARAMS.items() if k != "kind_weights"
    }
    assert m["params"]["kind_weights"] == PARAMS["kind_weights"]
    docs = corpus_docs(data)
    chars = m["corpus_chars_per_kind"]
    assert set(chars) == set(KIND_NAMES)
    assert sum(chars.values()) == sum(len(d["text"]) for d in docs)
    for kind in KIND_NAMES:
        assert chars[kind] == sum(e - s for d in docs for s, e, k in d["spans"] if k == kind)
    for kind in KIND_NAMES:
        assert chars[kind] > 0, kind
    # nothing temporary left behind
    assert not [p for p in data.rglob("*") if "tmp" in p.name]


# sha256 over the generated files of PARAMS (relative path, then bytes; sorted by path), as generated
# before the word lists moved to words.yaml: the generator's output must not change by accident.
PINNED_DIGEST = "dec1a6a659d832ebdb182df8bf944b8f5b0463ef048ebd9aaa0f1f300dfbb58b"


def test_output_is_pinned(data):
    digest = hashlib.sha256()
    for rel, raw in all_files(data).items():
        digest.update(rel.encode())
        digest.update(raw)
    assert digest.hexdigest() == PINNED_DIGEST


def test_deterministic_and_seeded(data, tmp_path):
    again = tmp_path / "again"
    generate_all(again, **PARAMS)
    assert all_files(again) == all_files(data)
    other = tmp_path / "other"
    generate_all(other, **{**PARAMS, "seed": PARAMS["seed"] + 1})
    a, b = all_files(data), all_files(other)
    for rel in (
        "hq.jsonl",
        "corpus/shard-000.jsonl",
        "pretrain.jsonl",
        "eval/arith_gen.jsonl",
        "eval/arith_mc.jsonl",
        "eval/math_ppl.jsonl",
    ):
        assert a[rel] != b[rel], rel


def test_streams_are_independent(data, tmp_path):
    """Held-out sets do not depend on the training sizes; shard i does not depend on the count."""
    out = tmp_path / "bigger"
    generate_all(
        out,
        **{**PARAMS, "hq_problems": 80, "corpus_shards": 3, "pretrain_docs": 12, "validation_docs": 10},
    )
    a, b = all_files(data), all_files(out)
    for rel in (
        "eval/arith_gen.jsonl",
        "eval/arith_fewshot.jsonl",
        "eval/arith_mc.jsonl",
        "eval/math_ppl.jsonl",
        "corpus/shard-000.jsonl",
        "corpus/shard-001.jsonl",
    ):
        assert a[rel] == b[rel], rel
    assert b["hq.jsonl"].startswith(a["hq.jsonl"])
    assert b["validation.jsonl"].startswith(a["validation.jsonl"])


def test_validation_documents_are_corpus_like_but_not_corpus_documents(data):
    validation = read_jsonl(data / "validation.jsonl")
    corpus_texts = {d["text"] for d in corpus_docs(data)}
    assert not corpus_texts & {d["text"] for d in validation}
    assert {k for d in validation for _, _, k in d["spans"]} >= {"math", "noise"}


def test_hq_problems_are_correct(data):
    rows = read_jsonl(data / "hq.jsonl")
    questions = set()
    for row in rows:
        assert set(row) == {"text"}
        m = re.fullmatch(r"Question: (.+)\nAnswer: (.+)", row["text"])
        assert m, row
        question, solution = m.groups()
        questions.add(question)
        steps = parse_steps(solution)
        check_chain(steps, correct=True)
        check_question_numbers(question, steps)
        assert solution == " ".join(f"{a} {op} {b} = {c}." for a, op, b, c in steps) + (
            f" The answer is {steps[-1][3]}."
        )
    assert len(questions) == len(rows)  # no duplicates
    assert len({re.sub(r"\d+", "N", q) for q in questions}) > len(rows) // 2  # varied wording


def test_corpus_spans(data):
    docs = corpus_docs(data) + read_jsonl(data / "pretrain.jsonl")
    for doc in docs:
        assert set(doc) == {"text", "spans"}
        text, spans = doc["text"], doc["spans"]
        assert text.isascii()
        pos = 0
        for i, (s, e, kind) in enumerate(spans):
            assert s == pos and e > s, spans
            assert kind in KIND_NAMES
            if i:
                assert kind != spans[i - 1][2], "adjacent spans of one kind should be merged"
            pos = e
        assert pos == len(text)
    n_segments = [sum(k != "other" for _, _, k in d["spans"]) for d in docs]
    assert max(n_segments) > 3


def test_corpus_math_is_correct_and_wrong_math_is_wrong(data):
    docs = corpus_docs(data) + read_jsonl(data / "pretrain.jsonl")
    math, wrong = segments(docs, "math"), segments(docs, "wrong_math")
    assert len(math) > 20 and len(wrong) > 5
    formats = set()
    for seg in math:
        steps = parse_steps(seg)
        check_chain(steps, correct=True)
        assert [int(x) for x in ANSWER_RE.findall(seg)] == [steps[-1][3]], seg
        formats.add(seg.split(" ", 1)[0])
    assert {"Question:", "Problem:", "Q:", "Exercise"} <= formats
    assert any(seg.startswith(("If you", "Starting from", "Take ")) for seg in math)  # inline prose
    for seg in wrong:
        steps = parse_steps(seg)
        check_chain(steps, correct=False)
        bad = [s for s in steps if OPS[s[1]](s[0], s[2]) != s[3]]
        assert bad, seg
        assert [int(x) for x in ANSWER_RE.findall(seg)] == [steps[-1][3]], seg
        # the correct result of the chain (recomputed from the start) differs from the stated one
        cur = steps[0][0]
        for _, op, b, _ in steps:
            cur = OPS[op](cur, b)
        assert cur != steps[-1][3], seg


def test_wrong_result_spans_are_exactly_the_wrong_numbers(data):
    docs = corpus_docs(data)
    n = 0
    for doc in docs:
        text = doc["text"]
        for s, e, kind in doc["spans"]:
            if kind != "wrong_result":
                continue
            n += 1
            a, op, b = re.search(r"(\d+) ([+*-]) (\d+) = $", text[:s]).groups()
            c = text[s:e]
            assert c.isdigit() and not text[e].isdigit()
            assert OPS[op](int(a), int(b)) != int(c)
    assert n == len(segments(docs, "wrong_math"))


def test_noise_and_boilerplate(data):
    docs = corpus_docs(data)
    boiler = segments(docs, "boilerplate")
    assert boiler and all(b in BOILERPLATE for b in boiler)
    assert 3 <= len(BOILERPLATE) <= 6
    noise = segments(docs, "noise")
    assert noise and all(not STEP_RE.search(n) and re.search(r"\d", n) for n in noise)
    assert len(set(noise)) == len(noise)  # unpredictable: never repeated
    for seg in segments(docs, "other"):
        assert not STEP_RE.search(seg)


def heldout_questions(data: Path) -> dict[str, list[str]]:
    return {
        name: [r["question"] for r in read_jsonl(data / "eval" / f"{name}.jsonl")]
        for name in ("arith_gen", "arith_fewshot", "arith_mc")
    } | {
        "math_ppl": [
            q for r in read_jsonl(data / "eval" / "math_ppl.jsonl") for q in re.findall(r"Question: (.+)\n", r["text"])
        ]
    }


def test_eval_sets(data):
    for name in ("arith_gen", "arith_fewshot"):
        for row in read_jsonl(data / "eval" / f"{name}.jsonl"):
            assert set(row) == {"question", "solution", "answer"}
            assert not row["question"].startswith("Question:")
            steps = parse_steps(row["solution"])
            check_chain(steps, correct=True)
            check_question_numbers(row["question"], steps)
            assert row["answer"] == str(steps[-1][3])
            assert row["solution"].endswith(f"The answer is {row['answer']}.")
    labels = []
    for row in read_jsonl(data / "eval" / "arith_mc.jsonl"):
        assert {"question", "choices", "label"} <= set(row)
        steps = parse_steps(row["solution"])
        check_chain(steps, correct=True)
        check_question_numbers(row["question"], steps)
        choices = row["choices"]
        assert len(choices) == 4 and len(set(choices)) == 4
        assert all(c.isdigit() for c in choices)
        assert choices[row["label"]] == row["answer"] == str(steps[-1][3])
        labels.append(row["label"])
    assert len(set(labels)) > 1  # shuffled
    for row in read_jsonl(data / "eval" / "math_ppl.jsonl"):
        problems = row["text"].split("\n\n")
        assert len(problems) >= 2
        for p in problems:
            m = re.fullmatch(r"Question: (.+)\nAnswer: (.+)", p)
            assert m
            steps = parse_steps(m.group(2))
            check_chain(steps, correct=True)
            check_question_numbers(m.group(1), steps)


def test_heldout_disjoint_from_training(data):
    held = heldout_questions(data)
    all_held = [q for qs in held.values() for q in qs]
    assert len(all_held) == len(set(all_held)), "held-out sets overlap"
    training = "\n".join(
        [r["text"] for r in read_jsonl(data / "hq.jsonl")]
        + [d["text"] for d in corpus_docs(data)]
        + [d["text"] for d in read_jsonl(data / "pretrain.jsonl")]
    )
    leaked = [q for q in all_held if q in training]
    assert not leaked


@pytest.mark.parametrize(
    "harder",
    [
        {"problems": 30, "min_steps": 3, "max_steps": 6, "max_operand": 30},  # longer than training's 2-4
        {"problems": 30, "min_steps": 2, "max_steps": 4, "max_operand": 60},  # operands above training's 30
    ],
)
def test_a_harder_set_lies_outside_what_training_draws(data, tmp_path, harder):
    out = tmp_path / "harder.jsonl"
    assert generate_harder_set(out, "x", harder, **PARAMS)["count"] == 30
    rows = read_jsonl(out)
    assert all(set(row) == {"question", "solution", "answer"} for row in rows)
    for row in rows:
        steps = parse_steps(row["solution"])
        check_question_numbers(row["question"], steps)
        assert row["answer"] == str(steps[-1][3]) and all(OPS[op](a, b) == c for a, op, b, c in steps)
        assert harder["min_steps"] <= len(steps) <= harder["max_steps"]
        # more steps than any training problem, or a start value or operand of + / - above any
        operands = [steps[0][0]] + [b for _, op, b, _ in steps if op != "*"]
        assert len(steps) > PARAMS["max_steps"] or max(operands) > PARAMS["max_operand"], steps
    questions = [row["question"] for row in rows]
    assert len(set(questions)) == len(questions)
    training = "\n".join(
        [r["text"] for r in read_jsonl(data / "hq.jsonl")]
        + [r["text"] for r in read_jsonl(data / "tir.jsonl")]
        + [d["text"] for d in corpus_docs(data)]
        + [d["text"] for d in read_jsonl(data / "pretrain.jsonl")]
    )
    assert not [q for q in questions if q in training]
    assert not set(questions) & {q for qs in heldout_questions(data).values() for q in qs}
    # its own stream: the same call gives the same bytes, another name other problems
    again, other = tmp_path / "again.jsonl", tmp_path / "other.jsonl"
    generate_harder_set(again, "x", harder, **PARAMS)
    generate_harder_set(other, "y", harder, **PARAMS)
    assert again.read_bytes() == out.read_bytes() != other.read_bytes()


def test_kind_weights_select_kinds(tmp_path):
    small = {
        **PARAMS,
        "hq_problems": 2,
        "corpus_shards": 1,
        "docs_per_shard": 5,
        "pretrain_docs": 2,
        "eval_problems": 2,
        "eval_mc_problems": 2,
        "eval_ppl_docs": 1,
        "fewshot_problems": 1,
    }
    m = generate_all(tmp_path / "a", **{**small, "kind_weights": {"math": 1.0, "noise": 0}})
    c = m["corpus_chars_per_kind"]
    assert c["math"] > 0 and c["noise"] == c["boilerplate"] == c["wrong_math"] == 0
    m = generate_all(tmp_path / "b", **{**small, "kind_weights": {"noise": 2, "boilerplate": 1}})
    c = m["corpus_chars_per_kind"]
    assert c["noise"] > 0 and c["boilerplate"] > 0 and c["math"] == c["wrong_math"] == 0


@pytest.mark.parametrize(
    ("override", "param"),
    [
        ({"hq_problems": 0}, "hq_problems"),
        ({"corpus_shards": -1}, "corpus_shards"),
        ({"docs_per_shard": 0}, "docs_per_shard"),
        ({"pretrain_docs": 0}, "pretrain_docs"),
        ({"eval_problems": 0}, "eval_problems"),
        ({"eval_mc_problems": 0}, "eval_mc_problems"),
        ({"eval_ppl_docs": 0}, "eval_ppl_docs"),
        ({"fewshot_problems": 0}, "fewshot_problems"),
        ({"docs_per_shard": 2.5}, "docs_per_shard"),
        ({"max_operand": 2}, "max_operand"),  # the schema's minimum is 3
        ({"max_operand": 500}, "max_operand"),  # results must stay within 0..999
        ({"min_steps": 0}, "min_steps"),
        ({"min_steps": 5, "max_steps": 4}, "min_steps"),
        ({"seed": "abc"}, "seed"),
        ({"kind_weights": {"math": -1.0, "noise": 2.0}}, "kind_weights"),
        ({"kind_weights": {"math": 0.0, "noise": 0.0}}, "kind_weights"),
        ({"kind_weights": {"maths": 1.0}}, "kind_weights"),
        ({"kind_weights": {}}, "kind_weights"),
        ({"hq_problemz": 5}, "hq_problemz"),
    ],
)
def test_argument_validation(tmp_path, override, param):
    """The config schema's ranges and slm.config's consistency checks, with the config key named."""
    with pytest.raises(ConfigError, match=rf"config key '(data\.generator\.)?[a-z_]*'?.*{param}"):
        generate_all(tmp_path / "x", **{**PARAMS, **override})
    assert not (tmp_path / "x").exists()


def test_schema_defaults_fill_the_optional_sizes():
    params = GeneratorParams.from_spec(
        {k: v for k, v in PARAMS.items() if k not in ("validation_docs", "tir_problems")}
    )
    schema = config_schema()["properties"]["data"]["properties"]["generator"]["properties"]
    assert params.validation_docs == schema["validation_docs"]["default"]
    assert params.tir_problems == schema["tir_problems"]["default"]
