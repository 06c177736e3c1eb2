"""The real Snakemake workflow: a dry run of the default, bad configs refused, and one full smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from smoke import REPO, snakemake


def with_config(workdir: Path, config: dict) -> Path:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


STRONG_INIT = {"hidden_size": 256, "num_layers": 6, "num_heads": 4, "intermediate_size": 640}
# The miniature suite at smoke size, layered over a copy of config/miniature-suite.yaml without
# SMOKE_SUITE_SKIPPED (test_weak_to_strong_runs_start_from_their_base plans every run of the suite).
SMOKE_SUITE = {
    # two replicate seeds of clm and slm (the suite's first two; it runs three)
    "runs": {"clm": {"seeds": [1234, 1235]}, "slm": {"seeds": [1234, 1235]}},
    # the weak-to-strong student
    "base_models": {
        "strong": {
            "init": {"hidden_size": 48, "num_layers": 3, "num_heads": 2, "intermediate_size": 128},
            "pretrain": {"max_tokens": 4096, "lr": 3.0e-3, "batch_size": 8, "warmup_steps": 2},
        }
    },
    "tool_integrated": {
        "seeds": [1, 2],
        # clm and slm of their second pretraining seed only: not the default (each run's first seed)
        "pretraining_seeds": [1235],
        # two epochs with a checkpoint after the first step: Table 2's learning curve
        # and the loss on the program and the answer line only (config/tir-program-loss.yaml)
        "training": {"epochs": 2, "batch_size": 8, "checkpoints": [2048], "loss_kinds": ["program", "answer"]},
        "evaluation": {"max_program_tokens": 16},
        # the smoke data's operands go up to 20 already: the suite's larger set goes further
        "harder_sets": {"larger": {"max_operand": 30}},
    },
    # the suite's checkpoints every 150K tokens, at smoke size: two and the final model
    "training": {"checkpoints": [2048, 4096]},
    # the default's dynamics runs (the smoke config has clm only): SLM's give the selection by token role
    "dynamics": {"runs": ["clm", "slm"]},
}
# Ablations that take the code path of another the smoke run keeps (slm-0.4 and slm-0.8, soft).
SMOKE_SUITE_SKIPPED = ("slm-0.5", "slm-0.7", "soft-t2", "soft-t4")


def test_default_config_plans_the_whole_pipeline(tmp_path):
    out = snakemake(with_config(tmp_path, default_config()), "-n", "--cores", "2").stdout
    for rule in (
        "generate_data",
        "train_tokenizer",
        "prepare",
        "pretrain_base",
        "train_reference",
        "score",
        "train",
        "evaluate",
        "tables",
    ):
        assert f"rule {rule}:" in out
    assert (
        "results/scores/corpus/shard-003" in out
        and "results/scores/validation/shard-000" in out
        and "results/models/slm/checkpoints/tokens-600000" in out
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["runs"]["slm"].update(ratio=1.5), "ratio"),
        (lambda c: c["runs"].update(dpo={"method": "dpo"}), "method"),
        (lambda c: c["training"].update(checkpoints=[5_000_000]), "training.checkpoints"),
        (lambda c: c["data"].update(corpus={"source": "files", "paths": ["missing.jsonl"]}), "missing.jsonl"),
        (lambda c: c["evaluation"]["metrics"].pop("arith_mc"), "evaluation.metrics"),
        (lambda c: c["runs"]["slm"].update(base_model="strong"), "runs.slm.base_model"),
        (lambda c: c.update(base_models={"init": {"init": STRONG_INIT}}), "(^|-)init$"),
        (
            lambda c: c.update(base_models={"strong": {"init": STRONG_INIT, "pretrain": {"lr": 1e-3}}}),
            "base_models.strong.pretrain",
        ),
        (
            lambda c: c.update(
                tokenizer={"from_base_model": True},
                base_model={"path": "org/base"},
                base_models={"strong": {"init": STRONG_INIT}},
            ),
            "base_models.strong.init",
        ),
        (lambda c: c.update(base_models={"strong": {"path": "org/strong"}}), "base_models.strong.path"),
        (
            lambda c: (
                c.update(base_models={"strong": {"init": STRONG_INIT}}),
                c["runs"].update({"base-strong": {"method": "clm"}}),
            ),
            "runs.base-strong",
        ),
        # results/{models,eval}/tir/ hold Table 2's fine-tunings
        (lambda c: c["runs"].update({"tir": {"method": "clm"}}), "'tir' should not be valid"),
        (lambda c: c.update(tool_integrated={"runs": ["dpo"], "training": {"epochs": 1}}), "tool_integrated.runs"),
        (lambda c: c.update(tool_integrated={"runs": ["slm"], "training": {"epochs": 1}}), "data.tir"),
        (
            # a harder set within the training bounds (the default's 1-2 steps, operands up to 12)
            lambda c: (
                c["data"].update(tir={"source": "generated"}),
                c.update(
                    tool_integrated={
                        "runs": ["slm"],
                        "training": {"epochs": 1},
                        "harder_sets": {"same": {"max_operand": 12}},
                    }
                ),
            ),
            "config key 'tool_integrated.harder_sets.same': needs more steps than data.generator.max_steps (2)",
        ),
        (lambda c: c["runs"]["slm"].update(weighting="soft"), "runs.slm.ratio': a soft-weighted run"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, change, message):
    config = default_config()
    change(config)
    proc = snakemake(with_config(tmp_path, config), "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_weak_to_strong_runs_start_from_their_base(tmp_path):
    """The miniature suite's w2s runs: their own base, made here; the one reference; Table 3."""
    out = snakemake(
        with_config(tmp_path, default_config()),
        "-n",
        "-p",
        "--cores",
        "2",
        "all",
        "weak_to_strong",
        "--configfile",
        str(REPO / "config" / "miniature-suite.yaml"),
    ).stdout
    for rule in ("init_base", "pretrain_base", "table3"):
        assert f"rule {rule}:" in out
    assert "output: results/models/base-strong-init" in out and "output: results/eval/base-strong/final.json" in out
    blocks = {b.split("wildcards: run=")[1].split()[0]: b for b in out.split("\n\n") if "rule train:" in b}
    for run in ("w2s-clm", "w2s-slm"):
        assert "input: results/models/base-strong," in blocks[run]
        assert '"init_model": "results/models/base-strong"' in blocks[run]
    # the suite trains slm once per seed: every replicate starts from the default base
    slm = [run for run in blocks if run.startswith("slm/seed-")]
    assert len(slm) >= 3 and all('"init_model": "results/models/base"' in blocks[run] for run in slm)
    assert '"reference_model": "results/models/reference/final"' in blocks["w2s-slm"]
    # one reference model, one scoring of the corpus, shared by every run
    assert out.count("rule train_reference:") == 1 and out.count("output: results/scores/corpus/shard-000") == 1
    table3 = next(b for b in out.split("\n\n") if "rule table3:" in b)
    assert '"rows": ["Base (strong)", "w2s-clm", "w2s-slm"]' in table3
    # without base_models nothing of the kind is planned
    default = snakemake(tmp_path, "-n", "--cores", "2").stdout
    assert "extra_base" not in default and "table3" not in default


