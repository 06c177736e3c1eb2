"""workflow/tasks/: lm-eval 0.4.13 tasks for the Rho-1 paper's extra math benchmarks, and suites.yaml.

Offline: the tasks are built from their YAML with hand-written rows in each hub dataset's format
(`custom_dataset` replaces the hub download), then prompts, targets, filters and scores are checked,
the prompt against lm-eval's own `gsm8k_cot`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "workflow" / "tasks"
NEW_TASKS = ["svamp_cot", "mawps_cot", "tabmwp_cot", "gsm_hard_cot", "asdiv_cot"]
REQUIRED_TASKS = ["svamp_cot", "mawps_cot", "tabmwp_cot", "gsm_hard_cot"]
GROUP = "rho1_math_extra"
TASK_FILES = {name: TASKS_DIR / f"{name}.yaml" for name in NEW_TASKS}

lm_eval = pytest.importorskip("lm_eval")
datasets = pytest.importorskip("datasets")

from lm_eval.api.task import ConfigurableTask  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from lm_eval.tasks._yaml_loader import load_yaml  # noqa: E402

_spec = importlib.util.spec_from_file_location("rho1_task_utils", TASKS_DIR / "utils.py")
task_utils = importlib.util.module_from_spec(_spec)  # workflow/tasks/utils.py
_spec.loader.exec_module(task_utils)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def index_logs():
    """Warnings lm-eval's indexer emits (a name defined twice overrides the built-in one)."""
    handler = _Records()
    logger = logging.getLogger("lm_eval.tasks._index")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
def manager(index_logs) -> TaskManager:
    """Built-in tasks plus workflow/tasks (the built-ins are needed for gsm8k_cot and suites.yaml)."""
    return TaskManager(include_path=str(TASKS_DIR))


@pytest.fixture(scope="module", autouse=True)
def datasets_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_cache"))
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        yield


def build_task(yaml_path: Path, docs: list[dict]) -> ConfigurableTask:
    """The task exactly as its YAML defines it, but with `docs` as the evaluation split."""
    cfg = load_yaml(yaml_path, resolve_func=True)
    split = cfg["test_split"]
    cfg.pop("dataset_path", None)
    cfg.pop("dataset_name", None)
    cfg["custom_dataset"] = lambda **_: datasets.DatasetDict({split: datasets.Dataset.from_list(docs)})
    return ConfigurableTask(config=cfg)


def score(task: ConfigurableTask, outputs: list[str]) -> list[dict]:
    """Feed one model output per evaluation doc through the task's filters and process_results."""
    task.build_all_requests(limit=None, rank=0, world_size=1)
    instances = sorted(task.instances, key=lambda inst: inst.doc_id)
    assert len(instances) == len(outputs)
    for inst, out in zip(instances, outputs):
        inst.resps = [out]
    task.apply_filters()
    rows = []
    for inst in instances:
        row = {"filtered": dict(inst.filtered_resps)}
        for key, value in inst.filtered_resps.items():
            row[key] = float(task.process_results(inst.doc, [value])["exact_match"])
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ files


def test_every_task_file_parses_and_resolves_its_functions():
    files = sorted(TASKS_DIR.glob("*.yaml")) + sorted(TASKS_DIR.glob("_*_yaml"))
    names = {p.name for p in files}
    assert {f"{t}.yaml" for t in NEW_TASKS} | {f"{GROUP}.yaml", "suites.yaml"} <= names
    assert "_gsm8k_cot_template_yaml" in names
    for path in files:
        if path.name == "suites.yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict)
            continue
        cfg = load_yaml(path, resolve_func=True)  # raises if a !function does not exist
        assert isinstance(cfg, dict) and cfg, path
    for name, path in TASK_FILES.items():
        cfg = load_yaml(path, resolve_func=True)
        assert cfg["task"] == name
        assert callable(cfg["process_docs"])
        for flt in cfg["filter_list"]:
            custom = [f for f in flt["filter"] if f["function"] == "custom"]
            assert custom and callable(custom[0]["filter_fn"])


def test_task_manager_indexes_the_new_tasks_and_group(manager, index_logs):
    index = manager.task_index
    for name in NEW_TASKS:
        assert name in manager.all_subtasks
        assert Path(index[name].yaml_path).parent == TASKS_DIR
    assert GROUP in manager.all_groups
    assert index[GROUP].cfg["task"] == NEW_TASKS
    assert set(REQUIRED_TASKS) <= set(index[GROUP].cfg["task"])
    agg = index[GROUP].cfg["aggregate_metric_list"]
    assert agg[0]["metric"] == "exact_match" and agg[0]["weight_by_size"] is False
    # nothing of ours shadows a built-in task, group or tag
    overrides = [r.getMessage() for r in index_logs if "overrides" in r.getMessage()]
    assert overrides == []
    assert "gsm8k_cot" in manager.all_subtasks  # the built-ins are there too


