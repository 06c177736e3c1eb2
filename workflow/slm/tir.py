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
"""

from __future__ import annotations

import ast
import json
import logging
import re
import time
from pathlib import Path

import torch

from slm.data.generate import ANSWER_RE, TOOL_CLOSE, TOOL_OPEN, TOOL_OUTPUT_OPEN, Problem, parse_steps
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


def _generate(model, tokenizer, prompts: list[str], max_new_tokens: int, stop: str, max_length: int) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batch), each cut at its first ``stop``.

    A prompt longer than the model's positions allow is cut from the left, as lm-eval does.
    """
    budget = max_length - max_new_tokens
    enc = tokenizer(
        prompts, return_tensors="pt", padding=True, add_special_tokens=False, truncation=True, max_length=budget
    )
    if enc.input_ids.shape[1] == budget and enc.attention_mask[:, 0].any():
        log.warning("prompts cut from the left to %d tokens to fit the model's %d positions", budget, max_length)
    enc = enc.to(model.device)
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
    num_fewshot: int = 0,
    max_program_tokens: int = 64,
    max_answer_tokens: int = 16,
    batch_size: int = 32,
    limit: int | None = None,
    device: str = "auto",
) -> dict:
    """Tool-integrated accuracy of ``model_dir`` on the held-out problems; writes ``out_json``."""
    problems = [json.loads(line) for line in Path(eval_jsonl).read_text(encoding="utf-8").splitlines() if line]
    problems = problems[:limit] if limit else problems
    prefix = fewshot_prefix(fewshot_jsonl, num_fewshot)
    model, tokenizer = load_model(model_dir, resolve_device(device))
    model.eval()
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    max_length = model.config.max_position_embeddings
    start = time.perf_counter()
    correct = ran = 0
    samples = []
    bar = progress(len(problems), f"evaluate-tir {model_dir}", "problem")
    for first in range(0, len(problems), batch_size):
        batch = problems[first : first + batch_size]
        prompts = [f"{prefix}Question: {p['question']}\nAnswer: {TOOL_OPEN}" for p in batch]
        programs = _generate(model, tokenizer, prompts, max_program_tokens, TOOL_CLOSE, max_length)
        outputs = [tool_output(program) for program in programs]
        continued = [
            f"{prompt}{program}{TOOL_CLOSE}\n{TOOL_OUTPUT_OPEN}{output}\n{TOOL_CLOSE}\n"
            for prompt, program, (output, _ok) in zip(prompts, programs, outputs)
        ]
        answers = _generate(model, tokenizer, continued, max_answer_tokens, "\n", max_length)
        for p, program, (output, ok), answer in zip(batch, programs, outputs, answers):
            predicted = answer_of(answer)
            correct += predicted == p["answer"]
            ran += ok
            if len(samples) < 20:
                samples.append(
                    {
                        "question": p["question"],
                        "program": program,
                        "output": output,
                        "answer_line": answer,
                        "predicted": predicted,
                        "gold": p["answer"],
                    }
                )
        bar.set_postfix_str(f"accuracy {correct / (first + len(batch)):.3f}", refresh=False)
        bar.update(len(batch))
    bar.close()
    result = {
        "model": str(model_dir),
        "n": len(problems),
        "accuracy": correct / len(problems),
        "tool_ran": ran / len(problems),
        "num_fewshot": num_fewshot,
        "max_program_tokens": max_program_tokens,
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


TIR_COLUMN = "arith_tir (%)"
TOOL_RAN_COLUMN = "tool ran (%)"


def tir_table(
    evals: dict[str, str | Path],
    out_stem: str | Path,
    *,
    delta: list[str] | None = None,
    provenance: dict | None = None,
):
    """Table 2 beside the paper: one row per fine-tuned run (accuracy with the tool, share of programs
    the tool ran), the SLM − CLM row when ``delta`` names both, then the paper's rows."""
    import pandas as pd

    from slm.reported import side_by_side
    from slm.tables import DELTA_ROW

    results = {run: json.loads(Path(path).read_text(encoding="utf-8")) for run, path in evals.items()}
    measured = pd.DataFrame(
        {
            TIR_COLUMN: [100 * r["accuracy"] for r in results.values()],
            TOOL_RAN_COLUMN: [100 * r["tool_ran"] for r in results.values()],
        },
        index=[f"{run} + TIR fine-tuning" for run in results],
    )
    if delta and len(delta) == 2:
        slm, clm = (f"{run} + TIR fine-tuning" for run in delta)
        measured.loc[DELTA_ROW] = measured.loc[slm] - measured.loc[clm]
    measured = measured.round(1)
    out_stem = Path(out_stem)
    provenance = {
        **(provenance or {}),
        "problems per model": ", ".join(f"{run}: {r['n']}" for run, r in results.items()),
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