@pytest.fixture(scope="module")
def smoke_run(smoke_local) -> Path:
    """The smoke run's working directory; the tests below add to it (more runs, a report)."""
    return smoke_local[0]


@pytest.mark.e2e
def test_results_table_has_clm_and_slm_rows_with_numbers(smoke_run):
    table = pd.read_csv(smoke_run / "results/tables/results.csv", index_col=0)
    names = list(table.index)
    assert any(n.startswith("slm") for n in names) and any(n.startswith("clm") for n in names)
    assert any(n.startswith("Δ") for n in names)
    task_columns = [c for c in table.columns if c.split(" ")[0] in ("arith_gen", "arith_mc", "arith_step", "math_ppl")]
    assert len(task_columns) == 4
    for name in names:
        if name.startswith(("slm", "clm")):
            assert np.isfinite(table.loc[name, task_columns].astype(float)).all()
    stats = json.loads((smoke_run / "results/models/slm/final/train_stats.json").read_text())
    assert stats["tokens_selected"] == pytest.approx(0.6 * stats["tokens_loss_bearing"], abs=stats["steps"])
    slm_row = [n for n in names if n.startswith("slm")][0]
    assert int(table.loc[slm_row, "Train tokens"]) == stats["tokens_selected"]
    selection = pd.read_csv(smoke_run / "results/tables/selection.csv", index_col=0)
    assert {"math", "noise", "boilerplate", "all"} <= set(selection.index)
    curve = pd.read_csv(smoke_run / "results/tables/checkpoints.csv")
    assert sorted(curve["tokens_seen"].unique()) == [4096, 8192] and set(curve["seed"]) == {7}
    # one seed: no interval over seeds; the speed-up of SLM over CLM is read off the curves
    intervals = pd.read_csv(smoke_run / "results/tables/intervals.csv")
    assert set(intervals["n_seeds"]) == {1} and intervals["seed_low"].isna().all()
    assert "speed-up" in (smoke_run / "results/tables/speedup.md").read_text()


