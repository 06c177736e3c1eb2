"""Tool-integrated reasoning (the paper's Table 2) in miniature: evaluation with a Python tool.

The paper fine-tunes its continually pretrained models on ToRA-style solutions (a program, the
interpreter's output, the answer) and evaluates them with the interpreter in the loop. lm-eval
cannot run a tool between two generations, so this module does it with transformers:

1. prompt: optional few-shot tool-integrated solutions (ToRA evaluates its fine-tuned models
   zero-shot, the default here), then ``Question: ...\\nAnswer: ```python\\n``;
   greedy generation until the closing fence (the model writes the program);
2. the program runs in :func:`run_program`, a restricted interpreter for the generated data's
   programs (integer assignments with ``+ - *`` and ``print``), never ``exec``;
3. its output is appended in an ``output`` block and generation continues to the answer line;
   ``The answer is N`` is compared with the gold answer (exact match).

Every problem is kept in the output with its program, the tool's output, the answer line and, when
wrong, where it went wrong (:func:`program_error`). Nothing runs past ``context_length``, the
sequence length the model was trained on: a prompt plus its generation budget that does not fit is
refused (:class:`slm.evaluate.ContextLengthError`), never cut.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from slm.data.generate import ANSWER_RE, TOOL_CLOSE, TOOL_OPEN, TOOL_OUTPUT_OPEN, Problem, parse_steps
from slm.evaluate import ContextLengthError
from slm.intervals import PERCENT, PERCENT_DIFFERENCE, bootstrap_interval, seed_interval
from slm.io import atomic_write_json
from slm.model import load_model, resolve_device
from slm.progress import progress

log = logging.getLogger(__name__)

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}
MAX_ABS_VALUE = 10**12  # a runaway product is an error, not a huge integer


class ToolError(ValueError):
    """A program the tool refuses or cannot run."""


def _value(node: ast.expr, names: dict[str, int]) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise ToolError(f"name {node.id!r} is not defined")
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, names)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        result = _OPS[type(node.op)](_value(node.left, names), _value(node.right, names))
        if abs(result) > MAX_ABS_VALUE:
            raise ToolError("value out of range")
        return result
    raise ToolError(f"unsupported expression {ast.dump(node)[:60]}")


def run_program(code: str) -> str:
    """Run a tool program; return what it prints (lines joined by newlines).

    Only ``name = expr`` and ``print(expr)`` statements over integers, names and ``+ - *`` are
    allowed; anything else (imports, calls, attributes, loops) raises :class:`ToolError`.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as err:
        raise ToolError(f"syntax error: {err.msg}") from None
    names: dict[str, int] = {}
    printed = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            names[stmt.targets[0].id] = _value(stmt.value, names)
        elif (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "print"
            and len(stmt.value.args) == 1
            and not stmt.value.keywords
        ):
            printed.append(str(_value(stmt.value.args[0], names)))
        else:
            raise ToolError(f"unsupported statement {type(stmt).__name__}")
    return "\n".join(printed)


def tool_output(program: str) -> tuple[str, bool]:
    """The output block's text for a generated program, and whether the tool ran it."""
    try:
        return run_program(program), True
    except ToolError as err:
        return f"Error: {err}", False


def answer_of(text: str) -> str | None:
    match = re.search(ANSWER_RE, text)
    return match.group(1) if match else None


def fewshot_prefix(fewshot_jsonl: str | Path, num_fewshot: int) -> str:
    """The first ``num_fewshot`` few-shot problems, rendered as tool-integrated solutions."""
    records = [json.loads(line) for line in Path(fewshot_jsonl).read_text(encoding="utf-8").splitlines() if line]
    if num_fewshot > len(records):
        raise ValueError(f"num_fewshot {num_fewshot} > {len(records)} problems in {fewshot_jsonl}")
    shots = []
    for r in records[:num_fewshot]:
        problem = Problem(r["question"], tuple(parse_steps(r["solution"])), int(r["answer"]))
        shots.append(f"Question: {problem.question}\nAnswer: {problem.tool_solution()}\n\n")
    return "".join(shots)


# Where a tool-integrated solution went wrong, first match wins (see program_error).
ERRORS = (
    "correct",
    "answer line",
    "tool error",
    "other program",
    "steps",
    "operator",
    "operand from the question",
    "operand not in the question",
    "operator and operand",
)
PROGRAM_STEP_RE = re.compile(r"x = (x|\d+) ([+*-]) (\d+)")


