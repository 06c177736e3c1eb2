"""The workflow's plan (slm.plan) on plain config dicts: models, pairs, evaluations, tables, figures."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from slm.plan import Plan

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SUITE = yaml.safe_load((REPO / "config" / "miniature-suite.yaml").read_text())
REPLICATES = yaml.safe_load((REPO / "config" / "replicates.yaml").read_text())


def config(**changes) -> dict:
    out = copy.deepcopy(DEFAULT)
    out.update(copy.deepcopy(changes))
    return out


def merged(first: dict, second: dict) -> dict:
    """``second`` layered over ``first``, nested mappings key by key (as Snakemake merges config files)."""
    out = copy.deepcopy(first)
    for key, value in second.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else copy.deepcopy(value)
    return out


def suite() -> dict:
    """The miniature suite as Snakemake merges it with --configfile: read first, the default's
    ``configfile:`` over it, then the command line's files again (so its runs come first)."""
    return merged(merged(SUITE, DEFAULT), SUITE)


def test_default_plan():
    plan = Plan(DEFAULT, ["config/config.yaml"])
    assert plan.runs == ["clm", "slm"] and plan.checkpoints == [600000]
    assert plan.delta == ("slm", "clm")
    rows = plan.table_models()
    assert [r["key"] for r in rows] == ["base", "reference", "clm", "slm"]
    assert [r["name"] for r in rows] == ["Base", "Reference", "clm: CLM", "slm: SLM (ratio 0.6)"]
    assert rows[1]["replicates"][0]["train_stats"] == "results/models/reference/final/train_stats.json"
    assert rows[3] == {
        "key": "slm",
        "name": "slm: SLM (ratio 0.6)",
        "role": "slm",
        "replicates": [
            {
                "seed": 1234,
                "eval_json": "results/eval/slm/final.json",
                "train_stats": "results/models/slm/final/train_stats.json",
            }
        ],
    }
    assert plan.replicates("slm") == ["slm"] and plan.seed_of("slm") == 1234  # one seed: no seed folder
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
    assert plan.train_fields("clm") == {"init_model": "results/models/base", "seed": 1234, "ratio": 1.0}
    assert plan.train_fields("slm") == {
        "init_model": "results/models/base",
        "seed": 1234,
        "ratio": 0.6,
        "unit": "batch",
    }
    assert spec["speedup_start"] == "base" and plan.speedup_table == [
        "results/tables/speedup.md",
        "results/tables/speedup.csv",
    ]
    assert spec["selection"] == {
        "clm": ["results/models/clm/final/train_stats.json"],
        "slm": ["results/models/slm/final/train_stats.json"],
    }


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
    assert plan.figures_spec([], None)["ratio"] is None and plan.speedup_table == []


def test_labels_of_soft_and_weak_to_strong_runs():
    plan = Plan(suite())
    assert plan.run_label("soft") == "soft: SLM (soft weights, T=1.0)"
    assert plan.run_label("w2s-slm") == "w2s-slm: SLM (ratio 0.6), from Base (strong)"
    assert [r["key"] for r in plan.table_models()][:3] == ["base", "base-strong", "reference"]
    assert plan.delta == ("slm", "clm")  # the runs named so, not the suite's first runs of each method


