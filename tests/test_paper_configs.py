"""The paper-scale configs (config/paper/*.yaml): schema, cross-key checks, and an offline dry run.

Nothing here touches the network: the dry run runs with the Hugging Face libraries offline and every
proxy pointed at a closed port, so any attempt to reach the hub fails the test.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slm.config import check_config, n_shards

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIGS = sorted(PAPER.glob("*.yaml"))
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def validated(path: Path) -> dict:
    from snakemake.utils import validate

    config = copy.deepcopy(load(path))
    validate(config, str(SCHEMA))
    return config


def test_every_experiment_has_a_config():
    assert {p.stem for p in CONFIGS} >= {
        "math-1b",
        "math-7b",
        "general-1b",
        "weak-to-strong",
        "ratio-ablation",
        "tool-integrated",
    }
    readme = (PAPER / "README.md").read_text()
    for path in CONFIGS:
        assert f"config/paper/{path.name}" in readme, f"config/paper/README.md has no section for {path.name}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid(path, tmp_path):
    config = validated(path)
    check_config(config, base_dir=tmp_path)
    assert config["tokenizer"] == {"from_base_model": True}
    assert config["precision"] == "bf16" and config["device"] == "cuda"
    assert "generator" not in config["data"] and "local_tasks" not in config["evaluation"]
    tokens_per_step = config["training"]["batch_size"] * config["sequence_length"]
    assert tokens_per_step == 2**20  # the paper's 1M-token batches


def test_paper_hyperparameters():
    c = {p.stem: load(p) for p in CONFIGS}
    assert c["math-1b"]["training"]["max_tokens"] == 15_000_000_000
    assert c["math-1b"]["training"]["lr"] == 8e-5 and c["math-1b"]["runs"]["slm"]["ratio"] == 0.6
    assert c["math-1b"]["reference"]["lr"] == 5e-5 and c["math-1b"]["reference"]["epochs"] == 3
    assert c["math-1b"]["training"]["checkpoints"] == [n * 10**9 for n in range(1, 15)]
    assert c["math-7b"]["base_model"]["path"] == "mistralai/Mistral-7B-v0.1"
    assert c["math-7b"]["training"]["lr"] == 2e-5 and c["math-7b"]["runs"]["slm"]["ratio"] == 0.7
    assert c["math-7b"]["reference"]["lr"] == 1e-5 and c["math-7b"]["sequence_length"] == 4096
    assert c["general-1b"]["training"]["max_tokens"] == 80_000_000_000 and c["general-1b"]["training"]["lr"] == 1e-4
    corpus = c["general-1b"]["data"]["corpus"]
    assert {comp["path"]: comp["weight"] for comp in corpus["components"]} == {
        "cerebras/SlimPajama-627B": 6,
        "bigcode/starcoderdata": 3,
        "open-web-math/open-web-math": 1,
    }
    assert c["weak-to-strong"]["base_model"]["path"] == "meta-llama/Llama-2-7b-hf"
    assert c["weak-to-strong"]["reference"]["init_model"] == c["math-1b"]["base_model"]["path"]
    assert {k: v.get("ratio", 1.0) for k, v in c["ratio-ablation"]["runs"].items()} == {
        "slm-0.4": 0.4,
        "slm-0.5": 0.5,
        "slm-0.6": 0.6,
        "slm-0.7": 0.7,
        "slm-0.8": 0.8,
        "clm": 1.0,
    }
    assert c["ratio-ablation"]["training"]["max_tokens"] == 5_000_000_000


@pytest.fixture(scope="module")
def known_tasks() -> set[str]:
    """Task, group and tag names defined by lm-eval's YAMLs and the project's workflow/tasks/ (text scan)."""
    import lm_eval

    names: set[str] = set()
    pattern = re.compile(r"^(?:task|group|tag):\s*([A-Za-z0-9_.-]+)\s*$", re.M)
    roots = [Path(lm_eval.__file__).parent / "tasks", REPO / "workflow" / "tasks"]
    for root in roots:
        for path in root.rglob("*.yaml"):
            names.update(pattern.findall(path.read_text(errors="replace")))
    return names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_tasks_exist_and_agree_with_the_suites(path, known_tasks):
    evaluation = load(path)["evaluation"]
    missing = [t for t in evaluation["tasks"] if t not in known_tasks]
    assert not missing, f"{path.name}: tasks neither in lm-eval nor in workflow/tasks/: {missing}"
    suites_file = REPO / "workflow" / "tasks" / "suites.yaml"
    if not suites_file.is_file():
        pytest.skip("workflow/tasks/suites.yaml not present")
    suites = yaml.safe_load(suites_file.read_text())
    metric_of = {e["task"]: e["metric"] for suite in ("math", "tir", "general") for e in suites.get(suite, {}).values()}
    for task in evaluation["tasks"]:
        if task in metric_of:
            assert evaluation["metrics"][task] == metric_of[task], f"{path.name}: metric of {task}"


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def expected_jobs(config: dict) -> dict[str, int]:
    runs = config["runs"]
    evaluation = config["evaluation"]
    points = 1 + (len(config["training"].get("checkpoints", [])) if evaluation.get("checkpoints", True) else 0)
    any_slm = any(r["method"] == "slm" for r in runs.values())
    return {
        "prepare": n_shards(config, "corpus") + n_shards(config, "high_quality"),
        "score": n_shards(config, "corpus") if any_slm else 0,
        "train_reference": 0 if "path" in config["reference"] else 1,
        "train": len(runs),
        "evaluate": 2 + len(runs) * points,
        "tables": 1,
    }


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory) -> dict[str, str]:
    """One offline dry run per config, from an empty working directory, as config/paper/README.md says."""
    env = {**os.environ, **OFFLINE}
    outputs = {}
    for path in CONFIGS:
        workdir = tmp_path_factory.mktemp(path.stem)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-n",
                "-p",
                "--snakefile",
                str(REPO / "Snakefile"),
                "--directory",
                str(workdir),
                "--configfile",
                str(path),
                "--replace-workflow-config",
                "--cores",
                "1",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        outputs[path.stem] = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"dry run of {path.name} failed:\n{outputs[path.stem][-4000:]}"
        assert not (workdir / "results").exists()
    return outputs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_dry_run_plans_every_stage(path, dry_runs):
    config = validated(path)
    counts = job_counts(dry_runs[path.stem])
    for rule, n in expected_jobs(config).items():
        assert counts.get(rule, 0) == n, f"{path.name}: {rule} planned {counts.get(rule, 0)} times, expected {n}"
    for rule in ("generate_data", "train_tokenizer", "init_base", "pretrain_base", "eval_tasks"):
        assert rule not in counts
    for run in config["runs"]:
        assert f"results/models/{run}/final" in dry_runs[path.stem]


def test_weak_to_strong_reference_starts_from_tinyllama(dry_runs):
    out = dry_runs["weak-to-strong"]
    spec = next(line for line in out.splitlines() if '"out_dir": "results/models/reference/final"' in line)
    assert '"init_model": "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"' in spec


def test_gpu_jobs_claim_the_gpu_resource(dry_runs):
    """With device: cuda, model jobs claim their GPUs (so --resources gpu=N or SLURM can place them):
    one for scoring and evaluation, 32 for math-1b's training (4 nodes of 8)."""
    blocks = dry_runs["math-1b"].split("\n\n")
    for rule, gpus in (("rule train:", 32), ("rule score:", 1), ("rule evaluate:", 1)):
        block = next(b for b in blocks if rule in b)
        assert f"gpu={gpus}," in block, rule
    assert "gpu=1" not in next(b for b in blocks if "rule tables:" in b)


