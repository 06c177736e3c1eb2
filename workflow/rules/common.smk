import json
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from slm.config import check_config, n_shards, shard_arguments, source_files  # noqa: E402
from slm.overrides import apply_command_line  # noqa: E402
from slm.resources import stage_resources  # noqa: E402
from slm.tracking import tracking_spec  # noqa: E402


# The command line: a complete --configfile replaces the default, --config a__b=v sets nested keys.
if _complete_files := apply_command_line(
    config,
    yaml.safe_load(Path(workflow.basedir, "workflow", "schemas", "config.schema.yaml").read_text()),
    configfiles=workflow.config_settings.configfiles,
    cli_config=workflow.config_settings.config,
    replaced=workflow.config_settings.replace_workflow_config,
):
    logger.info(f"Config: {', '.join(map(str, _complete_files))} is complete; config/config.yaml is not merged in.")

validate(config, schema="../schemas/config.schema.yaml")
check_config(config)

RAW = "results/data/raw"
GENERATED = "generator" in config["data"]

# Rules run `python -m slm` from this checkout: in a conda environment (--sdm conda) with its
# python, otherwise with the interpreter running Snakemake.
# (The prefix is formatted like a shell command: literal braces are doubled.)
_prefix = f"export PYTHONPATH={Path(workflow.basedir) / 'workflow'}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    _prefix += f"export PATH={Path(sys.executable).parent}:$PATH; "
# TensorBoard / W&B settings of the training jobs (slm.tracking), read by `python -m slm train`: in
# the environment rather than a params entry, so that turning a tracker on or off reruns nothing.
_tracking = shlex.quote(json.dumps(tracking_spec(config))).replace("{", "{{").replace("}", "}}")
_prefix += f"export SLM_TRACKING={_tracking}; "
shell.prefix(_prefix)

RUNS = list(config["runs"])


def rule_resources(stage):
    """Snakemake resources of a stage's jobs (config resources, slm.resources): a local run places
    GPU jobs with `--resources gpu=N`; the slurm executor requests memory, wall time, GPUs and nodes.
    Memory and wall time grow with the attempt, so a retry asks for more."""
    res = stage_resources(config, stage)
    out = {
        "mem_mb": lambda wildcards, attempt: res.grown(res.mem_mb, attempt),
        "runtime": lambda wildcards, attempt: res.grown(res.runtime, attempt),
        "gpu": res.gpus * res.nodes,
    }
    if res.gpus:
        # One launcher process per job: without tasks_per_gpu=0 the slurm executor would derive
        # --ntasks-per-gpu from tasks and start the command once per GPU.
        out.update(cpus_per_gpu=res.cpus_per_gpu, tasks_per_gpu=0)
    if res.nodes > 1:
        out["nodes"] = res.nodes
    return out


CHECKPOINTS = config["training"].get("checkpoints", [])


def spec(obj):
    """JSON for a --spec argument."""
    return json.dumps(obj, sort_keys=True)


def shard_ids(dataset):
    return [f"{i:03d}" for i in range(n_shards(config, dataset))]


def generated_files(dataset):
    if dataset == "high_quality":
        return [f"{RAW}/hq.jsonl"]
    if dataset in ("pretrain", "validation", "tir"):
        return [f"{RAW}/{dataset}.jsonl"]
    return [f"{RAW}/corpus/shard-{s}.jsonl" for s in shard_ids("corpus")]


def raw_files(dataset, shard):
    """The local files behind one shard of a dataset (none for a hub dataset)."""
    source = config["data"][dataset]
    if source["source"] == "generated":
        files = generated_files(dataset)
    elif source["source"] == "files":
        files = source["paths"]
    else:  # hf: no local files; mixture: its files components', inputs of every shard
        return source_files(config, dataset)
    return [files[int(shard)]] if dataset == "corpus" else files


def packed(dataset):
    return [f"results/data/packed/{dataset}/shard-{s}" for s in shard_ids(dataset)]


def scores(dataset):
    """The reference model's score shards of a dataset (the corpus, or the validation slice)."""
    return [f"results/scores/{dataset}/shard-{s}" for s in shard_ids(dataset)]


# The slice the token dynamics and Figure 6 evaluate: data.validation (never trained on), else
# the last corpus shard.
VALIDATION_HELD_OUT = "validation" in config["data"]
VALIDATION = "validation" if VALIDATION_HELD_OUT else "corpus"


def validation_shard():
    return packed(VALIDATION)[-1]


def validation_scores():
    return scores(VALIDATION)[-1]


def tokenizer_dir():
    return "results/data/tokenizer" if "train" in config["tokenizer"] else base_model()


# Extra base models (base_models), each a student that runs name with runs.<run>.base_model; the
# reference model and its scores stay the one of base_model (weak-to-strong, paper Table 3).
BASE_MODELS = config.get("base_models", {})


