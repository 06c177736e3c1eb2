"""Model cards: written with every exported model, completed with evaluation results on release."""

import json
from pathlib import Path

import pytest

from slm.model_card import PENDING, completed_card, init_card, parse, release, training_card
from slm.train import TrainConfig, train


@pytest.fixture(scope="module")
def slm_run(workdir, base_model, shards, score_dirs) -> Path:
    scores = [str(s) for s in score_dirs]
    out = workdir / "card-run" / "slm" / "final"
    train(
        dict(
            init_model=str(base_model),
            reference_model=str(base_model),
            data=[str(s) for s in shards],
            scores=scores,
            ratio=0.6,
            out_dir=str(out),
            state_dir=str(workdir / "card-run" / "state"),
            batch_size=4,
            max_tokens=4 * 32 * 4,
            device="cpu",
            name="slm",
            role="run",
        )
    )
    return out


# What slm.evaluate writes (its documented compact format), for one task.
LM_EVAL_RESULT = {
    "model": "results/models/slm/final",
    "tasks": {"arith_step": {"acc,none": 0.3125, "acc_stderr,none": 0.02}},
    "n_samples": {"arith_step": 400},
    "n_shot": {"arith_step": 3},
    "lm_eval_version": "0.4.13",
}


def test_an_exported_model_carries_its_card(slm_run):
    front, body = parse((slm_run / "README.md").read_text())
    stats = json.loads((slm_run / "train_stats.json").read_text())
    assert front["library_name"] == "transformers" and "slm" in front["tags"]
    assert "base_model" not in front and "datasets" not in front  # a local base model, local files
    assert body.lstrip().startswith("# slm: SLM run")
    for fact in (
        f"| tokens seen | {stats['tokens_seen']:,} |",
        f"| tokens trained on | {stats['tokens_selected']:,} (",
        "the top 60% of all loss-bearing tokens of each optimizer batch, ranked by excess loss",
        f"| reference model | `{stats['reference_model']}` |",
        "| math |",
        PENDING,
    ):
        assert fact in body, fact


def test_hub_models_and_datasets_go_into_the_metadata(slm_run):
    config = TrainConfig(
        init_model="TinyLlama/TinyLlama_v1.1", data=[], out_dir="o", state_dir="s", name="reference", role="reference"
    )
    stats = json.loads((slm_run / "train_stats.json").read_text())
    sources = [
        {"source": "hf", "path": "meta-math/MetaMathQA", "split": "train", "shard": 0},
        {"source": "mixture", "components": [{"source": "hf", "path": "allenai/tulu-v2-sft-mixture"}]},
    ]
    front, body = parse(training_card(config, stats, sources))
    assert front["base_model"] == "TinyLlama/TinyLlama_v1.1"
    assert front["datasets"] == ["meta-math/MetaMathQA", "allenai/tulu-v2-sft-mixture"]
    assert "# reference: reference model" in body and "token selection" not in body  # nothing was selected


def test_release_links_the_files_and_completes_the_card(slm_run, tmp_path):
    evaluation = tmp_path / "final.json"
    evaluation.write_text(json.dumps(LM_EVAL_RESULT))
    exported = (slm_run / "README.md").read_text()
    (slm_run / ".snakemake_timestamp").touch()  # as Snakemake marks a directory output
    out = release(slm_run, evaluation, tmp_path / "release" / "slm" / "final")
    assert (slm_run / "README.md").read_text() == exported  # the model directory is left as it was
    assert (out / "model.safetensors").stat().st_ino == (slm_run / "model.safetensors").stat().st_ino
    model_files = sorted(p.name for p in slm_run.iterdir() if not p.name.startswith("."))
    assert sorted(p.name for p in out.iterdir()) == model_files
    front, body = parse((out / "README.md").read_text())
    [entry] = front["model-index"]
    assert entry["name"] == "slm"
    [result] = entry["results"]
    assert result["dataset"]["name"] == "arith_step"
    assert result["metrics"] == [{"type": "acc", "name": "acc,none", "value": 0.3125}]
    assert "| arith_step | acc,none | 0.3125 | 400 | 3 |" in body and PENDING not in body
    assert body.count("## Evaluation") == body.count("## Use") == body.count("## Method") == 1
    assert "lm-evaluation-harness 0.4.13" in body


def test_tool_integrated_results_and_untrained_models():
    card = init_card(1234, {"hidden_size": 32})
    front, body = parse(completed_card(card, {"n": 12, "accuracy": 0.5, "tool_ran": 0.75}))
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert [(m["name"], m["value"]) for m in metrics] == [("accuracy", 0.5), ("tool_ran", 0.75)]
    assert "| parameters | 1,234 |" in body and "| arith_tir | accuracy | 0.5 | 12 |" in body


def test_release_refuses_a_model_without_a_card(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(FileNotFoundError, match="has no README.md"):
        release(tmp_path / "model", tmp_path / "eval.json", tmp_path / "out")


def test_the_released_models_are_those_made_and_evaluated_here():
    import yaml

    from slm.plan import Plan

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    assert Plan(config).released == {
        "base": "results/eval/base/final.json",
        "reference/final": "results/eval/reference/final.json",
        "clm/final": "results/eval/clm/final.json",
        "slm/final": "results/eval/slm/final.json",
    }
    config.update(
        tokenizer={"from_base_model": True},
        base_model={"path": "org/base"},
        reference={"path": "org/reference"},
        tool_integrated={"runs": ["slm", "base"], "seeds": [1, 2], "training": {"epochs": 1}},
    )
    released = Plan(config).released
    assert sorted(released) == ["clm/final", "slm/final"] + [
        f"tir/{m}/seed-{s}/final" for m in ("base", "slm") for s in (1, 2)
    ]
    assert released["tir/base/seed-2/final"] == "results/eval/tir/base/seed-2/final.json"
