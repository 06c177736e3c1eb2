"""The workflow's plan (slm.plan) on plain config dicts: models, pairs, evaluations, tables, figures."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from slm.plan import Plan

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SUITE = yaml.safe_load((REPO / "config" / "miniature-suite.yaml").read_text())


def config(**changes) -> dict:
    out = copy.deepcopy(DEFAULT)
    out.update(copy.deepcopy(changes))
    return out


def suite() -> dict:
    """The miniature suite as Snakemake merges it over the default: its runs first, then the default's."""
    merged = config(**{k: v for k, v in SUITE.items() if k not in ("runs", "evaluation", "data")})
    merged["runs"] = {**SUITE["runs"], **DEFAULT["runs"]}
    merged["evaluation"] = {**DEFAULT["evaluation"], **SUITE["evaluation"]}
    merged["data"] = {**DEFAULT["data"], **SUITE["data"]}
    return merged


def test_default_plan():
    plan = Plan(DEFAULT, ["config/config.yaml"])
    assert plan.runs == ["clm", "slm"] and plan.checkpoints == [600000]
    assert plan.delta == ("slm", "clm")
    rows = plan.table_models()
    assert [r["key"] for r in rows] == ["base", "reference", "clm", "slm"]
    assert [r["name"] for r in rows] == ["Base", "Reference", "clm: CLM", "slm: SLM (ratio 0.6)"]
    assert rows[1]["train_stats"] == "results/models/reference/final/train_stats.json"
    assert rows[3] == {
        "key": "slm",
        "name": "slm: SLM (ratio 0.6)",
        "role": "slm",
        "eval_json": "results/eval/slm/final.json",
        "train_stats": "results/models/slm/final/train_stats.json",
    }
    assert plan.eval_points("slm") == ["tokens-600000", "final"]
    assert plan.trajectory("clm") == [
        "results/models/base",
        "results/models/clm/checkpoints/tokens-600000",
        "results/models/clm/final",
    ]
    assert plan.figures == ["figure1.png", "figure6.png", "figure7.png", "figure9.png", "figure5.png"]
    assert plan.figure5_table == [
        "results/tables/figure5.md",
        "results/tables/figure5.csv",
        "results/tables/figure5.tex",
    ]
    assert plan.table2 == [] and plan.table3 == []
    assert plan.accuracy_tasks == ["arith_gen", "arith_mc", "arith_step"] and plan.loss_tasks == ["math_ppl"]
    spec = plan.tables_spec()
    assert spec["delta"] == ["slm", "clm"]  # keys, not the labels shown
    assert [c["tokens"] for c in spec["runs"][1]["checkpoints"]] == [600000, None]
    assert plan.selection_fields("clm") == {"ratio": 1.0}
    assert plan.selection_fields("slm") == {"ratio": 0.6, "unit": "batch"}


def test_the_pair_is_chosen_by_run_name_then_by_method():
    runs = {
        "a-clm": {"method": "clm"},
        "b-slm": {"method": "slm", "ratio": 0.5},
        "slm": {"method": "slm", "ratio": 0.7},
    }
    assert Plan(config(runs=runs)).delta == ("slm", "a-clm")
    del runs["slm"]
    assert Plan(config(runs=runs)).delta == ("b-slm", "a-clm")
    assert Plan(config(runs={"x": {"method": "clm"}})).delta is None
    plan = Plan(config(runs={"x": {"method": "clm"}}))
    assert plan.figures == ["figure1.png", "figure7.png", "figure9.png"] and plan.figure5_table == []
    assert plan.figures_spec([], None)["selector"] is None


def test_labels_of_soft_and_weak_to_strong_runs():
    plan = Plan(suite())
    assert plan.run_label("soft") == "soft: SLM (soft weights, T=1.0)"
    assert plan.run_label("w2s-slm") == "w2s-slm: SLM (ratio 0.6), from Base (strong)"
    assert [r["key"] for r in plan.table_models()][:3] == ["base", "base-strong", "reference"]
    assert plan.delta == ("slm", "clm")  # the runs named so, not the suite's first runs of each method


