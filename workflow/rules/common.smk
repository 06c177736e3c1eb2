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
from slm.launch import launch_command, local_launcher  # noqa: E402
from slm.overrides import apply_command_line  # noqa: E402
from slm.plan import Plan, tir_table_files  # noqa: E402
from slm.resources import job_resources, job_threads, stage_resources  # noqa: E402
from slm.runlock import clear_stale_locks  # noqa: E402
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

# A run killed outright leaves Snakemake's directory lock behind; the same command removes it when no
# other run is alive here (slm.runlock). Cluster jobs run inside the lock of the run that submitted them.
if not workflow.remote_exec:
    for lock in clear_stale_locks():
        logger.warning(f"Removed {lock}: the lock of a Snakemake run that was killed.")

# What the config makes (runs, models, evaluations, tables, figures): slm.plan, keyed by name.
PLAN = Plan(config, workflow.configfiles)
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


def rule_resources(stage, ranks=None):
    """Snakemake resources of a stage's jobs (slm.resources.job_resources): a local run places GPU
    jobs with `--resources gpu=N`; the slurm executor requests memory, wall time, GPUs and nodes.
    Memory and wall time grow with the attempt, so a retry asks for more. `ranks`: a job's processes
    from its wildcards (the throughput benchmark's world size), each with the stage's GPUs."""
    res = stage_resources(config, stage)
    out = {
        **job_resources(res, attempt=1),
        "mem_mb": lambda wildcards, attempt: res.grown(res.mem_mb, attempt),
        "runtime": lambda wildcards, attempt: res.grown(res.runtime, attempt),
    }
    if ranks is not None:
        out["gpu"] = lambda wildcards: res.gpus * ranks(wildcards)
    return out


def rule_threads(stage):
    """Threads of a stage's jobs (slm.resources.job_threads): GPUs times cpus_per_gpu,
    resources.<stage>.cpus, else every core of a local run. A cluster job, in the submitting process
    and again inside the job, takes only what the config says (cores there are the node's, not the job's)."""
    cores = workflow.resource_settings.cores if workflow.local_exec and not workflow.remote_exec else None
    return job_threads(stage_resources(config, stage), cores)


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


def corpus_files():
    """Every local file of the corpus (the throughput benchmark packs them itself); refused for a
    corpus with none, a hub dataset."""
    files = list(dict.fromkeys(f for s in shard_ids("corpus") for f in raw_files("corpus", s)))
    if not files:
        raise ValueError(
            "config key 'data.corpus': the throughput benchmark packs local text files, and this corpus has none"
        )
    return files


def prepare_source(dataset):
    """The source spec `prepare` packs. data.tir's also names its span labels: who writes each token at
    evaluation (slm.data.packed.SPAN_LABELS), for tool_integrated.training.loss_kinds."""
    source = config["data"][dataset]
    return {**source, "spans": "tool_solution"} if dataset == "tir" else source


def packed(dataset):
    return [f"results/data/packed/{dataset}/shard-{s}" for s in shard_ids(dataset)]


def scores(dataset):
    """The reference model's score shards of a dataset (the corpus, or the validation slice)."""
    return [f"results/scores/{dataset}/shard-{s}" for s in shard_ids(dataset)]


# The slice the token dynamics and Figure 6 evaluate: data.validation (never trained on), else
# the last corpus shard.
VALIDATION = "validation" if "validation" in config["data"] else "corpus"


def validation_shard():
    return packed(VALIDATION)[-1]


def validation_scores():
    return scores(VALIDATION)[-1]


def tokenizer_dir():
    return "results/data/tokenizer" if "train" in config["tokenizer"] else PLAN.base_model()


def one_of(names):
    """A wildcard constraint matching exactly these names."""
    import re

    return "|".join(re.escape(n) for n in names)


def local_inputs(*paths):
    """Only the paths the workflow produces (hub ids are not files to wait for)."""
    return [p for p in paths if p.startswith("results/")]


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


def run_method(wildcards):
    """The method of the run a replicate ({run} of the train rule) belongs to."""
    return config["runs"][PLAN.run_of(wildcards.run)]["method"]


def run_scores(wildcards):
    return [] if run_method(wildcards) == "clm" else scores("corpus")


def evaluated_model(wildcards):
    return local_inputs(PLAN.model_dir(wildcards.model, wildcards.point))
