import json
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from slm.config import check_config, n_shards  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")
check_config(config, workflow.basedir)

RAW = "results/data/raw"
GENERATED = "generator" in config["data"]

# Rules run the package from this checkout: in a conda environment (--sdm conda) its python,
# otherwise the interpreter running Snakemake.
_python = (
    "python"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else sys.executable
)
SLM = f"PYTHONPATH={Path(workflow.basedir) / 'workflow'}:$PYTHONPATH {_python} -m slm"

RUNS = list(config["runs"])
CHECKPOINTS = config["training"].get("checkpoints", [])


def spec(obj):
    """JSON for a --spec argument."""
    return json.dumps(obj, sort_keys=True)


def shard_ids(dataset):
    return [f"{i:03d}" for i in range(n_shards(config, dataset))]


def generated_files(dataset):
    if dataset == "high_quality":
        return [f"{RAW}/hq.jsonl"]
    if dataset == "pretrain":
        return [f"{RAW}/pretrain.jsonl"]
    return [f"{RAW}/corpus/shard-{s}.jsonl" for s in shard_ids("corpus")]


def raw_files(dataset, shard):
    """The local files behind one shard of a dataset (none for a hub dataset)."""
    source = config["data"][dataset]
    if source["source"] == "generated":
        files = generated_files(dataset)
    elif source["source"] == "files":
        files = source["paths"]
    else:
        return []
    return [files[int(shard)]] if dataset == "corpus" else files


def packed(dataset):
    return [f"results/data/packed/{dataset}/shard-{s}" for s in shard_ids(dataset)]


def tokenizer_dir():
    return "results/data/tokenizer" if "train" in config["tokenizer"] else base_model()


def base_model():
    """The base model every trained model starts from: a directory made here, or a hub id / path."""
    base = config["base_model"]
    if "path" in base:
        return base["path"]
    return "results/models/base" if "pretrain" in base else "results/models/base-init"


def local_inputs(*paths):
    """Only the paths the workflow produces (hub ids are not files to wait for)."""
    return [p for p in paths if p.startswith("results/")]


def model_dir(model, point):
    """Directory of an evaluated model: base, reference, or a run's final model or checkpoint."""
    if model == "base":
        return base_model()
    if model == "reference":
        return "results/models/reference/final"
    if point == "final":
        return f"results/models/{model}/final"
    return f"results/models/{model}/checkpoints/{point}"


def eval_points(run):
    points = ["final"]
    if config["evaluation"].get("checkpoints", True):
        points += [f"tokens-{n}" for n in CHECKPOINTS]
    return points


def eval_json(model, point="final"):
    return f"results/eval/{model}/{point}.json"


def train_spec(section, threads, **fields):
    """The trainer's JSON spec: an optimisation section of the config plus run-specific fields."""
    return spec(
        {
            **section,
            "seed": config["seed"],
            "device": config["device"],
            "precision": config["precision"],
            "threads": threads,
            **fields,
        }
    )