def test_lm_eval_validate_accepts_the_tasks():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "validate",
            "--tasks",
            ",".join(REQUIRED_TASKS + ["asdiv_cot", GROUP]),
            "--include_path",
            str(TASKS_DIR),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All tasks found and valid" in proc.stdout


# ------------------------------------------------------------------------------------ protocol


@pytest.fixture(scope="module")
def gsm8k_cot_yaml(manager) -> Path:
    return Path(manager.task_index["gsm8k_cot"].yaml_path)


def test_fewshot_exemplars_and_decoding_are_gsm8k_cot(gsm8k_cot_yaml):
    ref = yaml.safe_load(gsm8k_cot_yaml.read_text())  # plain YAML, no !function tags
    ref_samples = ref["fewshot_config"]["samples"]
    assert len(ref_samples) == 8
    for path in TASK_FILES.values():
        cfg = load_yaml(path, resolve_func=True)
        assert cfg["fewshot_config"]["samples"] == ref_samples
        assert cfg["fewshot_config"]["sampler"] == "first_n"
        assert cfg["num_fewshot"] == 8
        assert cfg["doc_to_text"] == ref["doc_to_text"] == "Q: {{question}}\nA:"
        gen = cfg["generation_kwargs"]
        assert gen["do_sample"] is False and gen["temperature"] == 0.0
        assert gen["max_gen_toks"] == 1024
        assert set(ref["generation_kwargs"]["until"]) <= set(gen["until"])
        assert [m["metric"] for m in cfg["metric_list"]] == ["exact_match"]
        assert [f["name"] for f in cfg["filter_list"]] == ["strict-match", "flexible-extract"]


def test_prompt_is_gsm8k_cot_prompt_for_the_same_question(gsm8k_cot_yaml):
    question = "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
    gsm = build_task(gsm8k_cot_yaml, [{"question": question, "answer": "7 + 2 = 9\n#### 9"}])
    expected = gsm.fewshot_context(gsm.eval_docs[0], num_fewshot=8)
    asdiv = build_task(
        TASK_FILES["asdiv_cot"],
        [
            {
                "body": "Seven red apples and two green apples are in the basket.",
                "question": "How many apples are in the basket?",
                "answer": "9 (apples)",
                "formula": "7+2=9",
                "solution_type": "Addition",
            }
        ],
    )
    got = asdiv.fewshot_context(asdiv.eval_docs[0], num_fewshot=8)
    assert got == expected
    assert got.count("\n\nQ: ") == 8 and got.endswith(f"Q: {question}\nA:")
    assert "The answer is 6.\n\nQ: If there are 3 cars" in got
    assert asdiv.config.generation_kwargs["max_gen_toks"] == 1024
    assert asdiv.config.generation_kwargs["do_sample"] is False


# ------------------------------------------------------------------------------------ datasets

SVAMP_ROWS = [
    {
        "ID": "chal-1",
        "Body": "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack",
        "Question": "How much do you have to pay to buy each pack?",
        "Equation": "( 76.0 - 25.0 )",
        "Answer": 51.0,
        "Type": "Subtraction",
    },
    {
        "ID": "chal-2",
        "Body": "Dan had $ 3 left with him after he bought a candy bar. He had $ 4 at the start. ",
        "Question": " How much did the candy bar cost?",
        "Equation": "( 4.0 - 3.0 )",
        "Answer": 1.0,
        "Type": "Subtraction",
    },
]


def test_svamp_prompt_target_and_scores():
    task = build_task(TASK_FILES["svamp_cot"], SVAMP_ROWS)
    docs = list(task.eval_docs)
    assert docs[0]["question"] == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack. "
        "How much do you have to pay to buy each pack?"
    )
    assert docs[1]["question"] == (
        "Dan had $ 3 left with him after he bought a candy bar. He had $ 4 at the start. "
        "How much did the candy bar cost?"
    )
    assert [task.doc_to_target(d) for d in docs] == ["51", "1"]
    ctx = task.fewshot_context(docs[0], num_fewshot=8)
    assert ctx.endswith("Q: " + docs[0]["question"] + "\nA:")
    rows = score(
        task,
        [
            " 76 - 25 = 51. The answer is 51.0.\n\n",
            " He paid 4 - 3 = 2 dollars. The answer is 2.\n\n",
        ],
    )
    assert rows[0]["filtered"] == {"strict-match": "51", "flexible-extract": "51"}
    assert (rows[0]["strict-match"], rows[0]["flexible-extract"]) == (1.0, 1.0)
    assert (rows[1]["strict-match"], rows[1]["flexible-extract"]) == (0.0, 0.0)


