"""How a training job spreads over processes: the command that starts its ranks, and each rank's share
of the optimizer batch.

No torch import: Snakemake imports this module while planning. The trainer (``slm.train``) and the
config checks (``slm.config``) use the same batch split, so a config whose batch does not split over
its stage's ranks stops before any job.
"""

from __future__ import annotations

from slm.resources import StageResources

# Port of the c10d rendezvous on the first node of a multi-node job (torchrun's default).
RENDEZVOUS_PORT = 29500
# The first node of the job. Under the slurm executor the job step's environment keeps SLURM_JOB_ID
# but not SLURM_JOB_NODELIST, so the node list comes from squeue.
FIRST_HOST = '$(scontrol show hostnames "$(squeue -h -j $SLURM_JOB_ID -o %N)" | head -n 1)'


def local_launcher(processes: int) -> str:
    """The launcher that runs ``-m slm ...`` as ``processes`` ranks on this node: ``python`` for one,
    else ``torchrun --standalone`` (gloo on the CPU, nccl on GPUs: slm.distributed)."""
    return "python" if processes == 1 else f"torchrun --standalone --nproc-per-node {processes}"


def launch_command(res: StageResources) -> str:
    """The launcher that runs ``-m slm train ...`` on every rank of a job with these resources.

    One process: ``python``, as a plain run. Several GPUs on one node: ``torchrun --standalone``,
    one process per GPU. Several nodes: ``srun`` starts one ``torchrun`` per node, which meet at a
    c10d rendezvous on the first node. Slurm >= 22.05 does not pass the job's ``--cpus-per-task`` on
    to ``srun``, so it is given again; the step sees every GPU the job holds on its node.
    """
    if res.nodes == 1:
        return local_launcher(res.world_size)
    return (
        f"srun --nodes {res.nodes} --ntasks {res.nodes} --ntasks-per-node 1"
        f" --cpus-per-task {res.gpus * res.cpus_per_gpu} --kill-on-bad-exit 1"
        f" torchrun --nnodes {res.nodes} --nproc-per-node {res.gpus} --rdzv-backend c10d"
        f" --rdzv-id $SLURM_JOB_ID --rdzv-endpoint {FIRST_HOST}:{RENDEZVOUS_PORT}"
    )


class BatchSplitError(ValueError):
    """A batch that does not split over the ranks; ``key`` is the training option at fault."""

    def __init__(self, key: str, why: str):
        super().__init__(f"{key!r}: {why}")
        self.key, self.why = key, why


def split_batch(batch_size: int, micro_batch_size: int | None, world_size: int) -> tuple[int, int]:
    """Each rank's share of the optimizer batch and its micro-batch, in sequences.

    Rank r takes the sequences ``[r * share, (r + 1) * share)`` of the global batch. The micro-batch
    (sequences per forward pass) is at most the share; unset, a rank takes its share in one pass.
    """
    if batch_size % world_size:
        raise BatchSplitError("batch_size", f"{batch_size} sequences do not split evenly over {world_size} ranks")
    share = batch_size // world_size
    micro = min(micro_batch_size or share, share)
    if micro < 1 or share % micro:
        why = f"{micro_batch_size} does not divide the {share} sequences of each of {world_size} rank(s)"
        raise BatchSplitError("micro_batch_size", why)
    return share, micro