def weak_to_strong_variant(**base_models) -> dict:
    """config/paper/weak-to-strong.yaml with the student as an extra base (base_models) of the runs."""
    config = validated(PAPER / "weak-to-strong.yaml")
    config["base_models"] = base_models
    for run in config["runs"].values():
        run["base_model"] = next(iter(base_models))
    return config


def test_base_models_pass_the_schema_and_checks(tmp_path):
    from snakemake.utils import validate

    config = weak_to_strong_variant(llama2=load(PAPER / "weak-to-strong.yaml")["base_model"])
    validate(config, str(SCHEMA))
    check_config(config, base_dir=tmp_path)


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda c: c["runs"]["slm"].update(base_model="llama3"), "runs.slm.base_model"),
        (
            lambda c: c["base_models"].update(
                small={"init": {"hidden_size": 8, "num_layers": 1, "num_heads": 1, "intermediate_size": 8}}
            ),
            "base_models.small.init",
        ),
        (lambda c: c["base_models"]["llama2"].update(path="./no/such/model"), "base_models.llama2.path"),
        (lambda c: c["runs"].update({"base-llama2": {"method": "clm"}}), "runs.base-llama2"),
    ],
)
def test_base_models_cross_key_checks(tmp_path, change, key):
    from slm.config import ConfigError

    config = weak_to_strong_variant(llama2={"path": "meta-llama/Llama-2-7b-hf"})
    change(config)
    with pytest.raises(ConfigError, match=re.escape(f"config key '{key}'")):
        check_config(config, base_dir=tmp_path)