def test_svamp_loader_concatenates_train_and_test(tmp_path):
    data = tmp_path / "svamp"
    data.mkdir()
    for split, rows in (("train", SVAMP_ROWS * 3), ("test", SVAMP_ROWS[:1])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dd = task_utils.load_svamp(svamp_path=str(data), version=1.0)
    assert list(dd) == ["test"] and len(dd["test"]) == 7
    assert task_utils.process_docs_svamp(dd["test"])[6]["answer"] == "51"


def test_gsm_hard_targets_and_strict_vs_flexible():
    rows = [
        {
            "input": "Janet's ducks lay 1617 eggs per day. She eats 3 for breakfast every morning and bakes "
            "muffins for her friends every day with 4933828. She sells the remainder at the farmers' "
            "market daily for $2 per fresh duck egg. How much in dollars does she make every day?",
            "code": "def solution():\n    return (1617 - 3 - 4933828) * 2",
            "target": -9864428.0,
        },
        {
            "input": "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts?",
            "code": "",
            "target": 3.0,
        },
        {"input": "What is 7 divided by 2?", "code": "", "target": 3.5},
        {"input": "How many?", "code": "", "target": 2280375.0},
        {"input": "How many now?", "code": "", "target": 12.0},
    ]
    task = build_task(TASK_FILES["gsm_hard_cot"], rows)
    docs = list(task.eval_docs)
    assert docs[0]["question"] == rows[0]["input"]
    assert [task.doc_to_target(d) for d in docs] == ["-9864428", "3", "3.5", "2280375", "12"]
    out = score(
        task,
        [
            "So she makes (1617 - 3 - 4933828) * 2 = -9864428. The answer is -9864428.\n\n",
            "It takes 2 + 1 = 3 bolts. The answer is 3.\n\n",
            "7 / 2 = 3.50. The answer is 3.50.\n\n",
            "She has 2,280,375 in total. The answer is $2,280,375.\n\n",  # "$" defeats gsm8k_cot's strict regex
            "There are 12 now. I am not sure.",
        ],
    )
    assert [(r["strict-match"], r["flexible-extract"]) for r in out] == [
        (1.0, 1.0),
        (1.0, 1.0),
        (1.0, 1.0),
        (0.0, 1.0),
        (0.0, 1.0),
    ]
    assert out[4]["filtered"]["strict-match"] == "[invalid]"


def test_mawps_calc_x_rows_and_harness_rows():
    rows = [
        {
            "id": "mawps_a",
            "question": "Sara had 21 quarters. Her dad gave her 49 quarters. How many quarters does she have now?",
            "chain": "<gadget>21 + 49</gadget>",
            "result": "70",
            "result_float": 70.0,
            "equation": "x=21+49",
            "expression": "21 + 49",
        },
        {
            "id": "mawps_b",
            "question": "A pie is cut into 8 pieces. Each of 3 friends eats 1 piece. What fraction is left?",
            "chain": "",
            "result": "5/8",
            "result_float": 0.625,
            "equation": "",
            "expression": "(8 - 3) / 8",
        },
    ]
    task = build_task(TASK_FILES["mawps_cot"], rows)
    docs = list(task.eval_docs)
    assert docs[0]["question"] == rows[0]["question"]
    assert [task.doc_to_target(d) for d in docs] == ["70", "0.625"]
    out = score(task, ["21 + 49 = 70. The answer is 70.\n\n", "5 / 8 = 0.625. The answer is 0.625.\n\n"])
    assert [r["strict-match"] for r in out] == [1.0, 1.0]
    # the harness / ToRA MAWPS jsonl rows (input, target) work too
    harness = task_utils.mawps_doc({"input": "Tom has 3 apples and buys 4. How many?", "target": 7.0})
    assert harness == {"question": "Tom has 3 apples and buys 4. How many?", "answer": "7"}
    with pytest.raises(KeyError):
        task_utils.mawps_doc({"text": "no question field", "label": 1})


TABLE = "Pet | Number\ncat | 1,000\ndog | 200"


def test_tabmwp_question_text_targets_and_text_answers():
    rows = [
        {
            "question": "How many cats and dogs are there in all?",
            "choices": None,
            "answer": "1,200",
            "ans_type": "integer_number",
            "ques_type": "free_text",
            "table_title": "Pets",
            "table": TABLE,
            "unit": "",
            "solution": "1,000 + 200 = 1,200",
            "grade": 3,
        },
        {
            "question": "Are there more cats than dogs?",
            "choices": ["yes", "no"],
            "answer": "yes",
            "ans_type": "boolean_text",
            "ques_type": "multi_choice",
            "table_title": "",
            "table": TABLE,
            "unit": "",
            "solution": "",
            "grade": 2,
        },
        {
            "question": "Which pet is least common?",
            "choices": ["cat", "dog"],
            "answer": "dog",
            "ans_type": "extractive_text",
            "ques_type": "multi_choice",
            "table_title": "Pets",
            "table": TABLE,
            "unit": "",
            "solution": "",
            "grade": 2,
        },
        {
            "question": "What fraction of the pets are dogs? Simplify your answer.",
            "choices": None,
            "answer": "1/6",
            "ans_type": "other_text",
            "ques_type": "free_text",
            "table_title": "Pets",
            "table": TABLE,
            "unit": "",
            "solution": "",
            "grade": 5,
        },
    ]
    task = build_task(TASK_FILES["tabmwp_cot"], rows)
    docs = list(task.eval_docs)
    assert docs[0]["question"] == (
        'Read the following table regarding "Pets" and answer a question:\n'
        f"{TABLE}\nHow many cats and dogs are there in all?"
    )
    assert docs[1]["question"] == (
        "Read the following table and answer a question:\n"
        f"{TABLE}\nAre there more cats than dogs? Please select from the following options: "
        "['yes', 'no'] (Yes or No)"
    )
    assert [task.doc_to_target(d) for d in docs] == ["1200", "yes", "dog", "0.16666666666666666"]
    out = score(
        task,
        [
            "1,000 + 200 = 1,200. The answer is 1,200.\n\n",
            "1,000 is more than 200. The answer is Yes.\n\n",
            "The answer is cat.\n\n",
            "200 / 1,200 = 1/6. The answer is 1/6.\n\n",
        ],
    )
    assert [r["strict-match"] for r in out] == [1.0, 1.0, 0.0, 1.0]
    assert out[1]["filtered"]["strict-match"] == "yes"
    # choices stored as a string (some mirrors) are shown as they are, not split into characters
    as_string = task_utils.tabmwp_question({**rows[1], "choices": "['yes', 'no']"})
    assert as_string == task_utils.tabmwp_question(rows[1])


def test_asdiv_cot_drops_multi_answer_rows_and_strips_units():
    rows = [
        {
            "body": "Seven red apples and two green apples are in the basket.",
            "question": "How many apples are in the basket?",
            "answer": "9 (apples)",
            "formula": "7+2=9",
            "solution_type": "Addition",
        },
        {
            "body": "A rectangle is 3 m by 4 m.",
            "question": "What are its perimeter and area?",
            "answer": "14 (m); 12 (m2)",
            "formula": "",
            "solution_type": "Multi",
        },
        {
            "body": "There are 6 boys and 9 girls.",
            "question": "What is the ratio of boys to girls?",
            "answer": "2:3",
            "formula": "6:9",
            "solution_type": "Ratio",
        },
    ]
    task = build_task(TASK_FILES["asdiv_cot"], rows)
    docs = list(task.eval_docs)
    assert len(docs) == 2
    assert docs[0]["question"] == (
        "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
    )
    assert [task.doc_to_target(d) for d in docs] == ["9", "2:3"]
    out = score(task, ["7 + 2 = 9. The answer is 9 apples.\n\n", "6:9 = 2:3. The answer is 2:3.\n\n"])
    assert [r["strict-match"] for r in out] == [1.0, 1.0]
    assert out[1]["flexible-extract"] == 0.0  # the last-number filter cannot read a ratio


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5.0, "5"),
        ("5.0", "5"),
        ("5.00", "5"),
        ("5.", "5"),
        ("$5", "5"),
        ("-$5", "-5"),
        ("1,234.50", "1234.5"),
        ("2,280,375", "2280375"),
        (2100000.0, "2100000"),
        (1e20, "100000000000000000000"),
        ("-0", "0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (3, "3"),
        ("3/4", "0.75"),
        ("-6/3", "-2"),
        ("25%", "25"),
        ("8 apples", "8"),
        ("1,200 dollars", "1200"),
        (" Yes. ", "yes"),
        ("7:30 A.M.", "7:30 a.m"),
        ("[invalid]", "[invalid]"),
        (None, ""),
        ("1,2", "1,2"),
        ("12.5.", "12.5"),
        ("1/0", "1/0"),
    ],
)
def test_normalize_answer(raw, expected):
    assert task_utils.normalize_answer(raw) == expected