@pytest.mark.e2e
def test_score_files_align_with_token_files(smoke_run):
    scored = sorted((smoke_run / "results/scores").glob("*/shard-*"))
    assert [p.parent.name for p in scored] == ["corpus", "corpus", "validation"]
    for scores_dir in scored:
        shard = smoke_run / "results/data/packed" / scores_dir.parent.name / scores_dir.name
        assert (
            np.load(scores_dir / "scores.npy", mmap_mode="r").shape
            == np.load(shard / "tokens.npy", mmap_mode="r").shape
        )


@pytest.mark.e2e
def test_checkpoint_loads_and_generates(smoke_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smoke_run / "results/models/slm/checkpoints/tokens-4096"
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer("Question: Tom has 3 apples.", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 5
    assert json.loads((path / "train_stats.json").read_text())["tokens_seen"] == 4096


@pytest.mark.e2e
def test_rerun_is_a_no_op_and_logs_exist(smoke_run):
    proc = snakemake(smoke_run, "-n", "--cores", "1")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    for log in ("logs/train/slm.log", "logs/score/corpus-000.log", "logs/evaluate/slm/final.log"):
        assert (smoke_run / log).stat().st_size > 0


@pytest.mark.e2e
def test_a_finished_run_prints_its_results_table(smoke_run):
    console = (smoke_run / "console.log").read_text()
    table = (smoke_run / "results/tables/results.md").read_text()
    assert "[" in table.splitlines()[2]  # the first model's values carry their bootstrap intervals
    assert f"results/tables/results.md:\n\n{table}" in console


@pytest.mark.e2e
def test_job_logs_show_progress_and_training_is_tracked(smoke_run):
    """Progress lines with an ETA in the job logs; TensorBoard events of every training stage, equal
    to its metrics.jsonl; a model card in every model directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from slm.tracking import scalars

    logs = {
        "logs/train/slm.log": "train slm: 100% 16/16 step [",
        "logs/score/corpus-000.log": "score results/data/packed/corpus/shard-000: 100% ",
        "logs/evaluate/slm/final.log": "Running generate_until requests: 100% ",
    }
    for log, line in logs.items():
        assert line in (smoke_run / log).read_text() and "ETA" in (smoke_run / log).read_text(), log
    assert sorted(p.name for p in (smoke_run / "logs/tensorboard").iterdir()) == ["base", "clm", "reference", "slm"]
    events = EventAccumulator(str(smoke_run / "logs/tensorboard/slm"))
    events.Reload()
    metrics = [json.loads(line) for line in (smoke_run / "results/models/slm/final/metrics.jsonl").open()]
    expected = {}
    for entry in metrics:
        for tag, value in scalars(entry).items():
            expected.setdefault(tag, []).append((entry["step"], float(np.float32(value))))
    assert {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]} == expected
    for model in ("base-init", "base", "reference/final", "slm/final", "slm/checkpoints/tokens-4096"):
        assert (smoke_run / "results/models" / model / "README.md").read_text().startswith("---\n"), model


@pytest.mark.e2e
def test_model_cards_carry_the_evaluation_results(smoke_run):
    from slm.model_card import parse

    snakemake(smoke_run, "--cores", "1", "model_cards")
    released = sorted(
        str(p.relative_to(smoke_run / "results/release")) for p in smoke_run.glob("results/release/**/*.safetensors")
    )
    assert released == [f"{m}/model.safetensors" for m in ("base", "clm/final", "reference/final", "slm/final")]
    release, model = smoke_run / "results/release/slm/final", smoke_run / "results/models/slm/final"
    assert (release / "model.safetensors").stat().st_ino == (model / "model.safetensors").stat().st_ino
    front, body = parse((release / "README.md").read_text())
    evaluation = json.loads((smoke_run / "results/eval/slm/final.json").read_text())
    carded = {
        (r["dataset"]["name"], m["name"]): m["value"] for r in front["model-index"][0]["results"] for m in r["metrics"]
    }
    assert carded == {
        (task, metric): value
        for task, metrics in evaluation["tasks"].items()
        for metric, value in metrics.items()
        if "_stderr," not in metric and value is not None
    }
    assert "the top 60% of all loss-bearing tokens" in body
    proc = snakemake(smoke_run, "-n", "--cores", "1")
    assert "Nothing to be done" in proc.stdout + proc.stderr  # the release changed no output of the run


@pytest.mark.e2e
def test_a_changed_hyperparameter_reruns_training(smoke_run):
    config = yaml.safe_load((smoke_run / "config" / "config.yaml").read_text())
    config["training"]["lr"] *= 2
    changed = smoke_run / "config" / "changed-lr.yaml"
    changed.write_text(yaml.safe_dump(config))
    out = snakemake(smoke_run, "-n", "--cores", "1", "--configfile", str(changed)).stdout
    planned = {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith(("rule ", "localrule "))}
    assert {"train", "evaluate", "tables"} <= planned
    assert not planned & {"train_reference", "score", "prepare", "generate_data"}


@pytest.mark.e2e
def test_token_dynamics_outputs(smoke_run):
    from matplotlib.image import imread

    out = smoke_run / "results/dynamics/clm"
    shares = pd.read_csv(out / "shares.csv")
    overall = shares[shares["kind"] == "all"]
    assert set(overall["category"]) <= {"H->H", "L->H", "H->L", "L->L"}
    assert overall["share"].sum() == pytest.approx(100.0)
    curves = pd.read_csv(out / "curves.csv")
    assert sorted(curves["tokens_seen"].unique()) == [0, 4096, 8192]
    image = imread(out / "figure3.png")
    assert image.ndim == 3 and image.std() > 0
    assert 'id="selection"' in (out / "tokens.html").read_text()
    # The slice is held out: its tokens are the validation shard's, which no run trained on.
    losses = np.load(out / "losses.npz")
    validation = np.load(smoke_run / "results/data/packed/validation/shard-000/tokens.npy")
    seq_len = losses["tokens"].size // losses["sequence_index"].size
    expected = validation.reshape(-1, seq_len)[losses["sequence_index"]].reshape(-1)
    np.testing.assert_array_equal(losses["tokens"], expected)


@pytest.mark.e2e
def test_figures_paper_table_and_report(smoke_run):
    from matplotlib.image import imread

    for name in ("figure1", "figure5", "figure6", "figure7", "figure9"):
        image = imread(smoke_run / f"results/figures/{name}.png")
        assert image.ndim == 3 and image.std() > 0, name
    captions = json.loads((smoke_run / "results/figures/captions.json").read_text())
    assert "checkpoints.csv" in captions["figure1.png"]
    assert "results/dynamics/slm/losses.npz" in captions["figure6.png"]
    figure6 = pd.read_csv(smoke_run / "results/figures/figure6.csv")
    assert set(figure6["run"]) == {"slm", "clm"} and figure6["loss"].notna().all()
    assert set(figure6["selected_by"].dropna()) == {"slm's excess loss", "clm's excess loss", "reference loss alone"}
    assert "the tokens slm selects" in captions["figure7.png"]
    gains = pd.read_csv(smoke_run / "results/tables/figure5.csv")
    assert list(gains["task"])[:-1] == ["arith_gen", "arith_mc", "arith_step", "math_ppl"]
    paper = pd.read_csv(smoke_run / "results/tables/paper.csv")
    assert {"this run", "paper"} == set(paper["Source"])
    assert (paper.loc[paper["Model"] == "Rho-1-Math", "AVG"] == [38.1, 66.2]).all()
    assert "\\begin{tabular}" in (smoke_run / "results/tables/paper.tex").read_text()
    snakemake(smoke_run, "--report", "report.html", "--cores", "1")
    html = (smoke_run / "report.html").read_text()
    assert "Token dynamics" in html and "Figures" in html


@pytest.mark.e2e
def test_miniature_suite_at_smoke_size(smoke_run):
    """The ablation runs of config/miniature-suite.yaml on the smoke config: one table, Figure 9, and
    the weak-to-strong runs (Table 3) with the suite's strong base shrunk to smoke size."""
    from slm.reported import count_parameters, reported_table

    suite = yaml.safe_load((REPO / "config" / "miniature-suite.yaml").read_text())
    assert suite["runs"]["slm"]["seeds"] == suite["runs"]["clm"]["seeds"] and len(suite["runs"]["slm"]["seeds"]) >= 3
    assert set(SMOKE_SUITE_SKIPPED) < set(suite["runs"])
    suite["runs"] = {run: spec for run, spec in suite["runs"].items() if run not in SMOKE_SUITE_SKIPPED}
    smoke = yaml.safe_load((REPO / "tests" / "e2e" / "config.yaml").read_text())
    configs = {"suite.yaml": suite, "smoke-suite.yaml": SMOKE_SUITE}
    for name, config in configs.items():
        (smoke_run / "config" / name).write_text(yaml.safe_dump(config, allow_unicode=True))
    configfiles = [str(smoke_run / "config" / name) for name in configs]
    snakemake(smoke_run, "--configfile", *configfiles, "--cores", "2", "paper_miniature", "weak_to_strong")
    seeds = SMOKE_SUITE["runs"]["slm"]["seeds"]
    # Table 2: clm and slm (of one pretraining seed), and the base and reference models as controls,
    # fine-tuned on the tool-integrated solutions once per fine-tuning seed, evaluated with the tool.
    pretrained = SMOKE_SUITE["tool_integrated"]["pretraining_seeds"]
    starts = {
        "base": "results/models/base",
        "reference": "results/models/reference/final",
        **{f"{run}/seed-{p}": f"results/models/{run}/seed-{p}/final" for run in ("clm", "slm") for p in pretrained},
    }
    for key, start in starts.items():
        for seed in (1, 2):
            stats = json.loads((smoke_run / f"results/models/tir/{key}/seed-{seed}/final/train_stats.json").read_text())
            assert stats["init_model"] == start
            # the loss on what the model writes when evaluated only
            assert {kind for kind, counts in stats["kinds"].items() if counts["seen"]} == {"program", "answer"}
            for point in ("tokens-2048", "final"):
                evaluation = json.loads((smoke_run / f"results/eval/tir/{key}/seed-{seed}/{point}.json").read_text())
                assert evaluation["n"] == 12 and len(evaluation["samples"]) == 12
    table2 = pd.read_csv(smoke_run / "results/tables/table2.csv")
    assert table2["Source"].tolist()[:5] == ["this run"] * 5
    models = ["base", "reference", "clm", "slm"]
    assert table2["Model"].tolist()[:4] == [f"{m} + TIR fine-tuning" for m in models]
    per_seed = table2.set_index("Model")["per seed"]
    assert [len(per_seed[f"{m} + TIR fine-tuning"].split(" / ")) for m in models] == [2] * 4
    errors = pd.read_csv(smoke_run / "results/tables/table2_errors.csv", index_col=0)
    assert errors.sum(axis=1).round().tolist() == [100.0] * 4
    # the suite's harder sets: each evaluated on every final fine-tuning, a Table 2 of its own
    for harder in ("longer", "larger"):
        lines = (smoke_run / f"results/data/raw/eval/arith_tir_{harder}.jsonl").read_text().splitlines()
        problems = [json.loads(line) for line in lines]
        key = f"slm/seed-{pretrained[0]}"
        evaluation = json.loads((smoke_run / f"results/eval/tir/harder-{harder}/{key}/seed-2/final.json").read_text())
        assert evaluation["model"] == f"results/models/tir/{key}/seed-2/final"
        assert [s["question"] for s in evaluation["samples"]] == [p["question"] for p in problems]
        assert evaluation["n"] == len(problems) == 12  # data.generator.eval_problems by default
        table = pd.read_csv(smoke_run / f"results/tables/table2_{harder}.csv").set_index("Model")
        assert table.loc["slm + TIR fine-tuning", "per seed"].split(" / ")[1] == f"{100 * evaluation['accuracy']:.1f}"
    curve = pd.read_csv(smoke_run / "results/tables/table2_curve.csv")
    assert (smoke_run / "results/tables/table2_curve.png").stat().st_size > 0
    assert len(curve) == (2 + 2 * len(pretrained)) * 2 * 2  # (controls + runs x pretraining seeds) x points x seeds
    at = curve.set_index(["model", "pretraining_seed", "seed", "point"])
    assert at.loc[("slm", pretrained[0], 1, "tokens-2048"), "tokens_seen"] == 2048
    assert at.loc[("slm", pretrained[0], 1, "final"), "tokens_seen"] > 2048
    final = json.loads((smoke_run / f"results/eval/tir/slm/seed-{pretrained[0]}/seed-2/final.json").read_text())
    assert at.loc[("slm", pretrained[0], 2, "final"), "accuracy"] == pytest.approx(100 * final["accuracy"])
    roles = pd.read_csv(smoke_run / "results/tables/selection_roles.csv")
    assert {"operand", "operator", "result"} <= set(roles.loc[roles["kind"] == "math", "role"])
    assert {"arith_tir (%)", "tool ran (%)", "GSM8K", "GSM-Hard"} <= set(table2.columns)
    table = pd.read_csv(smoke_run / "results/tables/results.csv", index_col=0)
    runs = {name.split(":")[0] for name in table.index if ":" in name}
    assert runs == {"clm", "slm", *suite["runs"]}
    assert "Base (strong)" in table.index
    # Replicates: clm and slm once per seed, each evaluated at every checkpoint; the tables average them.
    for run, ratio in (("clm", 1.0), ("slm", 0.6)):
        metrics = set()
        for seed in seeds:
            final = smoke_run / f"results/models/{run}/seed-{seed}/final"
            assert json.loads((final / "train_stats.json").read_text())["ratio"] == ratio
            metrics.add((final / "metrics.jsonl").read_text())
        assert len(metrics) == len(seeds)  # another seed, another data order: other losses
    curve = pd.read_csv(smoke_run / "results/tables/checkpoints.csv")
    slm_curve = curve[curve["run"] == "slm"]
    assert sorted(slm_curve["seed"].unique()) == seeds
    assert sorted(slm_curve["tokens_seen"].unique()) == [2048, 4096, 8192]
    intervals = pd.read_csv(smoke_run / "results/tables/intervals.csv").set_index(["key", "column"])
    for key in ("slm", "clm", "Δ"):
        row = intervals.loc[(key, "AVG")]
        assert row["n_seeds"] == len(seeds) and row["seed_low"] <= row["value"] <= row["seed_high"]
    speedup = pd.read_csv(smoke_run / "results/tables/speedup.csv")
    assert sorted(speedup["seed"].unique()) == seeds and set(speedup["column"]) >= {"AVG", "arith_step"}
    assert "speed-up" in (smoke_run / "results/tables/speedup.md").read_text()
    ablations = [run for run in suite["runs"] if "method" in suite["runs"][run]]
    for run in ablations:
        stats = json.loads((smoke_run / f"results/models/{run}/final/train_stats.json").read_text())
        assert stats["ratio"] == suite["runs"][run].get("ratio", 1.0)
        assert stats["score_fn"] == suite["runs"][run].get("score_fn", "excess")
        if suite["runs"][run].get("weighting") != "soft":
            # Rounding per batch, or per sequence for unit: sequence.
            n_sequences = stats["tokens_seen"] // smoke["sequence_length"]
            assert stats["tokens_selected"] == pytest.approx(
                stats["ratio"] * stats["tokens_loss_bearing"], abs=n_sequences / 2
            )
    selection = pd.read_csv(smoke_run / "results/tables/selection.csv", index_col=0)
    assert {"slm-0.4", "unit-document", "score-random"} <= set(selection.columns)
    captions = json.loads((smoke_run / "results/figures/captions.json").read_text())
    assert "Figure 9" in captions["figure9.png"]
    assert "the band its 95% t interval" in captions["figure1.png"]

    # Weak-to-strong: the w2s runs start from the strong base; SLM is guided by the one small reference.
    slm = json.loads((smoke_run / f"results/models/slm/seed-{seeds[0]}/final/train_stats.json").read_text())
    assert slm["init_model"] == "results/models/base"
    for run in ("w2s-clm", "w2s-slm"):
        stats = json.loads((smoke_run / f"results/models/{run}/final/train_stats.json").read_text())
        assert stats["init_model"] == "results/models/base-strong"
    assert stats["reference_model"] == slm["reference_model"] == "results/models/reference/final"
    strong = json.loads((smoke_run / "results/models/base-strong/config.json").read_text())
    assert strong["hidden_size"] == SMOKE_SUITE["base_models"]["strong"]["init"]["hidden_size"]
    n_strong = count_parameters(smoke_run / "results/models/base-strong")
    assert n_strong > count_parameters(smoke_run / "results/models/base")
    assert n_strong > count_parameters(smoke_run / "results/models/reference/final")
    table3 = pd.read_csv(smoke_run / "results/tables/table3.csv")
    paper = reported_table("table3_weak_to_strong")
    assert table3["Source"].tolist() == ["this run"] * 3 + ["paper"] * len(paper)
    assert table3["Model"].tolist()[3:] == ["Llama-2-7B-CT", "Llama-2-7B-SLM"]
    assert table3["Model"].tolist()[0] == "Base (strong)"
    assert [m.split(":")[0] for m in table3["Model"][1:3]] == ["w2s-clm", "w2s-slm"]
    assert {"reference", *paper.attrs["score_columns"]} <= set(table3.columns)
    assert table3["AVG"].tolist()[3:] == [43.5, 44.4]
    assert table3["reference"].fillna("").tolist()[:3] == ["", "", "Reference"]
    assert table3["Parameters"].tolist()[:3] == [n_strong] * 3
    md = (smoke_run / "results/tables/table3.md").read_text()
    assert "base of w2s-slm: results/models/base-strong" in md and "reference model" in md