def program_error(problem: dict, program: str, ran: bool, output: str, predicted: str | None) -> str:
    """Where a generated solution of ``problem`` (``question``, ``solution``, ``answer``) went wrong.

    ``correct``: the answer is right. ``answer line``: the program printed the right number, the
    answer line says another. ``tool error``: the tool refused the program. ``other program``: it ran
    but is not a chain of ``x = ...`` steps as taught. Otherwise the program's steps are compared with
    the gold solution's: ``steps`` (another number of steps), ``operator`` (only operators differ),
    ``operand from the question`` / ``operand not in the question`` (only operands differ; whether
    every wrong operand is a number the question states), ``operator and operand``.
    """
    if predicted == problem["answer"]:
        return "correct"
    if ran and output.strip() == problem["answer"]:
        return "answer line"
    if not ran:
        return "tool error"
    lines = [line.strip() for line in program.strip().splitlines()]
    steps = [PROGRAM_STEP_RE.fullmatch(line) for line in lines if line != "print(x)"]
    if not steps or not all(steps) or lines[-1] != "print(x)":
        return "other program"
    gold = parse_steps(problem["solution"])
    if len(steps) != len(gold):
        return "steps"
    wrong_operator = any(m.group(2) != op for m, (_a, op, _b, _c) in zip(steps, gold))
    wanted = [(str(a) if i == 0 else "x", str(b)) for i, (a, _op, b, _c) in enumerate(gold)]
    written = [(m.group(1), m.group(3)) for m in steps]
    wrong = [w for pair, want in zip(written, wanted) for w, g in zip(pair, want) if w != g]
    if wrong and wrong_operator:
        return "operator and operand"
    if wrong_operator:
        return "operator"
    stated = set(re.findall(r"\d+", problem["question"]))
    return "operand from the question" if set(wrong) <= stated else "operand not in the question"


