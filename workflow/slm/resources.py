"""What each stage's jobs ask for: GPUs, nodes, CPUs, memory and wall time, from the config's
``resources`` block.

One block per stage (the rule that runs it), each key falling back to ``resources.default`` and then
to the built-in default below. The Snakemake rules turn a stage's resources into Snakemake resources
(which a local run schedules with ``--resources`` and a cluster executor turns into a job request),
and the training rules into their launch command (several GPUs or nodes: torchrun).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

# Stages that train a model: the only ones that may span several GPUs or nodes (torchrun).
TRAINING_STAGES = ("pretrain_base", "train_reference", "train", "sft_tir")
# Stages that run one model on at most one GPU.
MODEL_STAGES = ("score", "evaluate", "evaluate_tir", "dynamics")
STAGES = TRAINING_STAGES + MODEL_STAGES


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
    """CPU cores of a job without GPUs; None: all cores Snakemake is given (local runs)."""
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
    merged.update(block.get("default") or {})
    merged.update(block.get(stage) or {})
    return StageResources(**merged)


def check_resources(config: dict) -> list[tuple[str, str]]:
    """Cross-key problems of the resources block as ``(key, why)`` pairs (the schema checks each value)."""
    problems = []
    block = config.get("resources") or {}
    cuda = str(config.get("device", "cpu")).startswith(("cuda", "auto"))
    for stage in STAGES:
        res = stage_resources(config, stage)
        key = f"resources.{stage}" if stage in block else "resources.default"
        if res.gpus and not cuda:
            problems.append((f"{key}.gpus", f"{res.gpus} GPUs requested but device is {config.get('device')!r}"))
        if stage not in TRAINING_STAGES and (res.gpus > 1 or res.nodes > 1):
            why = f"{stage} runs one model on one device: gpus <= 1 and nodes 1, got {res.gpus} and {res.nodes}"
            problems.append((key, why))
        if res.nodes > 1 and not res.gpus:
            problems.append((f"{key}.nodes", "multi-node training needs gpus per node"))
    return problems
