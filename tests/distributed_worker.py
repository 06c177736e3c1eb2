"""One rank of tests/test_distributed.py, started by torchrun with the gloo backend.

``python -m torch.distributed.run --standalone --nproc-per-node N tests/distributed_worker.py JOB.json``

For every training spec of the job, the rank writes to the job's output directory what it computed
for step 0 (its share of the selection weights from forced-tie losses, its share of the mask from the
real model's losses, and the gradients), then trains the spec to the end. The test compares all of it with
one process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from slm.train import BatchLoader, TrainConfig, Trainer, train


def tied_losses(batch_size: int, length: int) -> torch.Tensor:
    """Per-token "current losses" of a global batch with only three values, so most scores tie:
    the selection must then break the ties by position exactly as in one process."""
    losses = torch.randint(0, 3, (batch_size, length), generator=torch.Generator().manual_seed(0)).float() / 2
    losses[:, 0] = float("nan")
    return losses


def step_zero(trainer: Trainer) -> dict:
    """This rank's share of step 0: weights from tied losses (units ranked over the batch), the mask
    from the model's own losses (every unit), and the full gradients summed over the ranks."""
    cfg = trainer.cfg
    batch = BatchLoader(trainer).load(0)
    out = {}
    if cfg.ranks_batch:
        random = trainer._random_scores(0) if cfg.score_fn == "random" else None
        current = tied_losses(cfg.batch_size, trainer.seq_len)[trainer.world.rows(trainer.share)]
        out["tied_weights"] = trainer._batch_weights(current, batch, random)
    _, out["mask"] = trainer.train_step(0, batch)
    out["grads"] = {name: p.grad.full_tensor() for name, p in trainer.model.named_parameters()}
    return out


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    out = Path(job["out"])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for name, spec in job["runs"].items():
        trainer = Trainer(TrainConfig.from_dict(spec))
        trainer._setup()
        torch.save(step_zero(trainer), out / f"{name}-rank{rank}.pt")
        train(spec)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