def test_normalize_filter_keeps_list_shape():
    assert task_utils.normalize_filter([["5.0", "$3"], ["x"]], [{}, {}]) == [["5", "3"], ["x"]]


# ------------------------------------------------------------------------------------ suites.yaml

TABLE1 = ["GSM8K", "MATH", "SVAMP", "ASDiv", "MAWPS", "TAB", "MQA", "MMLU-STEM", "SAT"]
TABLE2 = ["GSM8K", "MATH", "SVAMP", "ASDiv", "MAWPS", "TAB", "GSM-Hard"]
FIGURE5 = [
    "MMLU",
    "BBH",
    "MATH",
    "GSM8K",
    "MBPP (pass@1)",
    "MBPP (pass@10)",
    "HumanEval (pass@1)",
    "HumanEval (pass@10)",
    "AGIEval",
    "ARC-C",
    "ARC-E",
    "BoolQ",
    "PIQA",
    "HellaSwag",
    "WinoGrande",
    "OBQA",
    "TydiQA",
]


@pytest.fixture(scope="module")
def suites() -> dict:
    return yaml.safe_load((TASKS_DIR / "suites.yaml").read_text())


def _metrics_and_filters(cfg: dict) -> tuple[set[str], set[str]]:
    metrics: set[str] = set()
    for m in cfg.get("metric_list") or []:
        name = m["metric"]
        name = name.rsplit(".", 1)[-1] if "/" in name else name  # unresolved !function path
        metrics.add(name)
        ks = m.get("k", [])
        metrics.update(f"pass@{k}" for k in (ks if isinstance(ks, list) else [ks]))
    filters = {f["name"] for f in cfg.get("filter_list") or []} or {"none"}
    return metrics, filters


