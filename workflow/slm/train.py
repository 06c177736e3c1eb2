"""The one trainer: causal LM training with optional token selection (SLM). CLM is ratio 1.0.

Used for every training stage: the base model's brief pretraining, the reference model's fine-tuning
on high-quality data, and the SLM / CLM continual-pretraining runs. It runs on any number of processes
(``torchrun``; one process: ``python -m slm train``) with the same code path (``slm.distributed``): rank
r trains on its contiguous share of each optimizer batch, and the selection ranks the per-token scores
of the whole batch, gathered from every rank, so a run selects the same tokens and takes the same
steps at any world size. The full training state is saved atomically every ``save_every`` steps, and
a rerun resumes from it, on any number of ranks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.distributed.fsdp import FSDPModule

from slm.config import optim_problems
from slm.data.packed import PackedCorpus
from slm.distributed import (
    World,
    barrier,
    clip_grad_norm,
    compile_blocks,
    fits_one_device,
    full_state_dict,
    gather_rows,
    load_sharded,
    needs_sharding,
    process_group,
    rank_device,
    save_sharded,
    set_gradient_sync,
    shard_model,
    sum_over_ranks,
)
from slm.fingerprint import changed_inputs, input_fingerprint
from slm.io import atomic_path
from slm.launch import split_batch
from slm.model import check_vocabulary, load_model, per_token_losses, resolve_device, save_model
from slm.model_card import training_card
from slm.progress import progress
from slm.schema import check_training_options
from slm.score import open_scores
from slm.selection import (
    document_ids,
    n_selected,
    select_tokens,
    soft_weights,
    token_scores,
)
from slm.tracking import open_tracker

log = logging.getLogger(__name__)

# A saved state is the directory state_dir/step-NNNNNNNNN: the DCP shards of the model and optimizer
# and TRAINER_FILE (step, counters, metrics, scheduler, RNG, fingerprint). It appears under that name
# only once every rank has written it, so the newest such directory is always complete.
STATE_PREFIX = "step-"
TRAINER_FILE = "trainer.pt"
# Fields that do not change the trained weights, so a resumed run may differ in them.
_NOT_FINGERPRINTED = {
    "out_dir",
    "state_dir",
    "checkpoint_dir",
    "save_every",
    "log_every",
    "threads",
    "reshard_after_forward",
    "compile",
}
_NOT_FINGERPRINTED |= {"name", "role", "tracking"}  # what the stage is called, where it is tracked


@dataclass
class TrainConfig:
    init_model: str
    data: list[str]
    out_dir: str
    state_dir: str
    scores: list[str] | None = None
    reference_model: str | None = None
    ratio: float = 1.0
    unit: str = "batch"
    score_fn: str = "excess"
    weighting: str = "hard"
    temperature: float = 1.0
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # Train only on tokens of these span kinds of the packed data (e.g. ["program", "answer"] of a
    # data.tir shard: what the model writes at evaluation, as ToRA does); None: every token.
    loss_kinds: list[str] | None = None
    batch_size: int = 16
    micro_batch_size: int | None = None
    max_tokens: int | None = None
    epochs: float | None = None
    checkpoints: list[int] = field(default_factory=list)
    checkpoint_dir: str | None = None
    save_every: int = 50
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    # Keep each layer's parameters gathered from its forward to its backward pass (False: DDP-like,
    # for models that fit one device) or shard them again after the forward (True: less memory, one
    # more all-gather per layer). None: False when the model fits one device (slm.distributed.FIT_SHARE).
    reshard_after_forward: bool | None = None
    # Compile each decoder layer with torch.compile (faster on GPUs; needs a C++ compiler on the CPU).
    compile: bool = False
    # What the stage is, for its model card and trackers: name (e.g. slm, reference) and role
    # (base, reference, run, tir); the tracking spec of slm.tracking (TensorBoard, W&B).
    name: str | None = None
    role: str | None = None
    tracking: dict | None = None

    @classmethod
    def from_dict(cls, spec: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown training option(s) {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**spec)

    def fingerprint(self) -> str:
        relevant = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_FINGERPRINTED}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()

    def validate(self, world_size: int = 1) -> None:
        """Types and ranges by the config schema, how keys fit by slm.config (the workflow checks the
        same rules on the config), then what only the trainer's own paths can tell."""
        options = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        check_training_options(options)
        for key, why in optim_problems(options, world_size):
            raise ValueError(f"training option {key or 'max_tokens'!r}: {why}")

        def bad(key: str, why: str):
            raise ValueError(f"training option {key!r}: {why}")

        if self.needs_scores and not self.scores:
            bad("scores", f"ratio {self.ratio} with score_fn {self.score_fn!r} needs reference score shards")
        if self.scores and len(self.scores) != len(self.data):
            bad("scores", f"{len(self.scores)} score shards for {len(self.data)} token shards")
        if self.checkpoints and not self.checkpoint_dir:
            bad("checkpoint_dir", "needed when checkpoints are requested")

    @property
    def selective(self) -> bool:
        """Whether tokens are weighted at all (CLM: ratio 1.0 with hard weights is not)."""
        return self.ratio < 1.0 or self.weighting == "soft"

    @property
    def ranks_batch(self) -> bool:
        """Whether the weights depend on the whole batch's scores (every unit but a hard per-sequence
        top-k): they are then computed from the scores of every rank."""
        return self.selective and (self.unit != "sequence" or self.weighting == "soft")

    @property
    def needs_scores(self) -> bool:
        return self.selective and self.score_fn in ("excess", "reference")


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float):
    """Linear warmup, then cosine decay to ``min_ratio`` of the peak."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class BatchSampler:
    """Deterministic shuffled order of sequences, a fresh permutation every epoch, indexed by step.

    This is the order of the global batch; each rank trains on a contiguous share of it.
    """

    def __init__(self, n_sequences: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n_sequences, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def batch(self, step: int) -> list[int]:
        positions = range(step * self.batch_size, (step + 1) * self.batch_size)
        return [int(self._perm(p // self.n)[p % self.n]) for p in positions]


def loss_bearing(kinds: torch.Tensor, kind_ids: list[int] | None) -> torch.Tensor:
    """Mask of the loss-bearing tokens of sequences whose span kinds are ``kinds`` [sequences, length]:
    every token but the first of each sequence (no context), of a kind in ``kind_ids`` unless None."""
    valid = torch.ones_like(kinds, dtype=torch.bool) if kind_ids is None else torch.isin(kinds, torch.tensor(kind_ids))
    valid[:, 0] = False
    return valid


@dataclass
class Batch:
    """One rank's share of an optimizer batch."""

    ids: torch.Tensor
    """token ids [share, length]"""
    kinds: torch.Tensor
    """span kind of each token [share, length]"""
    valid: torch.Tensor
    """loss-bearing tokens [share, length]"""
    global_valid: torch.Tensor
    """loss-bearing tokens of the whole global batch [batch, length]"""
    normaliser: int
    """the loss's divisor: selected (or, unselective, loss-bearing) tokens of the global batch"""
    ref: torch.Tensor | None = None
    """stored reference loss of each token [share, length] (runs with scores)"""
    docs: torch.Tensor | None = None
    """document fragment ids of the whole global batch [batch, length] (unit document)"""


