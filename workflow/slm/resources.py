"""What each stage's jobs ask for: GPUs, nodes, CPUs, memory and wall time, from the config's
``resources`` block, and how that becomes Snakemake resources that the slurm executor
(snakemake-executor-plugin-slurm 2.8) turns into a job request.

One block per stage (the rule that runs it), each key falling back to ``resources.default``, then to
the stage's built-in default (``STAGE_DEFAULTS``), then to the field's default below. The Snakemake
rules take their threads and resources from :func:`job_threads` and :func:`job_resources`.

How the slurm executor maps them (read in its source, version 2.8.0; profiles/slurm/README.md):

- ``mem_mb`` -> ``--mem``, ``runtime`` -> ``-t`` (minutes), both grown at each retry;
- threads -> ``--cpus-per-task`` for a job without GPUs; ``cpus_per_gpu`` -> ``--cpus-per-gpu``;
- ``gpu`` -> ``--gpus`` (the whole job); for GPU jobs ``--ntasks-per-gpu`` comes from
  ``tasks_per_gpu``, else from ``tasks``: ``tasks_per_gpu=0`` leaves it out, so a job's command
  (one launcher, e.g. torchrun over every GPU of the node) starts once, not once per GPU;
- a single-node job runs its command under ``srun -n1``; a multi-node job has an ``mpi`` resource,
  so the plugin runs its command as written (once, on the first node): the command itself starts
  one launcher per node, e.g. ``{resources.mpi} --ntasks-per-node=1 torchrun --nnodes {resources.nodes}``;
  ``nodes`` -> ``--nodes``, ``tasks`` (one per node) -> ``--ntasks`` and ``gres=gpu:G`` -> ``--gres``
  (G GPUs on every node; ``--gpus`` alone would let SLURM place them unevenly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

# Stages that train a model: the only ones that may span several GPUs or nodes (torchrun).
TRAINING_STAGES = ("pretrain_base", "train_reference", "train", "sft_tir")
# Stages whose processes each run one model on at most one GPU; the measurements of `snakemake
# benchmarks` (one stage) start one such process per rank of the throughput benchmark's world size.
MODEL_STAGES = ("score", "evaluate", "evaluate_tir", "dynamics", "benchmarks")
STAGES = TRAINING_STAGES + MODEL_STAGES
# Built-in defaults that differ by stage: evaluation runs one thread per job, so that several
# evaluations share the cores of a local run.
STAGE_DEFAULTS = {"evaluate": {"cpus": 1}, "evaluate_tir": {"cpus": 1}}
# The launcher of a multi-node job's per-node processes (the slurm executor's `mpi` resource).
MULTI_NODE_LAUNCHER = "srun"


@dataclass(frozen=True)
class StageResources:
    """The resources of one stage's jobs."""

    gpus: int
    """GPUs per node; the default is 1 when the config's device is CUDA (0 on CPU)."""
    nodes: int = 1
    """Nodes of a training job (more than 1: one torchrun per node)."""
    cpus_per_gpu: int = 8
    """CPU cores per GPU (data loading, the launcher); for GPU jobs only."""
    cpus: int | None = None
    """CPU cores of a job without GPUs; None: all cores Snakemake is given (--cores), one on a
    cluster run without --cores."""
    mem_mb: int = 4000
    """Memory per node in MB, at the first attempt."""
    runtime: int = 60
    """Wall time in minutes, at the first attempt."""
    retry_growth: float = 1.5
    """mem_mb and runtime are multiplied by this at each retry (attempt 2: once, attempt 3: twice)."""

    @property
    def world_size(self) -> int:
        """Training processes of a job: one per GPU (one process on CPU)."""
        return max(1, self.gpus) * self.nodes

    def grown(self, value: int, attempt: int) -> int:
        """``value`` (mem_mb or runtime) at a given attempt (1 = the first)."""
        return math.ceil(value * self.retry_growth ** max(0, attempt - 1))


FIELDS = tuple(f.name for f in fields(StageResources))


def stage_resources(config: dict, stage: str) -> StageResources:
    """The resources of ``stage``: ``resources.<stage>``, else ``resources.default``, else built in."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages with resources: {STAGES}")
    block = config.get("resources") or {}
    merged = {"gpus": 1 if str(config.get("device", "cpu")).startswith("cuda") else 0}
    merged.update(STAGE_DEFAULTS.get(stage, {}))
    merged.update(block.get("default") or {})
    merged.update(block.get(stage) or {})
    return StageResources(**merged)


def job_threads(res: StageResources, cores: int | None) -> int:
    """Threads of a job (per node): ``cpus``, else ``cpus_per_gpu`` for each GPU, else ``cores``
    (the cores Snakemake is given; None on a cluster run without --cores: one)."""
    if res.gpus:
        return res.gpus * res.cpus_per_gpu
    return res.cpus or cores or 1


def job_resources(res: StageResources, attempt: int) -> dict:
    """Snakemake resources of a stage's job at an attempt (1 = the first); see the module docstring
    for what the slurm executor makes of each."""
    out = {
        "mem_mb": res.grown(res.mem_mb, attempt),
        "runtime": res.grown(res.runtime, attempt),
        "gpu": res.gpus * res.nodes,
    }
    if res.gpus:
        out.update(cpus_per_gpu=res.cpus_per_gpu, tasks_per_gpu=0)
    if res.nodes > 1:
        out.update(nodes=res.nodes, tasks=res.nodes, gres=f"gpu:{res.gpus}", mpi=MULTI_NODE_LAUNCHER)
    return out


def check_resources(config: dict) -> list[tuple[str, str]]:
    """Cross-key problems of the resources block as ``(key, why)`` pairs (the schema checks each
    value): requests that the device cannot use or that the slurm executor cannot express."""
    problems = []
    block = config.get("resources") or {}
    default = block.get("default") or {}
    cuda = str(config.get("device", "cpu")).startswith(("cuda", "auto"))

    def origin(stage: str, key: str) -> str:
        """The config key a merged value came from."""
        return f"resources.{stage}.{key}" if key in (block.get(stage) or {}) else f"resources.default.{key}"

    for stage in STAGES:
        res = stage_resources(config, stage)
        if res.gpus and not cuda:
            why = f"{res.gpus} GPUs requested for {stage} but device is {config.get('device')!r}"
            problems.append((origin(stage, "gpus"), why))
        if stage not in TRAINING_STAGES and (res.gpus > 1 or res.nodes > 1):
            why = f"{stage} runs one model on one device: gpus <= 1 and nodes 1, got {res.gpus} and {res.nodes}"
            problems.append((f"resources.{stage}" if stage in block else "resources.default", why))
        if res.nodes > 1 and not res.gpus:
            problems.append((origin(stage, "nodes"), f"multi-node {stage} needs gpus per node"))
        own = block.get(stage) or {}
        if res.gpus and ("cpus" in own or ("cpus" in default and default.get("gpus"))):
            why = (
                f"{stage} runs on {res.gpus} GPU(s) per node: a GPU job asks for cores per GPU (cpus_per_gpu), "
                "cpus is for jobs without GPUs, and the slurm executor requests one or the other"
            )
            problems.append((origin(stage, "cpus"), why))
    return problems