def _encode(tokenizer, prompts: list[str], budget: int, context_length: int, what: str):
    """Left-padded batch of ``prompts``; refuses any that leaves no room for ``budget`` new tokens."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    longest = int(enc.attention_mask.sum(1).max())
    if longest + budget > context_length:
        raise ContextLengthError(
            f"tool-integrated evaluation: a {what} prompt of {longest} tokens + {budget} new tokens "
            f"exceeds the {context_length} tokens the model was trained on (sequence_length)"
        )
    return enc


def _generate(model, tokenizer, prompts: list[str], max_new_tokens: int, stop: str, context_length: int, what: str):
    """Greedy continuations of ``prompts`` (left-padded batch), each cut at its first ``stop``."""
    enc = _encode(tokenizer, prompts, max_new_tokens, context_length, what).to(model.device)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            stop_strings=[stop],
            tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id,
        )
    texts = tokenizer.batch_decode(out[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
    return [t.split(stop, 1)[0] for t in texts]


def evaluate_tir(
    model_dir: str | Path,
    eval_jsonl: str | Path,
    fewshot_jsonl: str | Path,
    out_json: str | Path,
    *,
    context_length: int,
    num_fewshot: int = 0,
    max_program_tokens: int = 64,
    max_answer_tokens: int = 16,
    batch_size: int = 32,
    limit: int | None = None,
    device: str = "auto",
) -> dict:
    """Tool-integrated accuracy of ``model_dir`` on the held-out problems; writes ``out_json``.

    Every prompt is checked against ``context_length`` before anything is generated; the answer
    prompts (which hold the generated program and the tool's output) before the answers are.
    """
    problems = [json.loads(line) for line in Path(eval_jsonl).read_text(encoding="utf-8").splitlines() if line]
    problems = problems[:limit] if limit else problems
    prefix = fewshot_prefix(fewshot_jsonl, num_fewshot)
    model, tokenizer = load_model(model_dir, resolve_device(device))
    model.eval()
    tokenizer.padding_side = "left"
    prompts = [f"{prefix}Question: {p['question']}\nAnswer: {TOOL_OPEN}" for p in problems]
    _encode(tokenizer, prompts, max_program_tokens + max_answer_tokens, context_length, "program")
    start = time.perf_counter()
    samples = []
    bar = progress(len(problems), f"evaluate-tir {model_dir}", "problem")
    for first in range(0, len(problems), batch_size):
        batch, batch_prompts = problems[first : first + batch_size], prompts[first : first + batch_size]
        programs = _generate(model, tokenizer, batch_prompts, max_program_tokens, TOOL_CLOSE, context_length, "program")
        outputs = [tool_output(program) for program in programs]
        continued = [
            f"{prompt}{program}{TOOL_CLOSE}\n{TOOL_OUTPUT_OPEN}{output}\n{TOOL_CLOSE}\n"
            for prompt, program, (output, _ok) in zip(batch_prompts, programs, outputs)
        ]
        answers = _generate(model, tokenizer, continued, max_answer_tokens, "\n", context_length, "answer")
        for p, program, (output, ran), answer in zip(batch, programs, outputs, answers):
            predicted = answer_of(answer)
            samples.append(
                {
                    "question": p["question"],
                    "gold": p["answer"],
                    "program": program,
                    "output": output,
                    "tool_ran": ran,
                    "answer_line": answer,
                    "predicted": predicted,
                    "correct": predicted == p["answer"],
                    "error": program_error(p, program, ran, output, predicted),
                }
            )
        accuracy = sum(s["correct"] for s in samples) / len(samples)
        bar.set_postfix_str(f"accuracy {accuracy:.3f}", refresh=False)
        bar.update(len(batch))
    bar.close()
    result = {
        "model": str(model_dir),
        "n": len(problems),
        "accuracy": sum(s["correct"] for s in samples) / len(problems),
        "tool_ran": sum(s["tool_ran"] for s in samples) / len(problems),
        "errors": {e: sum(s["error"] == e for s in samples) / len(problems) for e in ERRORS},
        "num_fewshot": num_fewshot,
        "max_program_tokens": max_program_tokens,
        "context_length": context_length,
        "wall_seconds": round(time.perf_counter() - start, 3),
        "samples": samples,
    }
    atomic_write_json(Path(out_json), result)
    log.info(
        "%s: tool-integrated accuracy %.3f on %d problems (the tool ran %.1f%% of programs) -> %s",
        model_dir,
        result["accuracy"],
        len(problems),
        100 * result["tool_ran"],
        out_json,
    )
    return result


TIR_TASK = "arith_tir"  # arith_gen's problems solved with the tool; a harder set's task is arith_tir_<name>
TIR_COLUMN = f"{TIR_TASK} (%)"
SEED_INTERVAL_COLUMN = "(95% over seeds)"
PROBLEM_INTERVAL_COLUMN = "[95% over problems]"
SEEDS_COLUMN = "per seed"
TOOL_RAN_COLUMN = "tool ran (%)"


def _correct(evaluation: dict, path) -> np.ndarray:
    """0/1 per problem, in the problems' order, from an evaluation's kept samples."""
    samples = evaluation.get("samples")
    if not samples or len(samples) != evaluation["n"]:
        raise ValueError(f"tool-integrated evaluation {path} does not keep its {evaluation['n']} samples")
    return np.array([float(s["correct"]) for s in samples])


def replicate_values(values: Sequence[float], units: Sequence[dict]) -> list[float]:
    """What a 95% interval over seeds is taken over: one value per pretraining seed (the mean over its
    fine-tuning seeds) when the fine-tunings start from several pretrained models, since fine-tunings of
    one pretrained model share its pretraining draw; else one per fine-tuning. ``units``: each value's
    ``{pretraining_seed, seed}``, in the same order."""
    by_pretraining: dict = {}
    for value, unit in zip(values, units, strict=True):
        by_pretraining.setdefault(unit["pretraining_seed"], []).append(value)
    return [float(np.mean(v)) for v in by_pretraining.values()] if len(by_pretraining) > 1 else list(values)


def tir_table(
    evals: list[tuple[str, list[dict]]],
    out_stem: str | Path,
    *,
    delta: list[str] | None = None,
    provenance: dict | None = None,
    task: str = TIR_TASK,
):
    """Table 2 beside the paper, and where the solutions went wrong, on one problem set (``task``: the
    accuracy column's name).

    ``evals`` pairs each fine-tuned model (a run, or ``base`` / ``reference``, the controls), in the
    table's row order, with its fine-tunings (:meth:`slm.plan.Plan.tir_units`): ``{pretraining_seed,
    seed, eval_json}``, each pretrained model (pretraining_seed None for a control) once per fine-tuning
    seed. One row per model: the accuracy with the tool (mean over its fine-tunings), its 95% t interval
    over seeds (:func:`replicate_values`; cut to 0-100, and to ±100 for the difference), its 95%
    bootstrap interval over the problems (of each problem's correctness averaged over the fine-tunings),
    each fine-tuning's accuracy, the share of programs the tool ran; the SLM − CLM row when ``delta``
    names both (differences paired fine-tuning by fine-tuning, in order: the same fine-tuning seed from
    the same position in each run's pretraining seeds, and by problem for the bootstrap); then the
    paper's rows (``<out_stem>.{md,csv,tex}``). ``<out_stem>_errors.{md,csv}``: per model, the share of
    problems in each :data:`ERRORS` category (mean over its fine-tunings).
    """
    import pandas as pd

    from slm.io import atomic_write_text
    from slm.reported import side_by_side
    from slm.tables import DELTA_ROW

    units = dict(evals)
    results = {
        model: [json.loads(Path(u["eval_json"]).read_text(encoding="utf-8")) for u in units[model]] for model in units
    }
    label = {model: f"{model} + TIR fine-tuning" for model in results}
    accuracy = {model: [100 * r["accuracy"] for r in runs] for model, runs in results.items()}
    # each problem's correctness, averaged over the fine-tunings
    per_problem = {
        model: 100 * np.mean([_correct(r, u["eval_json"]) for r, u in zip(runs, units[model])], axis=0)
        for model, runs in results.items()
    }
    if delta and len(delta) == 2:
        slm, clm = delta
        questions = {m: [s["question"] for s in results[m][0]["samples"]] for m in delta}
        if questions[slm] != questions[clm]:
            raise ValueError(f"tir_table: {slm} and {clm} were evaluated on different problems")
        if [u["seed"] for u in units[slm]] != [u["seed"] for u in units[clm]]:
            raise ValueError(
                f"tir_table: {slm} and {clm} do not pair fine-tuning by fine-tuning "
                f"(fine-tuning seeds {[u['seed'] for u in units[slm]]} against {[u['seed'] for u in units[clm]]})"
            )
        accuracy[DELTA_ROW] = [a - b for a, b in zip(accuracy[slm], accuracy[clm])]
        per_problem[DELTA_ROW] = per_problem[slm] - per_problem[clm]
        units[DELTA_ROW] = units[slm]
        label[DELTA_ROW] = DELTA_ROW

    def shown(low: float, high: float, brackets: str) -> str:
        return "" if math.isnan(low) else f"{brackets[0]}{low:.1f}, {high:.1f}{brackets[1]}"

    measured = pd.DataFrame(
        {
            f"{task} (%)": [round(sum(v) / len(v), 1) for v in accuracy.values()],
            SEED_INTERVAL_COLUMN: [
                shown(
                    *seed_interval(
                        replicate_values(v, units[m]), bounds=PERCENT_DIFFERENCE if m == DELTA_ROW else PERCENT
                    ),
                    "()",
                )
                for m, v in accuracy.items()
            ],
            PROBLEM_INTERVAL_COLUMN: [shown(*bootstrap_interval([v]), "[]") for v in per_problem.values()],
            SEEDS_COLUMN: [" / ".join(f"{x:.1f}" for x in v) for v in accuracy.values()],
            TOOL_RAN_COLUMN: [
                round(100 * sum(r["tool_ran"] for r in results[m]) / len(results[m]), 1) if m in results else None
                for m in accuracy
            ],
        },
        index=[label[m] for m in accuracy],
    )
    errors = pd.DataFrame(
        {
            error: [round(100 * sum(r["errors"][error] for r in runs) / len(runs), 1) for runs in results.values()]
            for error in ERRORS
        },
        index=[label[m] for m in results],
    )
    errors.index.name = "model"
    out_stem = Path(out_stem)
    errors_stem = out_stem.with_name(out_stem.name + "_errors")
    atomic_write_text(errors_stem.with_suffix(".csv"), errors.to_csv())
    atomic_write_text(
        errors_stem.with_suffix(".md"),
        errors.to_markdown(floatfmt=".1f")
        + "\n\n% of the held-out problems by where the tool-integrated solution went wrong (slm.tir.program_error; "
        f"mean over each model's fine-tunings: {_seeds_said(evals)}).\n",
    )
    n = {model: runs[0]["n"] for model, runs in results.items()}
    provenance = {
        **(provenance or {}),
        "fine-tunings": _seeds_said(evals),
        "problems per model": ", ".join(f"{model}: {count}" for model, count in n.items()),
    }
    return side_by_side(
        measured,
        "table2_tool_integrated_reasoning",
        {},
        out_stem.with_suffix(".md"),
        out_stem.with_suffix(".csv"),
        provenance=provenance,
        out_tex=out_stem.with_suffix(".tex"),
    )


def _seeds_said(evals: list[tuple[str, list[dict]]]) -> str:
    """Each model's fine-tunings in words: its pretraining seeds (runs only), then the fine-tuning seeds,
    in the order of the ``per seed`` column."""

    def said(units: list[dict]) -> str:
        pretraining = list(dict.fromkeys(u["pretraining_seed"] for u in units))
        seeds = ", ".join(map(str, dict.fromkeys(u["seed"] for u in units)))
        if pretraining == [None]:
            return f"fine-tuning seeds {seeds}"
        return f"pretraining seeds {', '.join(map(str, pretraining))} x fine-tuning seeds {seeds}"

    return "; ".join(f"{model}: {said(units)}" for model, units in evals)


CURVE_COLUMNS = ["model", "point", "pretraining_seed", "seed", "tokens_seen", "accuracy"]


def tir_curve(points: list[dict], out_stem: str | Path):
    """Table 2's learning curve: each fine-tuned model's accuracy with the tool at every evaluated point of
    its fine-tunings (checkpoints ``tokens-N``, then ``final``).

    ``points``: ``{model, point, pretraining_seed, seed, eval_json, model_dir}`` in row order (model, then
    point), each point of a model once per fine-tuning of it (:meth:`slm.plan.Plan.tir_units`); the
    ``train_stats.json`` of ``model_dir`` (the model evaluated) says how many tokens it had seen.
    ``<out_stem>.csv``: one row per model, point and fine-tuning (:data:`CURVE_COLUMNS`, accuracy in %).
    ``<out_stem>.md``: one row per model and point with each fine-tuning's accuracy, their mean, the 95% t
    interval over seeds (:func:`replicate_values`) and the spread (highest minus lowest fine-tuning):
    whether the recipe ends where the curve is flat, and whether the seeds agree there.
    ``<out_stem>.png``: the same, drawn (:func:`slm.figures.table2_curve_figure`).
    """
    import pandas as pd

    from slm.figures import table2_curve_figure
    from slm.formatting import human_tokens
    from slm.io import atomic_write_text

    records = [
        {
            "model": p["model"],
            "point": p["point"],
            "pretraining_seed": p["pretraining_seed"],
            "seed": p["seed"],
            "tokens_seen": json.loads((Path(p["model_dir"]) / "train_stats.json").read_text(encoding="utf-8"))[
                "tokens_seen"
            ],
            "accuracy": 100 * json.loads(Path(p["eval_json"]).read_text(encoding="utf-8"))["accuracy"],
        }
        for p in points
    ]
    long = pd.DataFrame.from_records(records, columns=CURVE_COLUMNS).astype({"pretraining_seed": "Int64"})
    blocks: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        blocks.setdefault((record["model"], record["point"]), []).append(record)
    rows, fine_tunings = [], {}
    for (model, point), block in blocks.items():
        units = [{"pretraining_seed": r["pretraining_seed"], "seed": r["seed"]} for r in block]
        expected = fine_tunings.setdefault(model, units)
        if units != expected:
            raise ValueError(f"tir_curve: {model} at {point} has the fine-tunings {units}, expected {expected}")
        if len({r["tokens_seen"] for r in block}) != 1:
            raise ValueError(f"tir_curve: the fine-tunings of {model} at {point} saw different token counts")
        accuracy = [r["accuracy"] for r in block]
        low, high = seed_interval(replicate_values(accuracy, units), bounds=PERCENT)
        rows.append(
            {
                "model": model,
                "point": point,
                "tokens seen": human_tokens(int(block[0]["tokens_seen"])),
                SEEDS_COLUMN: " / ".join(f"{x:.1f}" for x in accuracy),
                TIR_COLUMN: f"{np.mean(accuracy):.1f}",
                SEED_INTERVAL_COLUMN: "" if math.isnan(low) else f"({low:.1f}, {high:.1f})",
                "spread": f"{max(accuracy) - min(accuracy):.1f}",
            }
        )
    out_stem = Path(out_stem)
    csv, png = out_stem.with_suffix(".csv"), out_stem.with_suffix(".png")
    atomic_write_text(csv, long.to_csv(index=False))
    figure = table2_curve_figure(long, png, source=csv.name)
    said = _seeds_said(list(fine_tunings.items()))
    atomic_write_text(
        out_stem.with_suffix(".md"),
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
        + f"\n\nTool-integrated accuracy (%) along each fine-tuning ({said}): each fine-tuning's, the mean, "
        f"its 95% t interval over seeds (cut to 0-100) and the spread, highest minus lowest fine-tuning.\n\n"
        f"{png.name}: {figure.caption}\n",
    )
    return long