# The directory stem of each base model made here: "base" (base_model), "base-<name>" (base_models).
BASE_STEMS = ["base"] + [f"base-{name}" for name in BASE_MODELS]


def base_spec(stem):
    """The config section of a base model by its stem."""
    return config["base_model"] if stem == "base" else BASE_MODELS[stem.removeprefix("base-")]


def base_model(name=None):
    """A base model: base_model (name None), from which the reference and every run start unless
    the run names an entry of base_models. A directory made here, or a hub id / path."""
    stem = "base" if name is None else f"base-{name}"
    base = base_spec(stem)
    if "path" in base:
        return base["path"]
    return f"results/models/{stem}" if "pretrain" in base else f"results/models/{stem}-init"


def run_base(run):
    """The base model a run starts from: its runs.<run>.base_model, else base_model."""
    return base_model(config["runs"][run].get("base_model"))


def base_runs():
    """The base_models entries that runs start from, each with its runs: {name: [run, ...]}."""
    named = {}
    for run, run_spec in config["runs"].items():
        if "base_model" in run_spec:
            named.setdefault(run_spec["base_model"], []).append(run)
    return named


def one_of(names):
    """A wildcard constraint matching exactly these names."""
    import re

    return "|".join(re.escape(n) for n in names)


REFERENCE_GIVEN = "path" in config["reference"]


def reference_model():
    """The model that scores the corpus: given (reference.path) or fine-tuned here."""
    return config["reference"]["path"] if REFERENCE_GIVEN else "results/models/reference/final"


def reference_init():
    """The model the reference is fine-tuned from: reference.init_model, else the base model."""
    return config["reference"].get("init_model", base_model())


def local_inputs(*paths):
    """Only the paths the workflow produces (hub ids are not files to wait for)."""
    return [p for p in paths if p.startswith("results/")]


def model_dir(model, point):
    """Directory of an evaluated model: base, base-<name> (an entry of base_models), reference, or
    a run's final model or checkpoint."""
    if model == "base":
        return base_model()
    if model.startswith("base-") and model.removeprefix("base-") in BASE_MODELS:
        return base_model(model.removeprefix("base-"))
    if model == "reference":
        return reference_model()
    if point == "final":
        return f"results/models/{model}/final"
    return f"results/models/{model}/checkpoints/{point}"


def eval_points(run):
    """The points of a run that lm-eval scores: its final model and, if configured, its checkpoints."""
    which = config["evaluation"].get("checkpoints", True)
    if which is True or (isinstance(which, list) and run in which):
        return [f"tokens-{n}" for n in CHECKPOINTS] + ["final"]
    return ["final"]


def eval_json(model, point="final"):
    return f"results/eval/{model}/{point}.json"


def train_options(section, **fields):
    """The trainer's hyperparameters: an optimisation section of the config plus run settings.

    Kept apart from the (input/output-derived) paths so that Snakemake's params trigger sees a
    changed hyperparameter and reruns the job.
    """
    return spec(
        {
            **section,
            "seed": config["seed"],
            "device": config["device"],
            "precision": config["precision"],
            **fields,
        }
    )


def run_scores(wildcards):
    if config["runs"][wildcards.run]["method"] == "clm":
        return []
    return scores("corpus")


def run_fields(run):
    """The selection settings of a run; CLM is SLM with ratio 1.0."""
    spec = config["runs"][run]
    if spec["method"] == "clm":
        return {"ratio": 1.0}
    return {k: spec[k] for k in ("ratio", "unit", "score_fn", "weighting", "temperature") if k in spec}


def evaluated_model(wildcards):
    return local_inputs(model_dir(wildcards.model, wildcards.point))


def table_models():
    models = [
        {
            "name": "Base",
            "role": "base",
            "eval_json": eval_json("base"),
            "train_stats": None,
        },
        {
            "name": "Reference",
            "role": "reference",
            "eval_json": eval_json("reference"),
            "train_stats": (None if REFERENCE_GIVEN else f"{reference_model()}/train_stats.json"),
        },
    ]
    # one row per extra base model, after the default base's
    models[1:1] = [
        {
            "name": f"Base ({name})",
            "role": "base",
            "eval_json": eval_json(f"base-{name}"),
            "train_stats": None,
        }
        for name in BASE_MODELS
    ]
    return models + run_models()


def run_models():
    """The results table's rows of the runs, in RUNS order."""
    models = []
    for run, run_spec in config["runs"].items():
        label = run_spec["method"].upper()
        if run_spec.get("weighting") == "soft":
            label += f" (soft weights, T={run_spec.get('temperature', 1.0)})"
        elif run_spec["method"] == "slm":
            label += f" (ratio {run_spec['ratio']})"
        if "base_model" in run_spec:
            label += f", from Base ({run_spec['base_model']})"
        models.append(
            {
                "name": f"{run}: {label}",
                "role": run_spec["method"],
                "eval_json": eval_json(run),
                "train_stats": f"results/models/{run}/final/train_stats.json",
            }
        )
    return models


