"""lm-eval (0.4.13) task YAMLs over the held-out sets written by :mod:`slm.data.generate`.

Three tasks, one YAML each (``<out_dir>/<task>.yaml``), reading the local JSON-lines files through
the ``json`` dataset builder with absolute ``data_files`` paths:

``arith_gen`` (generate_until)
    Prompt ``Question: {question}\\nAnswer:``; the few-shot examples (``train`` split =
    ``arith_fewshot.jsonl``) show the worked solution (``fewshot_config.doc_to_target``) while the
    scored target is the bare final number (``doc_to_target: "{{answer}}"``). A regex filter
    (``The answer is (-?[0-9]+)``, first match, then ``take_first``) extracts the number from the
    greedy generation; the metric is ``exact_match`` against ``answer``. The result key is
    ``exact_match,strict-match`` (filter name :data:`GEN_FILTER`); a generation without
    ``The answer is N`` scores 0 there (it becomes ``[invalid]``). A second, looser filter
    (:data:`FLEXIBLE_FILTER`) takes the last integer of the generation:
    ``exact_match,flexible-extract``.
``arith_mc`` (multiple_choice, 0-shot)
    Prompt ``Question: {question}\\nAnswer: The answer is``; continuations `` <choice>``;
    metrics ``acc`` and ``acc_norm`` (keys ``acc,none`` and ``acc_norm,none``).
``arith_step`` (loglikelihood, 0-shot)
    For every ``a op b = c`` step of every held-out solution: the context is the question and the
    correct solution up to ``=``, the target the computed result `` c``. ``acc`` (key
    ``acc,none``) is 1 when greedy decoding reproduces the result exactly; ``perplexity`` is over
    the result tokens. This measures the skill tokens (the computed digits) that exact match on a
    short generation measures noisily. Its documents (``arith_step.jsonl``) are derived from
    ``arith_gen.jsonl`` and written beside the YAMLs.
``math_ppl`` (loglikelihood_rolling, 0-shot)
    Rolling log-likelihood of ``text``; metrics ``word_perplexity``, ``byte_perplexity`` and
    ``bits_per_byte`` (keys ``<metric>,none``).

Note on ``num_fewshot`` in lm-eval 0.4.13: a ``num_fewshot`` passed to ``simple_evaluate`` / the
CLI overrides the YAML value, except for tasks whose YAML says ``num_fewshot: 0`` (arith_mc and
math_ppl), which stay 0-shot.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from slm.config import check_int
from slm.data.generate import STEP_RE
from slm.io import atomic_write_text

__all__ = [
    "TASKS",
    "TASK_FILES",
    "GEN_FILTER",
    "FLEXIBLE_FILTER",
    "ANSWER_REGEX",
    "build_task_configs",
    "write_task_yamls",
]

TASKS = ("arith_gen", "arith_mc", "arith_step", "math_ppl")
STEP_FILE = "arith_step.jsonl"

# eval_dir-relative files: test split (+ few-shot train split)
TASK_FILES = {
    "arith_gen": {"test": "arith_gen.jsonl", "train": "arith_fewshot.jsonl"},
    "arith_mc": {"test": "arith_mc.jsonl"},
    "math_ppl": {"test": "math_ppl.jsonl"},
}
GEN_FILTER = "strict-match"
FLEXIBLE_FILTER = "flexible-extract"
ANSWER_REGEX = r"The answer is (\-?[0-9]+)"
LAST_NUMBER_REGEX = r"(\-?[0-9]+)"
STOP_SEQUENCES = ["\n\n", "Question:"]


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def step_documents(eval_dir: Path) -> list[dict]:
    """One document per computed result of every held-out solution (see ``arith_step``)."""
    docs = []
    with open(Path(eval_dir) / TASK_FILES["arith_gen"]["test"], encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            problem = json.loads(line)
            for step, match in enumerate(STEP_RE.finditer(problem["solution"])):
                prefix = problem["solution"][: match.start(4)].rstrip()
                docs.append(
                    {
                        "context": f"Question: {problem['question']}\nAnswer: {prefix}",
                        "target": f" {match.group(4)}",
                        "step": step,
                    }
                )
    return docs


def build_task_configs(
    eval_dir: Path, *, num_fewshot: int = 3, max_gen_toks: int = 64, step_file: Path | None = None
) -> dict[str, dict]:
    """The task configs (as plain dicts, one per task in :data:`TASKS`) that
    :func:`write_task_yamls` writes; ``step_file`` is where the ``arith_step`` documents live."""
    check_int("num_fewshot", num_fewshot, 0)
    check_int("max_gen_toks", max_gen_toks, 1)
    eval_dir = Path(eval_dir).resolve()
    data_files: dict[str, dict[str, str]] = {}
    for task, splits in TASK_FILES.items():
        data_files[task] = {}
        for split, name in splits.items():
            path = eval_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"held-out file for task {task} not found: {path}")
            if _count_lines(path) == 0:
                raise ValueError(f"held-out file for task {task} is empty: {path}")
            data_files[task][split] = str(path)
    n_fewshot_docs = _count_lines(Path(data_files["arith_gen"]["train"]))
    if num_fewshot > n_fewshot_docs:
        raise ValueError(
            f"num_fewshot={num_fewshot} exceeds the {n_fewshot_docs} few-shot examples in "
            f"{data_files['arith_gen']['train']}"
        )

    data_files["arith_step"] = {"test": str(Path(step_file or eval_dir / STEP_FILE).resolve())}

    def dataset(task: str) -> dict:
        return {
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": data_files[task]},
            "test_split": "test",
        }

    def metric(name: str) -> dict:
        return {"metric": name, "aggregation": "mean", "higher_is_better": True}

    return {
        "arith_gen": {
            "task": "arith_gen",
            **dataset("arith_gen"),
            "fewshot_split": "train",
            "output_type": "generate_until",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_target": "{{answer}}",
            "target_delimiter": " ",
            "fewshot_delimiter": "\n\n",
            "fewshot_config": {"sampler": "default", "doc_to_target": "{{solution}}"},
            "num_fewshot": num_fewshot,
            "generation_kwargs": {
                "until": list(STOP_SEQUENCES),
                "do_sample": False,
                "max_gen_toks": max_gen_toks,
            },
            "filter_list": [
                {
                    "name": GEN_FILTER,
                    "filter": [
                        {
                            "function": "regex",
                            "regex_pattern": ANSWER_REGEX,
                            "group_select": 0,
                        },
                        {"function": "take_first"},
                    ],
                },
                {
                    "name": FLEXIBLE_FILTER,
                    "filter": [
                        {
                            "function": "regex",
                            "regex_pattern": LAST_NUMBER_REGEX,
                            "group_select": -1,
                        },
                        {"function": "take_first"},
                    ],
                },
            ],
            "metric_list": [
                {
                    **metric("exact_match"),
                    "ignore_case": True,
                    "ignore_punctuation": False,
                }
            ],
            "metadata": {"version": 1.0},
        },
        "arith_mc": {
            "task": "arith_mc",
            **dataset("arith_mc"),
            "output_type": "multiple_choice",
            "doc_to_text": "Question: {{question}}\nAnswer: The answer is",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "label",
            "target_delimiter": " ",
            "num_fewshot": 0,
            "metric_list": [metric("acc"), metric("acc_norm")],
            "metadata": {"version": 1.0},
        },
        "arith_step": {
            "task": "arith_step",
            **dataset("arith_step"),
            "output_type": "loglikelihood",
            "doc_to_text": "{{context}}",
            "doc_to_target": "{{target}}",
            "target_delimiter": "",
            "num_fewshot": 0,
            "metric_list": [
                metric("acc"),
                {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
            ],
            "metadata": {"version": 1.0},
        },
        "math_ppl": {
            "task": "math_ppl",
            **dataset("math_ppl"),
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "text",
            "num_fewshot": 0,
            "metric_list": [
                {
                    "metric": "word_perplexity",
                    "aggregation": "weighted_perplexity",
                    "higher_is_better": False,
                },
                {
                    "metric": "byte_perplexity",
                    "aggregation": "weighted_perplexity",
                    "higher_is_better": False,
                },
                {
                    "metric": "bits_per_byte",
                    "aggregation": "bits_per_byte",
                    "higher_is_better": False,
                },
            ],
            "metadata": {"version": 1.0},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block-style YAML; strings containing newlines or outer spaces are double-quoted so that the
    escapes stay readable (``"Question: {{question}}\\nAnswer:"``)."""