def test_suite_ratio_runs_evaluation_and_tables():
    plan = Plan(suite(), ["a.yaml", "b.yaml"])
    assert plan.ratio_runs() == {"slm-0.4": 0.4, "slm-0.5": 0.5, "slm-0.7": 0.7, "slm-0.8": 0.8, "clm": 1.0, "slm": 0.6}
    assert plan.eval_points("clm") == [f"tokens-{150000 * i}" for i in range(1, 8)] + ["final"]
    assert plan.eval_points("slm-0.4") == ["final"]
    assert "results/eval/slm-0.4/tokens-600000.json" not in plan.table_evals()
    # Table 2 on arith_gen's problems, then on each harder set, each with where its solutions went wrong
    tables = [f"results/tables/{stem}" for stem in ("table2", "table2_longer", "table2_larger")]
    assert plan.table2 == [
        *(f"{stem}{part}" for stem in tables for part in (".md", ".csv", ".tex", "_errors.md", "_errors.csv")),
        "results/tables/selection_roles.md",  # slm has token dynamics
        "results/tables/selection_roles.csv",
    ]
    assert plan.tir_runs == ["base", "reference", "clm", "slm"] and plan.tir_seeds == [1, 2, 3]
    assert plan.tir_delta == ("slm", "clm") and plan.roles_run == "slm"  # base and reference are controls
    # Table 2's rows in the config's order, whatever a JSON encoder does to mappings
    table2 = json.loads(json.dumps(plan.table2_spec(), sort_keys=True))
    assert [(t["task"], t["out"]) for t in table2["tables"]] == [
        ("arith_tir", tables[0]),
        ("arith_tir_longer", tables[1]),
        ("arith_tir_larger", tables[2]),
    ]
    for table, harder in zip(table2["tables"], ("", "harder-longer/", "harder-larger/")):
        assert [model for model, _ in table["evals"]] == ["base", "reference", "clm", "slm"]
        # clm lists seeds: its first replicate is fine-tuned, once per fine-tuning seed
        assert [u["eval_json"] for u in table["evals"][2][1]] == [
            f"results/eval/tir/{harder}clm/seed-1234/seed-{seed}/final.json" for seed in (1, 2, 3)
        ]
        assert [(u["pretraining_seed"], u["seed"]) for u in table["evals"][0][1]] == [(None, 1), (None, 2), (None, 3)]
        # every problem set is evaluated on the same final models
        assert table["evals"][2][1][0]["model_dir"] == "results/models/tir/clm/seed-1234/seed-1/final"
    # a harder set takes data.generator's bounds for what it does not set: 3-4 steps with operands up to 12
    assert plan.harder_spec("longer")["harder"] == {"problems": 400, "min_steps": 3, "max_steps": 4, "max_operand": 12}
    assert plan.harder_spec("larger")["harder"] == {"problems": 400, "min_steps": 1, "max_steps": 2, "max_operand": 20}
    assert "3-4 steps, operands up to 12" in table2["tables"][1]["problems"]
    assert plan.tir_keys == ["base", "reference", "clm/seed-1234", "slm/seed-1234"]
    assert plan.model_dir("clm/seed-1234") == "results/models/clm/seed-1234/final"  # what it is fine-tuned from
    assert plan.tir_points == ["final"] and plan.table2_curve == []  # no checkpoints: no curve
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
    assert plan.table_models()[1]["replicates"][0]["train_stats"] is None
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


def test_replicates_config_is_the_suites_replicated_comparison():
    """config/replicates.yaml plans the suite's clm and slm replicates with the same paths, so the
    suite run afterwards in the same directory reuses them; and nothing else of the suite."""
    alone, whole = Plan(merged(merged(REPLICATES, DEFAULT), REPLICATES)), Plan(suite())
    assert alone.runs == ["clm", "slm"] and alone.tir_runs == [] and not alone.runs_by_base
    for run in ("clm", "slm"):
        assert alone.replicates(run) == whole.replicates(run) and len(alone.seeds(run)) >= 3
        for replicate in alone.replicates(run):
            assert alone.train_fields(replicate) == whole.train_fields(replicate)
        assert alone.eval_points(run) == whole.eval_points(run) and len(alone.eval_points(run)) >= 7
    assert [r for r in alone.table_runs()] == [r for r in whole.table_runs() if r["run"] in ("clm", "slm")]


def test_replicates_of_the_suite():
    plan = Plan(suite())
    assert plan.seeds("slm") == [1234, 1235, 1236] and plan.seeds("slm-0.4") == [1234]
    assert plan.replicates("clm") == ["clm/seed-1234", "clm/seed-1235", "clm/seed-1236"]
    assert plan.replicates("slm-0.4") == ["slm-0.4"]
    assert plan.run_of("slm/seed-1235") == "slm" and plan.seed_of("slm/seed-1235") == 1235
    assert plan.train_fields("slm/seed-1236")["seed"] == 1236
    assert plan.model_dir("slm/seed-1235", "tokens-150000") == "results/models/slm/seed-1235/checkpoints/tokens-150000"
    assert len(plan.checkpoints) >= 6 and plan.eval_points("slm")[-1] == "final"
    row = next(r for r in plan.table_models() if r["key"] == "slm")
    assert [r["eval_json"] for r in row["replicates"]] == [
        f"results/eval/slm/seed-{s}/final.json" for s in (1234, 1235, 1236)
    ]
    curves = [r for r in plan.table_runs() if r["run"] == "clm"]
    assert [r["seed"] for r in curves] == [1234, 1235, 1236]
    assert curves[1]["checkpoints"][0]["eval_json"] == "results/eval/clm/seed-1235/tokens-150000.json"
    # one model where one is needed: the first seed's
    assert plan.trajectory("slm")[-1] == "results/models/slm/seed-1234/final"
    assert plan.tir_sources("slm") == [("slm/seed-1234", 1234)]  # Table 2 fine-tunes this one by default
    assert plan.tir_sources("reference") == [("reference", None)]
    assert plan.figures_spec(["d/slm", "d/clm"], None)["dynamics_seeds"] == {"slm": 1234, "clm": 1234}
    assert "results/models/slm/seed-1236/final" in plan.final_models()
    assert plan.tables_spec()["selection"]["slm"] == [
        f"results/models/slm/seed-{s}/final/train_stats.json" for s in (1234, 1235, 1236)
    ]


