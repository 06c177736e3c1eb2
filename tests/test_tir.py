"""Tool-integrated reasoning: the generated solutions, the restricted tool, the evaluation loop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from slm.data.generate import Problem, parse_steps
from slm.evaluate import ContextLengthError
from slm.intervals import bootstrap_interval
from slm.tir import (
    ERRORS,
    ToolError,
    answer_of,
    evaluate_tir,
    fewshot_prefix,
    program_error,
    replicate_values,
    run_program,
    tir_curve,
    tir_table,
    tool_output,
)

CONTEXT = 128  # the conftest base model's max_position_embeddings


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
        context_length=CONTEXT,
    )
    assert result["n"] == 5 and 0.0 <= result["accuracy"] <= 1.0
    written = json.loads((tmp_path / "out" / "tir.json").read_text())
    assert written["accuracy"] == result["accuracy"] and len(written["samples"]) == 5
    assert written["accuracy"] == sum(s["correct"] for s in written["samples"]) / 5
    assert sum(written["errors"].values()) == pytest.approx(1.0) and set(written["errors"]) == set(ERRORS)
    problem_list = [json.loads(line) for line in problems.read_text().splitlines()]
    for sample, problem in zip(written["samples"], problem_list):  # every problem kept, in order
        assert sample["question"] == problem["question"] and sample["gold"] == problem["answer"]
        # the recorded output is what the tool makes of the program; the error is recomputable
        assert (sample["output"], sample["tool_ran"]) == tool_output(sample["program"])
        assert sample["error"] == program_error(
            problem, sample["program"], sample["tool_ran"], sample["output"], sample["predicted"]
        )


def test_a_prompt_longer_than_the_trained_length_is_refused_before_any_generation(base_model, tmp_path):
    problems = tmp_path / "eval.jsonl"
    long_question = "Tom has 3 apples. " * 60 + "How many apples does Tom have?"
    problems.write_text(json.dumps({"question": long_question, "solution": "3 + 0 = 3.", "answer": "3"}) + "\n")
    with pytest.raises(ContextLengthError, match=r"program prompt of \d+ tokens \+ 12 new tokens exceeds the 128"):
        evaluate_tir(
            base_model,
            problems,
            problems,
            tmp_path / "tir.json",
            max_program_tokens=8,
            max_answer_tokens=4,
            device="cpu",
            context_length=CONTEXT,
        )
    assert not (tmp_path / "tir.json").exists()


PROBLEM = {
    "question": "Tom has 3 apples. He buys 4 more. Then the number doubles: 2 times as many. How many now?",
    "solution": "3 + 4 = 7. 7 * 2 = 14. The answer is 14.",
    "answer": "14",
}


@pytest.mark.parametrize(
    "program, answer, error",
    [
        ("x = 3 + 4\nx = x * 2\nprint(x)\n", "14", "correct"),
        ("x = 4 + 3\nx = x * 2\nprint(x)\n", "14", "correct"),  # another way to the right number
        ("x = 3 + 4\nx = x * 2\nprint(x)\n", "15", "answer line"),
        ("x = 3 +\nprint(x)\n", "7", "tool error"),
        ("y = 3 + 4\nprint(y)\n", "7", "other program"),
        ("x = 3 + 4\nprint(x)\n", "7", "steps"),
        ("x = 3 + 4\nx = x + 2\nprint(x)\n", "9", "operator"),
        ("x = 3 + 4\nx = x * 3\nprint(x)\n", "21", "operand from the question"),
        ("x = 3 + 4\nx = x * 5\nprint(x)\n", "35", "operand not in the question"),
        ("x = 3 + 4\nx = 7 * 3\nprint(x)\n", "21", "operand not in the question"),  # x expected
        ("x = 3 + 4\nx = x - 3\nprint(x)\n", "4", "operator and operand"),
    ],
)
def test_program_error_says_where_a_solution_went_wrong(program, answer, error):
    output, ran = tool_output(program)
    assert program_error(PROBLEM, program, ran, output, answer_of(f"The answer is {answer}.")) == error


def test_table2_averages_fine_tuning_seeds_and_pairs_the_delta_by_seed(tmp_path):
    def evaluation(model, seed, correct, ran):
        errors = {e: 0.0 for e in ERRORS}
        errors["correct"], errors["tool error"] = correct / 4, (4 - correct) / 4
        # the first `correct` of the 4 problems solved
        samples = [{"question": f"q{i}", "correct": i < correct} for i in range(4)]
        path = tmp_path / f"{model}-{seed}.json"
        record = {"n": 4, "accuracy": correct / 4, "tool_ran": ran, "errors": errors, "samples": samples}
        path.write_text(json.dumps(record))
        return {"pretraining_seed": None, "seed": seed, "eval_json": str(path)}

    correct = {"clm": [4, 2], "slm": [1, 3], "base": [0, 1]}
    evals = [(m, [evaluation(m, s, c, 1.0) for s, c in zip((0, 1), counts)]) for m, counts in correct.items()]
    table = tir_table(evals, tmp_path / "table2", delta=["slm", "clm"])
    ours = table[table["Source"] == "this run"].set_index("Model")
    # the models in the given order (the config's), then SLM − CLM
    assert list(ours.index[:3]) == [f"{m} + TIR fine-tuning" for m in correct]
    assert ours.loc["clm + TIR fine-tuning", "arith_tir (%)"] == 75.0
    assert ours.loc["slm + TIR fine-tuning", "per seed"] == "25.0 / 75.0"
    # SLM − CLM per seed: 25 - 100 and 75 - 50
    delta = next(i for i in ours.index if i not in {f"{m} + TIR fine-tuning" for m in correct})
    assert ours.loc[delta, "per seed"] == "-75.0 / 25.0" and ours.loc[delta, "arith_tir (%)"] == -25.0
    # (95% over seeds): Student's t over the per-seed accuracies; paired per-seed differences for SLM − CLM;
    # cut to what an accuracy (0, 100) or a difference of two (-100, 100) can be
    for row, values, (floor, ceiling) in (
        ("clm + TIR fine-tuning", [100.0, 50.0], (0, 100)),
        (delta, [-75.0, 25.0], (-100, 100)),
    ):
        low, high = stats.t.interval(0.95, 1, loc=np.mean(values), scale=stats.sem(values))
        assert low < floor and high > ceiling  # two seeds: the t interval alone runs past both ends
        assert ours.loc[row, "(95% over seeds)"] == f"({floor:.1f}, {ceiling:.1f})"
    # [95% over problems]: the bootstrap of each problem's correctness averaged over the seeds; clm solved
    # problems 0-1 in both seeds and 2-3 in one, slm problem 0 in both and 1-2 in one: paired differences
    # 0, -50, 0, -50 (%), so every resample lies in [-50, 0]
    low, high = (float(x.strip("[]")) for x in ours.loc[delta, "[95% over problems]"].split(", "))
    assert -50.0 <= low < high <= 0.0
    assert (low, high) == tuple(round(x, 1) for x in bootstrap_interval([np.array([0.0, -50.0, 0.0, -50.0])]))
    # base solved problem 0 in one of its two seeds
    low, high = bootstrap_interval([np.array([50.0, 0.0, 0.0, 0.0])])
    assert ours.loc["base + TIR fine-tuning", "[95% over problems]"] == f"[{low:.1f}, {high:.1f}]"
    errors = pd.read_csv(tmp_path / "table2_errors.csv", index_col=0)
    assert errors.loc["base + TIR fine-tuning", "correct"] == 12.5
    assert errors.loc["base + TIR fine-tuning", "tool error"] == 87.5
    with pytest.raises(ValueError, match="do not pair fine-tuning by fine-tuning"):
        tir_table([("clm", evals[0][1][:1]), ("slm", evals[1][1])], tmp_path / "bad", delta=["slm", "clm"])
    # the same fine-tunings on another problem set (a harder set's task): its own column and files
    harder = tir_table(evals, tmp_path / "table2_longer", delta=["slm", "clm"], task="arith_tir_longer")
    assert "arith_tir (%)" not in harder.columns
    assert harder.set_index("Model").loc["clm + TIR fine-tuning", "arith_tir_longer (%)"] == 75.0
    assert (tmp_path / "table2_longer_errors.csv").exists()


def test_table2_interval_is_over_pretraining_seeds_when_a_run_has_several(tmp_path):
    """Fine-tunings of one pretrained model share its pretraining draw: with several pretraining seeds
    the interval over seeds is Student's t over each pretraining seed's mean, not over every fine-tuning;
    the difference pairs fine-tunings in order and is grouped the same way."""
    units = [{"pretraining_seed": p, "seed": s} for p in (7, 8) for s in (1, 2)]
    assert replicate_values([10.0, 30.0, 50.0, 90.0], units) == [20.0, 70.0]
    control = [{"pretraining_seed": None, "seed": s} for s in (1, 2, 3)]
    assert replicate_values([1.0, 2.0, 4.0], control) == [1.0, 2.0, 4.0]  # one pretrained model
    correct = {"clm": [4, 4, 2, 2], "slm": [1, 3, 4, 4]}
    evals = []
    for model, counts in correct.items():
        own = []
        for unit, count in zip(units, counts):
            path = tmp_path / f"{model}-{unit['pretraining_seed']}-{unit['seed']}.json"
            samples = [{"question": f"q{i}", "correct": i < count} for i in range(4)]
            errors = {e: 0.0 for e in ERRORS}
            record = {"n": 4, "accuracy": count / 4, "tool_ran": 1.0, "errors": errors, "samples": samples}
            path.write_text(json.dumps(record))
            own.append({**unit, "eval_json": str(path)})
        evals.append((model, own))
    table = tir_table(evals, tmp_path / "table2", delta=["slm", "clm"])
    ours = table[table["Source"] == "this run"].set_index("Model")
    delta = ours.index[2]
    assert ours.loc["slm + TIR fine-tuning", "per seed"] == "25.0 / 75.0 / 100.0 / 100.0"
    assert ours.loc[delta, "per seed"] == "-75.0 / -25.0 / 50.0 / 50.0"
    for row, means in (("slm + TIR fine-tuning", [50.0, 100.0]), (delta, [-50.0, 50.0])):
        low, high = stats.t.interval(0.95, 1, loc=np.mean(means), scale=stats.sem(means))
        bounds = (0.0, 100.0) if row != delta else (-100.0, 100.0)
        expected = f"({max(low, bounds[0]):.1f}, {min(high, bounds[1]):.1f})"
        assert ours.loc[row, "(95% over seeds)"] == expected
    provenance = (tmp_path / "table2.md").read_text()
    assert "slm: pretraining seeds 7, 8 x fine-tuning seeds 1, 2" in provenance
    # the curve groups the same way, beside a control fine-tuned from one model
    points = [{**u, "model": m, "point": "final", "model_dir": str(tmp_path)} for m, own in evals for u in own]
    points += [
        {**u, "model": "base", "point": "final", "model_dir": str(tmp_path), "eval_json": points[0]["eval_json"]}
        for u in control
    ]
    (tmp_path / "train_stats.json").write_text(json.dumps({"tokens_seen": 100}))
    long = tir_curve(points, tmp_path / "curve")
    assert list(long["pretraining_seed"].fillna(0)) == [7, 7, 8, 8] * 2 + [0, 0, 0]
    md = (tmp_path / "curve.md").read_text()
    slm_row = next([c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if "| slm " in line)
    assert slm_row[5] == ours.loc["slm + TIR fine-tuning", "(95% over seeds)"]  # over 2 means, not 4 values


def test_table2_curve_has_each_seed_its_mean_interval_and_spread_at_every_point(tmp_path):
    # accuracy (%) per model, point and seed: base still climbing and unsteady, clm flat and steady
    accuracy = {
        ("base", "tokens-100"): {1: 10.0, 2: 40.0},
        ("base", "final"): {1: 50.0, 2: 90.0},
        ("clm", "tokens-100"): {1: 95.0, 2: 97.5},
        ("clm", "final"): {1: 97.5, 2: 97.5},
    }
    tokens = {"tokens-100": 100, "final": 200}
    points = []
    for (model, point), by_seed in accuracy.items():
        for seed, value in by_seed.items():
            stem = tmp_path / f"{model}-{seed}-{point}"
            stem.mkdir()
            (stem / "eval.json").write_text(json.dumps({"accuracy": value / 100}))
            (stem / "train_stats.json").write_text(json.dumps({"tokens_seen": tokens[point]}))
            points.append(
                {
                    "model": model,
                    "pretraining_seed": None,
                    "seed": seed,
                    "point": point,
                    "eval_json": str(stem / "eval.json"),
                    "model_dir": str(stem),
                }
            )
    long = tir_curve(points, tmp_path / "curve")
    assert len(long) == 8 and set(long["tokens_seen"]) == {100, 200}
    assert pd.read_csv(tmp_path / "curve.csv", dtype={"pretraining_seed": "Int64"}).equals(long)
    md = (tmp_path / "curve.md").read_text()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in md.splitlines()[2:6]]
    assert [row[:2] for row in rows] == [
        ["base", "tokens-100"],
        ["base", "final"],
        ["clm", "tokens-100"],
        ["clm", "final"],
    ]
    base_final = rows[1]
    assert base_final[3:5] == ["50.0 / 90.0", "70.0"]
    low, high = stats.t.interval(0.95, 1, loc=70.0, scale=stats.sem([50.0, 90.0]))
    assert low < 0 and high > 100 and base_final[5] == "(0.0, 100.0)"  # two seeds: cut to what can be
    assert base_final[6] == "40.0" and rows[3][6] == "0.0"  # the spread: highest minus lowest seed
    png = tmp_path / "curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"{png.name}: Table 2's learning curve" in md
    assert "base and clm" in md and "fine-tuning seed 1 and 2" in md
    with pytest.raises(ValueError, match="clm at final has the fine-tunings"):
        tir_curve(points[:-1], tmp_path / "short")
    (tmp_path / "clm-2-final" / "train_stats.json").write_text(json.dumps({"tokens_seen": 199}))
    with pytest.raises(ValueError, match="different token counts"):
        tir_curve(points, tmp_path / "mixed")