class BatchLoader:
    """This rank's share of each step's batch, read from the memory-mapped shards in a background
    thread one step ahead of the training loop (into pinned memory for a GPU), then copied to the device."""

    def __init__(self, trainer: Trainer):
        self.corpus, self.sampler, self.device = trainer.corpus, trainer.sampler, trainer.device
        self.rows = trainer.world.rows(trainer.share)
        self.trainer = trainer
        self.families = [[s.tokens for s in self.corpus.shards], [s.kinds for s in self.corpus.shards]]
        if trainer.scores:
            self.families.append(trainer.scores)
        documents = trainer.cfg.ranks_batch and trainer.cfg.unit == "document" and trainer.cfg.weighting == "hard"
        self.eos_id = trainer.eos_id if documents else None

    def read(self, step: int) -> dict:
        """The step's arrays on the host (ids, kinds, and reference losses, document ids and the
        loss-bearing masks where the run needs them) and, with loss_kinds, the step's normaliser."""
        indices = self.sampler.batch(step)
        arrays = self.corpus.gather(indices[self.rows], self.families)
        host = {
            "ids": torch.from_numpy(arrays[0].astype(np.int64)),
            "kinds": torch.from_numpy(arrays[1].astype(np.int64)),
        }
        if len(arrays) > 2:
            host["ref"] = torch.from_numpy(arrays[2].astype(np.float32))
        if self.eos_id is not None:
            tokens = self.corpus.gather(indices, self.families[:1])[0]
            host["docs"] = document_ids(torch.from_numpy(tokens.astype(np.int64)), self.eos_id)
        if self.trainer.loss_kind_ids is not None:
            # Every rank reads the whole batch's kinds, so that each divides by the same global count.
            kinds = self.corpus.gather(indices, self.families[1:2])[0]
            host["global_valid"] = loss_bearing(torch.from_numpy(kinds.astype(np.int64)), self.trainer.loss_kind_ids)
            host["valid"] = host["global_valid"][self.rows]
            host["normaliser"] = self.trainer.loss_normaliser(host["global_valid"])
        if self.device.type == "cuda":
            host = {k: t.pin_memory() if isinstance(t, torch.Tensor) else t for k, t in host.items()}
        return host

    def to_device(self, host: dict) -> Batch:
        trainer = self.trainer
        fixed = {"valid": trainer.valid, "global_valid": trainer.global_valid, "normaliser": trainer.normaliser}
        moved = {k: t.to(self.device, non_blocking=True) if isinstance(t, torch.Tensor) else t for k, t in host.items()}
        return Batch(**{**fixed, **moved})

    def load(self, step: int) -> Batch:
        return self.to_device(self.read(step))

    def __call__(self, steps: range) -> Iterator[Batch]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-loader") as pool:
            pending = pool.submit(self.read, steps.start) if len(steps) else None
            for step in steps:
                host = pending.result()
                if step + 1 < steps.stop:
                    pending = pool.submit(self.read, step + 1)
                yield self.to_device(host)