def test_table2_curve_evaluates_every_checkpoint_of_every_fine_tuning():
    config = suite()
    config["tool_integrated"] = {**config["tool_integrated"], "seeds": [1, 2]}
    config["tool_integrated"]["training"] = {**config["tool_integrated"]["training"], "checkpoints": [2000, 1000]}
    plan = Plan(config, ["a.yaml"])
    assert plan.tir_points == ["tokens-1000", "tokens-2000", "final"]  # in training order
    assert plan.table2[-3:] == [f"results/tables/table2_curve.{ext}" for ext in ("md", "csv", "png")]
    points = plan.table2_curve_spec()["points"]
    assert len(points) == 4 * 3 * 2  # models x points x seeds
    first, last = points[0], points[-1]
    assert first == {
        "model": "base",
        "point": "tokens-1000",
        "pretraining_seed": None,
        "seed": 1,
        "eval_json": "results/eval/tir/base/seed-1/tokens-1000.json",
        "model_dir": "results/models/tir/base/seed-1/checkpoints/tokens-1000",
    }
    assert (last["model"], last["pretraining_seed"], last["seed"], last["point"]) == ("slm", 1234, 2, "final")
    assert last["model_dir"] == "results/models/tir/slm/seed-1234/seed-2/final"


def test_table2_fine_tunes_every_listed_pretraining_seed():
    """With tool_integrated.pretraining_seeds, each run's row spans those pretrained models times the
    fine-tuning seeds, in the run's seed order; the controls stay one model each; a seed that some run
    was not trained with is refused before any job, naming the key."""
    config = suite()
    config["tool_integrated"] = {**config["tool_integrated"], "seeds": [1, 2], "pretraining_seeds": [1236, 1234]}
    plan = Plan(config)
    assert plan.tir_sources("clm") == [("clm/seed-1234", 1234), ("clm/seed-1236", 1236)]
    assert plan.tir_keys == ["base", "reference", "clm/seed-1234", "clm/seed-1236", "slm/seed-1234", "slm/seed-1236"]
    units = plan.tir_units("slm")
    assert [(u["pretraining_seed"], u["seed"]) for u in units] == [(1234, 1), (1234, 2), (1236, 1), (1236, 2)]
    assert units[2]["eval_json"] == "results/eval/tir/slm/seed-1236/seed-1/final.json"
    assert len(plan.tir_units("base")) == 2
    assert "tir/clm/seed-1236/seed-2/final" in plan.released
    # every replicate of a run is released with its own evaluation (not results/models/clm/final)
    assert plan.released["clm/seed-1235/final"] == "results/eval/clm/seed-1235/final.json"
    assert "clm/final" not in plan.released
    from slm.config import ConfigError
    from smoke import workflow_checks

    workflow_checks(config, REPO)
    config["tool_integrated"]["pretraining_seeds"] = [1234, 99]
    with pytest.raises(ConfigError, match=r"tool_integrated\.pretraining_seeds.*\[99\].*'clm'"):
        workflow_checks(config, REPO)


@pytest.mark.parametrize(
    ("variant", "changed"),
    [
        ("tir-program-loss.yaml", {"loss_kinds": ["program", "answer"]}),
        ("tir-mask-tool-output.yaml", {"loss_kinds": ["prompt", "program", "answer", "other"]}),
        ("tir-half-lr.yaml", {"lr": SUITE["tool_integrated"]["training"]["lr"] / 2}),
        ("tir-8-epochs.yaml", {"epochs": 2 * SUITE["tool_integrated"]["training"]["epochs"]}),
    ],
)
def test_table2_variants_layered_on_the_suite(variant, changed):
    """A Table 2 variant on top of the suite passes what the workflow checks before any job, changes
    only what it is named for in the fine-tuning and evaluates a checkpoint at the end of every epoch
    but the last."""
    from slm.data.generate import TOOL_SOLUTION_KINDS
    from smoke import workflow_checks

    layer = yaml.safe_load((REPO / "config" / variant).read_text())
    assert list(layer) == ["tool_integrated"] and set(layer["tool_integrated"]) == {"training"}
    config = merged(suite(), layer)
    workflow_checks(config, REPO)
    training = config["tool_integrated"]["training"]
    assert set(training.get("loss_kinds", [])) < set(TOOL_SOLUTION_KINDS)
    assert {k: v for k, v in training.items() if k != "checkpoints"} == {
        **SUITE["tool_integrated"]["training"],
        **changed,
    }
    plan = Plan(config, ["a.yaml", "b.yaml"])
    assert plan.tir_points == [f"tokens-{n}" for n in training["checkpoints"]] + ["final"]
    assert len(training["checkpoints"]) == training["epochs"] - 1
