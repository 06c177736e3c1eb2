"""Data parallelism for the one trainer, on PyTorch's FSDP2 (the pattern of pytorch/torchtitan).

The trainer takes one path at every world size: a process group (torchrun's, or a one-process group
made here), collectives that are no-ops on one rank, the training state in ``torch.distributed.checkpoint``
(DCP) format, which loads on any number of ranks, and the model sharded with ``fully_shard`` on each
decoder layer and on the root, computing in bf16 through FSDP's ``MixedPrecisionPolicy`` over fp32
weights. Only one fp32 process keeps its model unsharded (``needs_sharding``): FSDP would give it
bit-identical weights, more slowly.

Gradients are summed across ranks, not averaged (``set_gradient_divide_factor(1.0)``, as torchtitan):
each rank's loss is its share of the global loss, the selected tokens' loss divided by the global count.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from slm.model import fsdp_mixed_precision, per_token_losses

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies
# A model "fits one GPU" when its fp32 weights, gradients and two AdamW moments (16 bytes per
# parameter) take at most this share of the device's memory; it then stays unsharded between the
# forward and the backward pass (DDP-like), else every layer is resharded after its forward (7B).
FIT_SHARE = 0.5


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (torchrun's environment)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def from_env(cls) -> World:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", 0)),
            size=int(env.get("WORLD_SIZE", 1)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            local_size=int(env.get("LOCAL_WORLD_SIZE", 1)),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, share: int) -> slice:
        """This rank's rows of a global batch split in contiguous shares, in rank order."""
        return slice(self.rank * share, (self.rank + 1) * share)


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device of this rank: its local GPU on CUDA (one process per GPU)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


def die_with_launcher() -> None:
    """Make this rank die when the process that started it (torchrun's agent) dies, also by SIGKILL:
    torchrun starts each rank in its own session, so killing the job's process group would otherwise
    leave the ranks training on, beside the rerun that replaces them (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher died before the call
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def process_group(device: torch.device, world: World) -> Iterator[None]:
    """The default process group for the duration of a run: torchrun's (from its environment) or, for a
    plain one-process run, a one-process group with an in-memory store. A group that exists already (a
    caller that made it) is used and left alone. nccl on CUDA, gloo on the CPU."""
    if dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world.size == 1 and "MASTER_ADDR" not in os.environ:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    else:
        die_with_launcher()
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


def fits_one_device(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether the model trains on one device of this kind without sharding (see FIT_SHARE)."""
    if device.type != "cuda":
        return True
    n_params = sum(p.numel() for p in model.parameters())
    return 16 * n_params <= FIT_SHARE * torch.cuda.get_device_properties(device).total_memory


def decoder_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers of a transformers causal LM (the classes it names in ``_no_split_modules``)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (_no_split_modules)")
    return blocks


def compile_blocks(model: torch.nn.Module) -> None:
    """Compile each decoder layer with torch.compile, in place (before sharding, as torchtitan does)."""
    for block in decoder_blocks(model):
        block.compile()


def needs_sharding(world_size: int, precision: str) -> bool:
    """Whether the trainer wraps its model in FSDP. One fp32 process does not: FSDP would have nothing
    to shard or cast, its collectives would be copies and its optimizer step runs on DTensors, which
    make a step on the CPU slower for bit-identical weights (tests/test_distributed.py). bf16 always
    does: FSDP's mixed-precision policy is the bf16 numeric path at every world size."""
    return world_size > 1 or precision == "bf16"


def shard_model(model: torch.nn.Module, device: torch.device, *, precision: str, reshard_after_forward: bool):
    """Shard a transformers causal LM over all ranks with FSDP2, in place, and return it: each decoder
    layer is one FSDP unit, the root (embeddings, final norm, head) another, computing at ``precision``
    (slm.model.fsdp_mixed_precision). The root gets a ``per_token_losses(input_ids)`` method (the one
    per-token loss, slm.model.per_token_losses) that runs as a forward of the root, so that the root's
    parameters are gathered for it."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    kwargs = {"mesh": mesh, "mp_policy": fsdp_mixed_precision(precision)}
    for block in decoder_blocks(model):
        fully_shard(block, reshard_after_forward=reshard_after_forward, **kwargs)
    fully_shard(model, **kwargs)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            # A plain sum (ReduceOp.SUM, which gloo has too) instead of an average.
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    model.per_token_losses = types.MethodType(per_token_losses, model)
    register_fsdp_forward_method(model, "per_token_losses")
    return model


def set_gradient_sync(model: torch.nn.Module, sync: bool) -> None:
    """Whether the next backward pass reduces gradients across ranks (off for all micro-batches of a
    step but the last, when the parameters stay unsharded anyway)."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)


def clip_grad_norm(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip the gradients of the whole (sharded) model to ``max_norm`` (``math.inf``: measure only);
    returns the norm (on device)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads, 2.0)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    if math.isfinite(max_norm):
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


def gather_rows(local: torch.Tensor, world: World) -> torch.Tensor:
    """Every rank's ``local`` stacked along dimension 0 in rank order (the global batch's rows)."""
    if world.size == 1:
        return local
    out = local.new_empty((world.size * local.shape[0], *local.shape[1:]))
    dist.all_gather_single(out, local.contiguous())
    return out


def sum_over_ranks(local: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of ``local`` over all ranks (a new tensor)."""
    total = local.clone()
    if world.size > 1:
        dist.all_reduce(total)
    return total


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def _one_process() -> bool:
    """Whether DCP should skip its collectives: one rank has nobody to plan a checkpoint with. Measured on
    a 2-core CPU, DCP's coordination over the one-process gloo group made each save of the default's
    1.9M-parameter state take about 2.7 s and left every later step about 13% slower; the files it writes
    are the same either way, and load on any number of ranks."""
    return not dist.is_initialized() or dist.get_world_size() == 1


def save_sharded(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Every rank writes its shards of the model and optimizer state into the directory ``path``."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=path, no_dist=_one_process())


def load_sharded(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a state written by ``save_sharded`` on any number of ranks into this rank's shards."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=path, no_dist=_one_process())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded weights on the CPU of rank 0 (an empty dict on the other ranks); all ranks call it.

    Names of one parameter (tied embeddings) share one tensor, as in the model, so that transformers
    saves it once."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    first_name = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        first = first_name.setdefault(id(param), name)
        if first != name and name in state:
            state[name] = state[first]
    return state