@dataclass
class StepTotals:
    """A step's sums over every token of the global batch."""

    loss_selected_sum: float = 0.0
    loss_unselected_sum: float = 0.0
    n_valid: int = 0
    n_selected: int = 0
    weight_sum: float = 0.0
    weight_sq_sum: float = 0.0

    def as_log(self) -> dict:
        unselected = self.n_valid - self.n_selected
        return {
            "loss": self.loss_selected_sum / max(1, self.n_selected),
            "loss_all": (self.loss_selected_sum + self.loss_unselected_sum) / max(1, self.n_valid),
            "loss_unselected": self.loss_unselected_sum / unselected if unselected else float("nan"),
            "selected_fraction": self.n_selected / max(1, self.n_valid),
        }

    @property
    def effective_sample_size(self) -> float:
        """(sum w)^2 / sum w^2 of the token weights: how many tokens a soft-weighted batch is worth."""
        return self.weight_sum**2 / self.weight_sq_sum if self.weight_sq_sum else 0.0


class StepStats:
    """A step's sums over this rank's tokens, kept on the device: no host sync per micro-batch."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(len(dataclasses.fields(StepTotals)), dtype=torch.float64, device=device)

    def add(self, losses: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor) -> None:
        losses = losses.detach().nan_to_num(0.0)
        unselected = valid & (weights == 0)
        parts = [
            (losses * weights).sum(),
            torch.where(unselected, losses, 0.0).sum(),
            valid.sum(),
            (weights > 0).sum(),
            weights.sum(),
            (weights * weights).sum(),
        ]
        self.sums += torch.stack([p.double() for p in parts])

    def total(self, world: World) -> StepTotals:
        """The sums over all ranks (a collective, and a host sync)."""
        values = sum_over_ranks(self.sums, world).tolist()
        return StepTotals(values[0], values[1], round(values[2]), round(values[3]), values[4], values[5])


class RegionTimer:
    """Time spent in a region of the step, summed until read: CUDA events on a GPU (no sync before the
    read), wall time on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds, self.events = 0.0, []

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.events.append((start, end))
        else:
            begin = time.perf_counter()
            yield
            self.seconds += time.perf_counter() - begin

    def read(self) -> float:
        """Seconds spent in the region since the last read."""
        if self.events:
            torch.cuda.synchronize()
            self.seconds += sum(start.elapsed_time(end) for start, end in self.events) / 1000
        seconds, self.seconds, self.events = self.seconds, 0.0, []
        return seconds


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.world = World.from_env()
        cfg.validate(self.world.size)
        self.cfg = cfg
        self.corpus = PackedCorpus(cfg.data)
        check_vocabulary(cfg.init_model, self.corpus.shards)
        self.seq_len = self.corpus.seq_len
        # Check every score shard against its token shard before any training.
        self.scores = (
            [open_scores(s, shard, cfg.reference_model) for s, shard in zip(cfg.scores, self.corpus.shards)]
            if cfg.scores
            else None
        )
        self.tokens_per_step = cfg.batch_size * self.seq_len
        if cfg.max_tokens is not None:
            self.total_steps = math.ceil(cfg.max_tokens / self.tokens_per_step)
        else:
            self.total_steps = math.ceil(cfg.epochs * len(self.corpus) / cfg.batch_size)
        if self.total_steps < 1:
            raise ValueError("training option 'max_tokens'/'epochs' gives no training step")
        total_tokens = self.total_steps * self.tokens_per_step
        self.checkpoint_steps = {}
        for tokens in cfg.checkpoints:
            if not 0 < tokens <= total_tokens:
                raise ValueError(f"training option 'checkpoints': {tokens} is outside (0, {total_tokens}] tokens")
            self.checkpoint_steps[math.ceil(tokens / self.tokens_per_step)] = tokens
        self.sampler = BatchSampler(len(self.corpus), cfg.batch_size, cfg.seed)
        self.eos_id = self.corpus.shards[0].index["eos_id"]
        self.device = rank_device(resolve_device(cfg.device), self.world)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"training option 'device': {cfg.device!r}; training runs on 'cpu' or 'cuda'")
        self.share, self.micro = split_batch(cfg.batch_size, cfg.micro_batch_size, self.world.size)
        self.kind_names = self.corpus.kind_names
        self.loss_kind_ids = None
        if cfg.loss_kinds is not None:
            unknown = [kind for kind in cfg.loss_kinds if kind not in self.kind_names]
            if unknown:
                raise ValueError(
                    f"training option 'loss_kinds': {unknown} are not span kinds of {cfg.data[0]} "
                    f"(its kinds: {list(self.kind_names)})"
                )
            self.loss_kind_ids = [self.kind_names.index(kind) for kind in cfg.loss_kinds]
        # Loss-bearing tokens without loss_kinds: all but the first of each sequence, the same every
        # step, and so the loss normaliser (with loss_kinds, both come with each batch: BatchLoader).
        self.global_valid = loss_bearing(torch.zeros(cfg.batch_size, self.seq_len, dtype=torch.int64), None)
        self.global_valid = self.global_valid.to(self.device)
        self.valid = self.global_valid[self.world.rows(self.share)]
        self.normaliser = self.loss_normaliser(self.global_valid.cpu())
        # Token counts of this rank since the start of the run (a resumed run's earlier counts on rank 0):
        # loss-bearing, selected, then per span kind loss-bearing and selected. Read by _counters.
        self.tallies = torch.zeros(2 + 2 * len(self.kind_names), dtype=torch.int64, device=self.device)
        self.selection_timer = RegionTimer(self.device)
        self.model = None
        self.reshard_after_forward = bool(cfg.reshard_after_forward)

    def loss_normaliser(self, global_valid: torch.Tensor) -> int:
        """The loss's divisor for a global batch whose loss-bearing tokens are ``global_valid`` (on the
        host), known before any forward pass: the number of selected tokens (hard selection) or of
        loss-bearing tokens (CLM; soft weights average 1); at least 1."""
        cfg = self.cfg
        per_sequence = global_valid.sum(dim=1).tolist()
        if not cfg.selective or cfg.weighting == "soft":
            count = sum(per_sequence)
        elif cfg.unit == "sequence":
            count = sum(n_selected(n, cfg.ratio) for n in per_sequence)
        else:
            count = n_selected(sum(per_sequence), cfg.ratio)
        return max(1, count)

    # -- one optimizer step ------------------------------------------------------------------
    def _forward_losses(self, ids: torch.Tensor) -> torch.Tensor:
        # No autocast: with precision bf16, FSDP2's MixedPrecisionPolicy (slm.model.fsdp_mixed_precision)
        # gives the forward bf16 parameters, the weights the scorer computes with. Under FSDP the loss
        # runs as a forward method of the root module, which gathers the root's parameters (shard_model).
        if isinstance(self.model, FSDPModule):
            return self.model.per_token_losses(ids)
        return per_token_losses(self.model, ids)

    def _weights(self, scores: torch.Tensor, valid: torch.Tensor, docs: torch.Tensor | None) -> torch.Tensor:
        """Per-token loss weights: 0/1 for hard selection, softmax weights for soft reweighting."""
        cfg = self.cfg
        if cfg.weighting == "soft":
            return soft_weights(scores, valid, cfg.temperature)
        return select_tokens(scores, valid, cfg.ratio, cfg.unit, docs).float()

    def _random_scores(self, step: int) -> torch.Tensor:
        """Scores of ``score_fn: random``: one draw for the global batch, the same on every rank."""
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        shape = (self.cfg.batch_size, self.seq_len)
        return token_scores("random", torch.empty(shape), None, generator).to(self.device)

    def _batch_weights(self, current: torch.Tensor, batch: Batch, random: torch.Tensor | None) -> torch.Tensor:
        """This rank's share of weights ranked over the global batch: the scores of every rank are
        gathered, the selection runs on the whole batch as in one process, each rank keeps its rows."""
        with self.selection_timer():
            if random is not None:
                scores = random
            else:
                scores = gather_rows(token_scores(self.cfg.score_fn, current, batch.ref).float(), self.world)
            weights = self._weights(scores, batch.global_valid, batch.docs)
        return weights[self.world.rows(self.share)]

    def train_step(self, step: int, batch: Batch) -> tuple[StepStats, torch.Tensor]:
        """Forward/backward over this rank's share of the optimizer batch; returns the step's stats
        (on the device) and the share's selection mask."""
        cfg = self.cfg
        micro, ids, valid = self.micro, batch.ids, batch.valid
        random = self._random_scores(step) if cfg.selective and cfg.score_fn == "random" else None
        chunks = range(0, ids.shape[0], micro)
        weights = None
        if cfg.ranks_batch and len(chunks) > 1:
            # Exact batch-level ranking under gradient accumulation: every micro-batch's current
            # losses are needed before any backward pass, so take them in a no-grad pass first.
            with torch.no_grad():
                current = torch.cat([self._forward_losses(ids[i : i + micro]) for i in chunks])
            weights = self._batch_weights(current, batch, random)

        stats = StepStats(self.device)
        masks = []
        for n, i in enumerate(chunks):
            mb = slice(i, i + micro)
            # Reduce gradients once per step unless the parameters are resharded after each forward.
            set_gradient_sync(self.model, n == len(chunks) - 1 or self.reshard_after_forward)
            losses = self._forward_losses(ids[mb])
            if weights is not None:
                mb_weights = weights[mb]
            elif not cfg.selective:
                mb_weights = valid[mb].float()
            elif cfg.ranks_batch:  # one micro-batch: this rank's whole share
                mb_weights = self._batch_weights(losses.detach(), batch, random)
            else:  # hard top-k within each sequence: no other sequence is needed
                mb_random = random[self.world.rows(self.share)][mb] if random is not None else None
                mb_ref = batch.ref[mb] if batch.ref is not None else None
                mb_scores = mb_random if mb_random is not None else token_scores(cfg.score_fn, losses.detach(), mb_ref)
                mb_weights = select_tokens(mb_scores, valid[mb], cfg.ratio, "sequence").float()
            # Weighted sum over this rank's tokens / the global normaliser: summed over ranks (FSDP
            # sums the gradients), the mean over the batch's selected tokens, and unselected tokens
            # (weight 0) get no gradient.
            loss = (losses.nan_to_num(0.0) * mb_weights).sum() / batch.normaliser
            loss.backward()
            stats.add(losses, mb_weights, valid[mb])
            masks.append(mb_weights > 0)
        return stats, torch.cat(masks)

    def _count(self, mask: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Add a step's token counts of this rank, overall and per span kind, on the device; return
        the step's per-kind counts of this rank (loss-bearing, then selected)."""
        n_kinds = len(self.kind_names)
        flat_kinds = batch.kinds.reshape(-1)
        step = torch.zeros(2 * n_kinds, dtype=torch.int64, device=self.tallies.device)
        for offset, chosen in ((0, batch.valid), (n_kinds, mask)):
            step[offset : offset + n_kinds].scatter_add_(0, flat_kinds, chosen.reshape(-1).long())
        self.tallies[2:] += step
        self.tallies[0] += batch.valid.sum()
        self.tallies[1] += mask.sum()
        return step

    def _kind_shares(self, step_counts: torch.Tensor) -> dict[str, float]:
        """The share of each span kind's loss-bearing tokens of a step that was selected, over all ranks
        (a collective)."""
        counts = sum_over_ranks(step_counts, self.world).tolist()
        n_kinds = len(self.kind_names)
        return {
            name: selected / seen
            for name, seen, selected in zip(self.kind_names, counts[:n_kinds], counts[n_kinds:])
            if seen
        }

    def _counters(self, steps: int) -> dict:
        """The run's token counts over all ranks after ``steps`` steps (a collective)."""
        tallies = sum_over_ranks(self.tallies, self.world).tolist()
        n_kinds = len(self.kind_names)
        return {
            "tokens_seen": steps * self.tokens_per_step,
            "tokens_loss_bearing": tallies[0],
            "tokens_selected": tallies[1],
            "kind_seen": tallies[2 : 2 + n_kinds],
            "kind_selected": tallies[2 + n_kinds :],
        }

    # -- state ---------------------------------------------------------------------------------
    def _state_dirs(self) -> list[Path]:
        """The complete saved states, oldest first."""
        return sorted(Path(self.cfg.state_dir).glob(f"{STATE_PREFIX}*[0-9]"))

    def _staged_checkpoint(self, tokens: int) -> Path:
        return Path(self.cfg.state_dir) / "checkpoints" / f"tokens-{tokens}"

    @functools.cached_property
    def fingerprint(self) -> dict:
        """The options and the content hashes of the inputs (slm.fingerprint) this run's state belongs to."""
        cfg = self.cfg
        return input_fingerprint(
            cfg.fingerprint(),
            init_model=cfg.init_model,
            data=cfg.data,
            scores=cfg.scores,
            reference_model=cfg.reference_model,
        )

    def _save_state(self, step: int) -> None:
        """Every rank writes its shards into a temporary directory; once all have, rank 0 adds the
        trainer's own state and renames the directory to its final name, then drops older states."""
        final = Path(self.cfg.state_dir) / f"{STATE_PREFIX}{step:09d}"
        tmp = final.with_name(f".{final.name}.tmp")
        if self.world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier(self.world)
        save_sharded(tmp, self.model, self.optimizer)
        trainer_state = {
            "fingerprint": self.fingerprint,
            "step": step,
            "counters": self._counters(step),
            "scheduler": self.scheduler.state_dict(),
            "metrics": self.metrics,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        if self.world.is_main:
            torch.save(trainer_state, tmp / TRAINER_FILE)
            os.replace(tmp, final)
            for old in self._state_dirs():
                if old != final:
                    shutil.rmtree(old)
        barrier(self.world)

    def _load_state(self) -> int:
        states = self._state_dirs()
        if not states:
            self._discard_state()
            return 0
        path = states[-1]
        try:
            state = torch.load(path / TRAINER_FILE, weights_only=False)
        except Exception as err:  # truncated or corrupt: the state is a cache, so start over
            log.warning("ignoring saved state %s: it cannot be read (%s); starting from step 0", path, err)
            self._discard_state()
            return 0
        changed = changed_inputs(state.get("fingerprint"), self.fingerprint)
        if changed:
            log.warning(
                "ignoring saved state %s (step %s): its %s changed since it was saved; starting from step 0",
                path,
                state.get("step"),
                ", ".join(changed),
            )
            self._discard_state()
            return 0
        load_sharded(path, self.model, self.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        self.metrics = state["metrics"]
        c = state["counters"]
        if self.world.is_main:  # the counts so far, once: the tallies are summed over ranks
            saved = [c["tokens_loss_bearing"], c["tokens_selected"], *c["kind_seen"], *c["kind_selected"]]
            self.tallies.copy_(torch.tensor(saved, dtype=torch.int64))
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        log.info("resumed from %s at step %d/%d on %d rank(s)", path, state["step"], self.total_steps, self.world.size)
        return state["step"]

    def _discard_state(self) -> None:
        """A run from step 0 drops the states and staged checkpoints of an earlier run (all ranks call this)."""
        if self.world.is_main:
            for old in self._state_dirs():
                shutil.rmtree(old)
            shutil.rmtree(Path(self.cfg.state_dir) / "checkpoints", ignore_errors=True)
        barrier(self.world)

    def _stats(self, step: int, tokens_per_second: float) -> dict:
        c = self._counters(step)
        return {
            "run": Path(self.cfg.out_dir).parent.name,
            "ratio": self.cfg.ratio,
            "unit": self.cfg.unit,
            "score_fn": self.cfg.score_fn,
            "weighting": self.cfg.weighting,
            "loss_kinds": self.cfg.loss_kinds,
            "steps": step,
            "tokens_seen": c["tokens_seen"],
            "tokens_loss_bearing": c["tokens_loss_bearing"],
            "tokens_selected": c["tokens_selected"],
            "kind_names": self.kind_names,
            "kinds": {
                name: {"seen": c["kind_seen"][i], "selected": c["kind_selected"][i]}
                for i, name in enumerate(self.kind_names)
            },
            "tokens_per_second": tokens_per_second,
            "world_size": self.world.size,
            "init_model": self.cfg.init_model,
            "reference_model": self.cfg.reference_model,
        }

    def _save_model(self, out_dir: str | Path, step: int, tokens_per_second: float) -> dict:
        """Rank 0 writes a plain transformers model directory of the full weights (all ranks call this)."""
        stats = self._stats(step, tokens_per_second)
        weights = full_state_dict(self.model)
        if self.world.is_main:
            metrics = "".join(json.dumps(m) + "\n" for m in self.metrics)
            save_model(
                self.model,
                self.tokenizer,
                out_dir,
                extra_files={
                    "train_stats.json": json.dumps(stats, indent=2) + "\n",
                    "metrics.jsonl": metrics,
                    "README.md": training_card(self.cfg, stats, [s.index["source"] for s in self.corpus.shards]),
                },
                state_dict=weights,
            )
        barrier(self.world)
        return stats

    # -- the loop ------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model, self.tokenizer = load_model(cfg.init_model, self.device)
        model.set_attn_implementation("sdpa")
        model.train()
        self.reshard_after_forward = (
            cfg.reshard_after_forward
            if cfg.reshard_after_forward is not None
            else not fits_one_device(model, self.device)
        )
        if cfg.compile:
            compile_blocks(model)
        if needs_sharding(self.world.size, cfg.precision):
            model = shard_model(
                model, self.device, precision=cfg.precision, reshard_after_forward=self.reshard_after_forward
            )
        self.model = model
        self.parameters = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        )
        self.metrics: list[dict] = []

    def run(self) -> dict:
        if self.cfg.threads:
            torch.set_num_threads(max(1, self.cfg.threads // self.world.local_size))
        with process_group(self.device, self.world):
            self._setup()
            return self._loop()

    def _loop(self) -> dict:
        cfg = self.cfg
        start_step = self._load_state()
        log.info(
            "training %s from %s: %d steps x %d tokens on %d rank(s) (%d sequences each, micro-batch %d), "
            "ratio %.2f (%s, %s), %d sequences of %d",
            cfg.out_dir,
            cfg.init_model,
            self.total_steps,
            self.tokens_per_step,
            self.world.size,
            self.share,
            self.micro,
            cfg.ratio,
            cfg.unit,
            cfg.score_fn,
            len(self.corpus),
            self.seq_len,
        )
        name = cfg.name or Path(cfg.out_dir).parent.name
        # Rank 0 alone tracks and shows progress.
        tracker = open_tracker(
            cfg.tracking if self.world.is_main else None, name, cfg.role, dataclasses.asdict(cfg), start_step
        )
        bar = progress(self.total_steps, f"train {name}", "step", initial=start_step, disable=not self.world.is_main)
        window_start, window_tokens = time.perf_counter(), 0
        run_start, run_tokens = window_start, 0
        steps = range(start_step, self.total_steps)
        for step, batch in zip(steps, BatchLoader(self)(steps)):
            stats, mask = self.train_step(step, batch)
            # A tensor: read (a host sync) only at log steps.
            grad_norm = clip_grad_norm(self.parameters, cfg.grad_clip or math.inf)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            step_kinds = self._count(mask, batch)
            bar.update()
            window_tokens += self.tokens_per_step
            run_tokens += self.tokens_per_step
            done = step + 1
            if done % cfg.log_every == 0 or done == self.total_steps:
                totals = stats.total(self.world)
                selection_seconds = self.selection_timer.read()
                now = time.perf_counter()
                tokens_per_second = window_tokens / (now - window_start)
                entry = {
                    "step": done,
                    "tokens_seen": done * self.tokens_per_step,
                    "lr": self.scheduler.get_last_lr()[0],
                    **totals.as_log(),
                    "tokens_per_second": tokens_per_second,
                    "grad_norm": grad_norm.item(),
                    "kind_selected_fraction": self._kind_shares(step_kinds),
                }
                if cfg.ranks_batch:  # the gather and the ranking, as a share of the window's time
                    entry["selection_share"] = selection_seconds / (now - window_start)
                if cfg.weighting == "soft":
                    entry["effective_sample_size"] = totals.effective_sample_size
                self.metrics.append(entry)
                extra = f" selection {entry['selection_share']:.2%} of the step" if cfg.ranks_batch else ""
                extra += f" effective tokens {entry['effective_sample_size']:.0f}" if cfg.weighting == "soft" else ""
                tracker.log(done, entry)
                log.info(
                    "step %d/%d tokens %d loss %.4f (selected) %.4f (unselected) all %.4f selected %.3f %.0f tok/s%s",
                    done,
                    self.total_steps,
                    entry["tokens_seen"],
                    entry["loss"],
                    entry["loss_unselected"],
                    entry["loss_all"],
                    entry["selected_fraction"],
                    tokens_per_second,
                    extra,
                )
                window_start, window_tokens = now, 0
            run_tps = run_tokens / (time.perf_counter() - run_start)
            if done in self.checkpoint_steps:
                # Kept beside the resumable state until the run ends: a retried job whose outputs
                # were cleaned up still has every checkpoint taken before the interruption.
                self._save_model(self._staged_checkpoint(self.checkpoint_steps[done]), done, run_tps)
            if done % cfg.save_every == 0 and done < self.total_steps:
                self._save_state(done)
        bar.close()
        tracker.close()
        run_tps = run_tokens / max(1e-9, time.perf_counter() - run_start)
        if self.world.is_main:
            for tokens in self.checkpoint_steps.values():
                with atomic_path(Path(cfg.checkpoint_dir) / f"tokens-{tokens}") as tmp:
                    shutil.copytree(self._staged_checkpoint(tokens), tmp, copy_function=os.link)
        stats = self._save_model(cfg.out_dir, self.total_steps, run_tps)
        if self.world.is_main:
            shutil.rmtree(cfg.state_dir, ignore_errors=True)
        barrier(self.world)
        return stats


def train(spec: dict) -> dict:
    return Trainer(TrainConfig.from_dict(spec)).run()
