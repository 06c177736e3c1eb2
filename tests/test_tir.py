"""Tool-integrated reasoning: the generated solutions, the restricted tool, the evaluation loop."""

from __future__ import annotations

import json

import pytest

from slm.data.generate import Problem, parse_steps
from slm.tir import ToolError, answer_of, evaluate_tir, fewshot_prefix, run_program, tool_output


def test_a_problems_program_computes_its_answer():
    problem = Problem("q", ((12, "+", 7, 19), (19, "-", 5, 14), (14, "*", 3, 42)), 42)
    assert problem.tool_program() == "x = 12 + 7\nx = x - 5\nx = x * 3\nprint(x)\n"
    assert run_program(problem.tool_program()) == "42"
    solution = problem.tool_solution()
    assert solution.endswith("```output\n42\n```\nThe answer is 42.") and answer_of(solution) == "42"


def test_generated_tir_data_is_correct(tmp_path):
    from slm.data.generate import generate_all

    generate_all(
        tmp_path,
        seed=3,
        hq_problems=5,
        corpus_shards=1,
        docs_per_shard=2,
        pretrain_docs=2,
        eval_problems=5,
        eval_mc_problems=5,
        eval_ppl_docs=1,
        fewshot_problems=2,
        max_operand=30,
        min_steps=1,
        max_steps=3,
        kind_weights={"math": 1.0},
        tir_problems=40,
    )
    heldout = {json.loads(line)["question"] for line in (tmp_path / "eval/arith_gen.jsonl").read_text().splitlines()}
    for line in (tmp_path / "tir.jsonl").read_text().splitlines():
        text = json.loads(line)["text"]
        question, rest = text.removeprefix("Question: ").split("\nAnswer: ```python\n", 1)
        program, after = rest.split("```\n```output\n", 1)
        output, final = after.split("\n```\n", 1)
        assert question not in heldout
        assert run_program(program) == output and final == f"The answer is {output}."


@pytest.mark.parametrize(
    "code, message",
    [
        ("import os\n", "unsupported statement Import"),
        ("x = open('f')\n", "unsupported expression"),
        ("print(y)\n", "name 'y' is not defined"),
        ("x = 2 ** 5\n", "unsupported expression"),
        ("x = 10 ** 13\n", "unsupported expression"),
        ("x = 999999 * 999999 * 999999\n", "out of range"),
        ("x = (1\n", "syntax error"),
        ("for i in range(3): print(i)\n", "unsupported statement For"),
    ],
)
def test_the_tool_refuses_anything_but_integer_arithmetic(code, message):
    with pytest.raises(ToolError, match=message):
        run_program(code)
    output, ran = tool_output(code)
    assert not ran and output.startswith("Error: ")


def test_the_tool_prints_each_value():
    assert run_program("a = 3\nb = a * -2\nprint(a)\nprint(b + 10)\n") == "3\n4"


def test_fewshot_prefix_renders_the_fewshot_file(tmp_path):
    path = tmp_path / "fewshot.jsonl"
    path.write_text(json.dumps({"question": "Q?", "solution": "2 + 3 = 5. The answer is 5.", "answer": "5"}) + "\n")
    assert (
        fewshot_prefix(path, 1)
        == "Question: Q?\nAnswer: ```python\nx = 2 + 3\nprint(x)\n```\n```output\n5\n```\nThe answer is 5.\n\n"
    )
    assert parse_steps("2 + 3 = 5.") == [(2, "+", 3, 5)]
    with pytest.raises(ValueError, match="num_fewshot 2 > 1"):
        fewshot_prefix(path, 2)


def test_evaluation_runs_a_real_model_and_scores_each_problem(base_model, tmp_path):
    problems = tmp_path / "eval.jsonl"
    problems.write_text(
        "".join(
            json.dumps({"question": f"What is {a} + 1?", "solution": f"{a} + 1 = {a + 1}.", "answer": str(a + 1)})
            + "\n"
            for a in range(5)
        )
    )
    result = evaluate_tir(
        base_model,
        problems,
        problems,
        tmp_path / "out" / "tir.json",
        max_program_tokens=8,
        max_answer_tokens=4,
        batch_size=2,
        device="cpu",
    )
    assert result["n"] == 5 and 0.0 <= result["accuracy"] <= 1.0
    written = json.loads((tmp_path / "out" / "tir.json").read_text())
    assert written["accuracy"] == result["accuracy"] and len(written["samples"]) == 5
    for sample in written["samples"]:  # the recorded output is what the tool makes of the program
        assert sample["output"] == tool_output(sample["program"])[0]


def test_a_prompt_longer_than_the_model_is_cut_from_the_left(base_model, tmp_path, caplog):
    problems = tmp_path / "eval.jsonl"
    long_question = "Tom has 3 apples. " * 60 + "How many apples does Tom have?"
    problems.write_text(json.dumps({"question": long_question, "solution": "3 + 0 = 3.", "answer": "3"}) + "\n")
    result = evaluate_tir(
        base_model, problems, problems, tmp_path / "tir.json", max_program_tokens=8, max_answer_tokens=4, device="cpu"
    )
    assert result["n"] == 1 and "cut from the left" in caplog.text