def test_suite_ratio_runs_evaluation_and_tables():
    plan = Plan(suite(), ["a.yaml", "b.yaml"])
    assert plan.ratio_runs() == {"slm-0.4": 0.4, "slm-0.5": 0.5, "slm-0.7": 0.7, "slm-0.8": 0.8, "clm": 1.0, "slm": 0.6}
    assert plan.eval_points("clm") == ["tokens-600000", "final"] and plan.eval_points("slm-0.4") == ["final"]
    assert "results/eval/slm-0.4/tokens-600000.json" not in plan.table_evals()
    assert plan.table2 == [
        "results/tables/table2.md",
        "results/tables/table2.csv",
        "results/tables/table2.tex",
        "results/tables/table2_errors.md",
        "results/tables/table2_errors.csv",
        "results/tables/selection_roles.md",  # slm has token dynamics
        "results/tables/selection_roles.csv",
    ]
    assert plan.tir_runs == ["base", "reference", "clm", "slm"] and plan.tir_seeds == [1, 2, 3]
    assert plan.tir_delta == ("slm", "clm") and plan.roles_run == "slm"  # base and reference are controls
    spec = plan.table3_spec("results/tables/results.csv")
    assert spec["rows"] == ["Base (strong)", "w2s-clm", "w2s-slm"]
    assert spec["values"] == {"w2s-clm": {"reference": None}, "w2s-slm": {"reference": "Reference"}}
    assert spec["parameters"] == {
        "Base": "results/models/base",
        "Reference": "results/models/reference/final",
        "Base (strong)": "results/models/base-strong",
        "w2s-clm": "results/models/w2s-clm/final",
        "w2s-slm": "results/models/w2s-slm/final",
    }
    assert spec["provenance"]["config"] == "a.yaml, b.yaml"
    assert spec["provenance"]["base of w2s-slm"] == "results/models/base-strong"
    assert (
        plan.run_base("slm") == "results/models/base" and plan.model_dir("base-strong") == "results/models/base-strong"
    )


@pytest.mark.parametrize(
    "run, expected",
    [
        ("slm", (0.6, "slm")),  # its own selection
        ("slm-0.4", (0.4, "slm-0.4")),
        ("clm", (0.6, "slm")),  # the SLM run it is compared with, not the first SLM run of the config
        ("soft", (0.6, "slm")),  # a soft run selects no top-k
    ],
)
def test_the_dynamics_view_names_whose_ratio_it_marks(run, expected):
    assert Plan(suite()).dynamics_ratio(run) == expected


def test_given_reference_and_hub_base_models():
    plan = Plan(
        config(
            reference={"path": "org/reference"},
            base_model={"path": "org/base"},
            tokenizer={"from_base_model": True},
        )
    )
    assert plan.reference_model() == "org/reference" and plan.model_dir("reference") == "org/reference"
    assert plan.table_models()[1]["train_stats"] is None
    assert plan.model_dir("base") == "org/base" and plan.trajectory("slm")[0] == "org/base"
    initialised = config(base_model={"init": DEFAULT["base_model"]["init"]}, reference={"init_model": "org/ref-init"})
    plan = Plan(initialised)
    assert plan.base_model() == "results/models/base-init" and plan.reference_init() == "org/ref-init"


def test_checkpoint_evaluation_settings():
    evaluation = {**DEFAULT["evaluation"], "checkpoints": False}
    assert Plan(config(evaluation=evaluation)).eval_points("slm") == ["final"]
    evaluation["checkpoints"] = ["clm"]
    plan = Plan(config(evaluation=evaluation))
    assert plan.eval_points("clm") == ["tokens-600000", "final"] and plan.eval_points("slm") == ["final"]