def _check_metric(manager: TaskManager, name: str, metric_key: str) -> None:
    metric, _, flt = metric_key.partition(",")
    entry = manager.task_index[name]
    if entry.kind.name == "GROUP":
        aggs = entry.cfg["aggregate_metric_list"]
        assert any(a["metric"] == metric and (a.get("filter_list") is None or flt in a["filter_list"]) for a in aggs), (
            name,
            metric_key,
            aggs,
        )
        return
    members = sorted(entry.tags) if entry.kind.name == "TAG" else [name]
    for member in members:
        metrics, filters = _metrics_and_filters(manager.task_index[member].cfg)
        assert metric in metrics and flt in filters, (member, metric_key, metrics, filters)


def test_suites_cover_the_papers_columns(suites):
    assert set(suites) == {"math", "tir", "general", "unsupported"}
    assert list(suites["math"]) == TABLE1
    assert list(suites["tir"]) == TABLE2
    assert set(suites["general"]) | set(suites["unsupported"]) >= set(FIGURE5)
    assert not set(suites["general"]) & set(suites["unsupported"])
    assert suites["tir"]["GSM-Hard"]["task"] == "gsm_hard_cot"
    for column, task in [
        ("SVAMP", "svamp_cot"),
        ("MAWPS", "mawps_cot"),
        ("TAB", "tabmwp_cot"),
        ("ASDiv", "asdiv_cot"),
        ("GSM8K", "gsm8k_cot"),
        ("MATH", "minerva_math500"),
    ]:
        assert suites["math"][column]["task"] == task
    assert all(isinstance(reason, str) and reason for reason in suites["unsupported"].values())


def test_every_suite_task_is_known_with_its_metric(manager, suites):
    for suite in ("math", "tir", "general"):
        for column, spec in suites[suite].items():
            assert set(spec) <= {
                "task",
                "num_fewshot",
                "metric",
                "gen_kwargs",
                "needs",
                "note",
            }, column
            assert isinstance(spec["num_fewshot"], int) and spec["num_fewshot"] >= 0
            assert spec["task"] in manager.all_tasks, (suite, column, spec["task"])
            _check_metric(manager, spec["task"], spec["metric"])