def table_delta():
    """SLM minus CLM: the runs named slm and clm when they exist, else the first run of each method."""
    named = {}
    for run, model in zip(RUNS, run_models()):
        role = model["role"]
        if run == role or role not in named:
            named[role] = model["name"]
    return [named["slm"], named["clm"]] if {"slm", "clm"} <= named.keys() else None


def table_runs():
    return [
        {
            "run": run,
            "checkpoints": [
                {
                    "tokens": (int(point.removeprefix("tokens-")) if point != "final" else None),
                    "eval_json": eval_json(run, point),
                    "train_stats": f"{model_dir(run, point)}/train_stats.json",
                }
                for point in eval_points(run)
            ],
        }
        for run in RUNS
    ]


DYNAMICS_RUNS = config.get("dynamics", {}).get("runs", [])


def trajectory(run):
    """The models along a run, in training order: its base, each checkpoint, the final model."""
    return [run_base(run)] + [model_dir(run, f"tokens-{n}") for n in sorted(CHECKPOINTS)] + [model_dir(run, "final")]


def selection_ratio():
    """The first SLM run's ratio, for marking selected tokens in the dynamics view."""
    ratios = [r["ratio"] for r in config["runs"].values() if r["method"] == "slm" and "ratio" in r]
    return ratios[0] if ratios else None


ACCURACY_TASKS = [t for t in config["evaluation"]["tasks"] if t not in config["evaluation"].get("lower_is_better", [])]
LOSS_TASKS = config["evaluation"].get("lower_is_better", [])
FIGURES = (
    ["figure1.png"]
    + (["figure6.png"] if table_delta() is not None else [])
    + (["figure7.png"] if LOSS_TASKS else [])
    + ["figure9.png"]
    + (["figure5.png"] if table_delta() is not None else [])
)


def ratio_runs():
    """Runs that differ only in their selection ratio (Figure 9); CLM counts as ratio 1.0."""
    plain = {
        run: spec.get("ratio", 1.0)
        for run, spec in config["runs"].items()
        if spec.get("unit", "batch") == "batch"
        and spec.get("score_fn", "excess") == "excess"
        and spec.get("weighting", "hard") == "hard"
        and "base_model" not in spec  # another base model: not the same experiment
    }
    return plain


def figure6_runs():
    """The SLM and CLM runs of the results table's delta row (SLM first), else none."""
    delta = table_delta()
    if not delta:
        return []
    names = {m["name"]: run for run, m in zip(RUNS, run_models())}
    return [names[delta[0]], names[delta[1]]]


# Table 2 (tool_integrated): the models fine-tuned on tool-integrated solutions (runs, and base and
# reference as controls), once per fine-tuning seed.
TIR = config.get("tool_integrated")
TIR_RUNS = TIR["runs"] if TIR else []
TIR_SEEDS = TIR.get("seeds", [config["seed"]]) if TIR else []


def tir_delta():
    """The SLM and CLM runs of tool_integrated.runs (by method, SLM first), when both are there."""
    first = {}
    for run in TIR_RUNS:
        if run in config["runs"]:
            first.setdefault(config["runs"][run]["method"], run)
    return [first["slm"], first["clm"]] if {"slm", "clm"} <= first.keys() else None


# Selection rates by token role (slm.roles) of Table 2's SLM run, from its token dynamics.
ROLES_RUN = (tir_delta() or [None])[0]
ROLES_RUN = ROLES_RUN if ROLES_RUN in DYNAMICS_RUNS else None
TABLE2 = (
    [f"results/tables/table2.{ext}" for ext in ("md", "csv", "tex")]
    + [f"results/tables/table2_errors.{ext}" for ext in ("md", "csv")]
    + ([f"results/tables/selection_roles.{ext}" for ext in ("md", "csv")] if ROLES_RUN else [])
    if TIR
    else []
)


def released_models():
    """Every model made here that is evaluated, by its path under results/models: its evaluation JSON."""
    models = {}
    for stem in BASE_STEMS:
        if "path" not in base_spec(stem):
            models[base_model(None if stem == "base" else stem.removeprefix("base-"))] = eval_json(stem)
    if not REFERENCE_GIVEN:
        models[reference_model()] = eval_json("reference")
    for run in RUNS:
        models[model_dir(run, "final")] = eval_json(run)
    for run in TIR_RUNS:
        for seed in TIR_SEEDS:
            models[f"results/models/tir/{run}/seed-{seed}/final"] = f"results/eval/tir/{run}/seed-{seed}.json"
    return {path.removeprefix("results/models/"): evaluation for path, evaluation in models.items()}