@pytest.mark.parametrize("name", ["init", "big-init", "a/b"])
def test_base_model_names_that_would_clash_are_refused(name):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = weak_to_strong_variant(**{name: {"path": "meta-llama/Llama-2-7b-hf"}})
    with pytest.raises(WorkflowError):
        validate(config, str(SCHEMA))


def job_block(output: str, rule: str, wildcard: str | None = None) -> str:
    """The dry run's block of one job of ``rule`` (with ``wildcard``, e.g. ``run=slm``, if given)."""
    return next(
        b for b in output.split("\n\n") if f"rule {rule}:" in b and (wildcard is None or f"wildcards: {wildcard}" in b)
    )


def job_resources(block: str) -> dict:
    line = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
    pairs = (item.split("=", 1) for item in line.split(":", 1)[1].split(", "))
    return {k.strip(): int(v) if v.isdigit() else v for k, v in pairs}


def slurm_request(resources: dict, threads: int = 1) -> str:
    """The sbatch command the slurm executor plugin builds for a job with these resources (its own
    submit-string functions, given the job's resources from the dry run)."""
    from types import SimpleNamespace

    from snakemake.iocontainers import Namedlist
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=Namedlist(fromdict=resources), threads=threads)
    params = dict(run_uuid="job", slurm_logfile="job.log", comment_str="job", account="", partition="", workdir=".")
    return get_submit_command(job, params) + set_gres_string(job)


def test_multi_gpu_training_runs_torchrun_on_the_resources_it_requests(dry_runs):
    """math-1b: the reference on one node of 8 GPUs (torchrun --standalone), the continual pretraining
    on 4 nodes (srun starts one torchrun per node); scoring one GPU per shard; and what sbatch is asked for."""
    out = dry_runs["math-1b"]
    reference = job_block(out, "train_reference")
    assert "Shell command: torchrun --standalone --nproc-per-node 8 -m slm train --options" in reference
    train = job_block(out, "train", "run=slm")
    command = train[train.index("Shell command: ") :]
    assert command.startswith("Shell command: srun --nodes 4 --ntasks 4 --ntasks-per-node 1 --cpus-per-task 64")
    assert "torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d" in command and " -m slm train " in command
    resources = job_resources(train)
    assert {k: resources[k] for k in ("gpu", "nodes", "cpus_per_gpu", "mem_mb", "runtime")} == {
        "gpu": 32,
        "nodes": 4,
        "cpus_per_gpu": 8,
        "mem_mb": 128000,
        "runtime": 480,
    }
    sbatch = slurm_request(resources)
    for flag in ("--nodes=4", "--cpus-per-gpu=8", "--mem 128000", "-t 480"):
        assert flag in sbatch, sbatch
    assert "--gpus=32" in sbatch or "--gres=gpu:8" in sbatch, sbatch
    assert "--ntasks-per-gpu" not in sbatch  # one launcher per node, not one command per GPU
    score = job_resources(job_block(out, "score"))
    assert (score["gpu"], score["mem_mb"]) == (1, 32000)
    assert "Shell command: OMP_NUM_THREADS" in job_block(out, "score")


# Forward passes per rank and optimizer step: one where the model allows it (1B: 16 sequences of 2048
# tokens per 80 GB GPU); the 7B models take several (config/paper/README.md).
PASSES_PER_RANK = {"math-7b": {"reference": 4, "training": 4}, "weak-to-strong": {"training": 4}}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_training_batches_split_over_the_configured_ranks(path):
    """Every training section's batch splits evenly over its stage's ranks (slm.launch.split_batch)."""
    from slm.launch import split_batch
    from slm.resources import stage_resources

    config = validated(path)
    for section, stage in (("reference", "train_reference"), ("training", "train")):
        spec = config[section]
        ranks = stage_resources(config, stage).world_size
        share, micro = split_batch(spec["batch_size"], spec.get("micro_batch_size"), ranks)
        assert share // micro == PASSES_PER_RANK.get(path.stem, {}).get(section, 1), f"{path.name}: {section}"