def _str_representer(dumper: yaml.SafeDumper, value: str):
    style = '"' if ("\n" in value or value != value.strip()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def write_task_yamls(eval_dir: Path, out_dir: Path, *, num_fewshot: int = 3, max_gen_toks: int = 64) -> list[Path]:
    """Write ``<out_dir>/<task>.yaml`` for every task in :data:`TASKS` (in that order) and return
    their paths. ``out_dir`` should hold nothing else that lm-eval could mistake for a task (it
    is passed to lm-eval as ``include_path``)."""
    out_dir = Path(out_dir)
    step_file = out_dir / STEP_FILE
    configs = build_task_configs(eval_dir, num_fewshot=num_fewshot, max_gen_toks=max_gen_toks, step_file=step_file)
    atomic_write_text(step_file, "".join(json.dumps(d) + "\n" for d in step_documents(eval_dir)))
    paths = []
    for task in TASKS:
        header = f"# lm-eval task {task}: generated by slm.data.eval_tasks -- do not edit\n"
        body = yaml.dump(
            configs[task],
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            width=1000,
        )
        path = out_dir / f"{task}.yaml"
        atomic_write_text(path, header + body)
        paths.append(path)
    return paths


if __name__ == "__main__":  # pragma: no cover - convenience for manual inspection
    import sys

    print(json.dumps(build_task_configs(Path(sys.argv[1])), indent=2))
