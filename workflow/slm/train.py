"""The one trainer: causal LM training with optional token selection (SLM). CLM is ratio 1.0.

Used for every training stage: the base model's brief pretraining, the reference model's fine-tuning
on high-quality data, and the SLM / CLM continual-pretraining runs. The full training state is saved
atomically every ``save_every`` steps, and a rerun resumes from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slm.data.packed import PackedCorpus
from slm.io import atomic_path
from slm.model import PRECISIONS, load_model, per_token_losses, resolve_device, save_model
from slm.model_card import training_card
from slm.progress import progress
from slm.score import open_scores
from slm.selection import (
    SCORE_FUNCTIONS,
    UNITS,
    WEIGHTINGS,
    document_ids,
    n_selected,
    select_tokens,
    soft_weights,
    token_scores,
)
from slm.tracking import open_tracker

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
# Fields that do not change the trained weights, so a resumed run may differ in them.
_NOT_FINGERPRINTED = {"out_dir", "state_dir", "checkpoint_dir", "save_every", "log_every", "threads"}
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

    def validate(self) -> None:
        def bad(key: str, why: str):
            raise ValueError(f"training option {key!r}: {why}")

        if not 0.0 < self.ratio <= 1.0:
            bad("ratio", f"must be in (0, 1], got {self.ratio}")
        if self.unit not in UNITS:
            bad("unit", f"must be one of {UNITS}, got {self.unit!r}")
        if self.weighting not in WEIGHTINGS:
            bad("weighting", f"must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.weighting == "soft" and self.temperature <= 0:
            bad("temperature", f"must be positive, got {self.temperature}")
        if self.score_fn not in SCORE_FUNCTIONS:
            bad("score_fn", f"must be one of {SCORE_FUNCTIONS}, got {self.score_fn!r}")
        if self.batch_size < 1:
            bad("batch_size", f"must be positive, got {self.batch_size}")
        micro = self.micro_batch_size or self.batch_size
        if micro < 1 or self.batch_size % micro:
            bad("micro_batch_size", f"must divide batch_size {self.batch_size}, got {micro}")
        if (self.max_tokens is None) == (self.epochs is None):
            bad("max_tokens", "give exactly one of max_tokens and epochs")
        if self.lr <= 0:
            bad("lr", f"must be positive, got {self.lr}")
        if self.needs_scores and not self.scores:
            bad("scores", f"ratio {self.ratio} with score_fn {self.score_fn!r} needs reference score shards")
        if self.scores and len(self.scores) != len(self.data):
            bad("scores", f"{len(self.scores)} score shards for {len(self.data)} token shards")
        if self.precision not in PRECISIONS:
            bad("precision", f"must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.checkpoints and not self.checkpoint_dir:
            bad("checkpoint_dir", "needed when checkpoints are requested")

    @property
    def selective(self) -> bool:
        """Whether tokens are weighted at all (CLM: ratio 1.0 with hard weights is not)."""
        return self.ratio < 1.0 or self.weighting == "soft"

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
    """Deterministic shuffled order of sequences, a fresh permutation every epoch, indexed by step."""

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


@dataclass
class StepStats:
    loss_selected_sum: float = 0.0
    loss_unselected_sum: float = 0.0
    n_valid: int = 0
    n_selected: int = 0

    def as_log(self) -> dict:
        unselected = self.n_valid - self.n_selected
        return {
            "loss": self.loss_selected_sum / max(1, self.n_selected),
            "loss_all": (self.loss_selected_sum + self.loss_unselected_sum) / max(1, self.n_valid),
            "loss_unselected": self.loss_unselected_sum / unselected if unselected else float("nan"),
            "selected_fraction": self.n_selected / max(1, self.n_valid),
        }


class Trainer:
    def __init__(self, cfg: TrainConfig):
        cfg.validate()
        self.cfg = cfg
        self.corpus = PackedCorpus(cfg.data)
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
        self.device = resolve_device(cfg.device)
        kind_names = self.corpus.kind_names
        self.kind_names = kind_names
        self.counters = {
            "tokens_seen": 0,
            "tokens_loss_bearing": 0,
            "tokens_selected": 0,
            "kind_seen": [0] * len(kind_names),
            "kind_selected": [0] * len(kind_names),
        }

    # -- one optimizer step ------------------------------------------------------------------
    def _forward_losses(self, ids: torch.Tensor) -> torch.Tensor:
        # No autocast: with precision bf16, FSDP2's MixedPrecisionPolicy (slm.model.fsdp_mixed_precision)
        # gives the forward bf16 parameters, the weights the scorer computes with.
        return per_token_losses(self.model, ids)

    def _weights(self, scores: torch.Tensor, valid: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Per-token loss weights: 0/1 for hard selection, softmax weights for soft reweighting."""
        cfg = self.cfg
        if cfg.weighting == "soft":
            return soft_weights(scores, valid, cfg.temperature)
        docs = document_ids(ids, self.eos_id) if cfg.unit == "document" else None
        return select_tokens(scores, valid, cfg.ratio, cfg.unit, docs).float()

    def train_step(self, step: int, ids: torch.Tensor, ref: torch.Tensor | None) -> tuple[StepStats, torch.Tensor]:
        """Forward/backward over the optimizer batch; returns stats and the selection mask."""
        cfg = self.cfg
        micro = cfg.micro_batch_size or cfg.batch_size
        valid = torch.ones_like(ids, dtype=torch.bool)
        valid[:, 0] = False
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step) if cfg.score_fn == "random" else None
        # The loss normaliser is known before any forward pass: the number of selected tokens
        # (hard selection) or of loss-bearing tokens (soft weights average 1).
        if not cfg.selective or cfg.weighting == "soft":
            normaliser = int(valid.sum())
        elif cfg.unit == "sequence":
            normaliser = sum(n_selected(int(v.sum()), cfg.ratio) for v in valid)
        else:
            normaliser = n_selected(int(valid.sum()), cfg.ratio)

        weights = None
        chunks = range(0, ids.shape[0], micro)
        if cfg.selective and (cfg.unit != "sequence" or cfg.weighting == "soft") and len(chunks) > 1:
            # Exact batch-level ranking under gradient accumulation: every micro-batch's current
            # losses are needed before any backward pass, so take them in a no-grad pass first.
            with torch.no_grad():
                current = torch.cat([self._forward_losses(ids[i : i + micro]) for i in chunks])
            weights = self._weights(token_scores(cfg.score_fn, current, ref, generator), valid, ids)

        stats = StepStats()
        masks = []
        for i in chunks:
            mb = slice(i, i + micro)
            losses = self._forward_losses(ids[mb])
            if weights is not None:
                mb_weights = weights[mb]
            elif not cfg.selective:
                mb_weights = valid[mb].float()
            else:
                mb_ref = ref[mb] if ref is not None else None
                mb_scores = token_scores(cfg.score_fn, losses.detach(), mb_ref, generator)
                mb_weights = self._weights(mb_scores, valid[mb], ids[mb])
            # Weighted sum over the optimizer batch / the normaliser: for hard selection the mean
            # over the selected tokens, and unselected tokens (weight 0) get no gradient.
            loss = (losses.nan_to_num(0.0) * mb_weights).sum() / normaliser
            loss.backward()
            mb_mask = mb_weights > 0
            detached = losses.detach()
            stats.loss_selected_sum += float((detached.nan_to_num(0.0) * mb_weights).sum())
            stats.loss_unselected_sum += float(detached[valid[mb] & ~mb_mask].sum())
            stats.n_valid += int(valid[mb].sum())
            stats.n_selected += int(mb_mask.sum())
            masks.append(mb_mask)
        return stats, torch.cat(masks)

    def _count(self, stats: StepStats, mask: torch.Tensor, kinds: torch.Tensor) -> dict:
        """Add a step's token counts, overall and per span kind, to the run's counters; return the
        step's share of each span kind's loss-bearing tokens that was selected."""
        c = self.counters
        c["tokens_seen"] += mask.numel()
        c["tokens_loss_bearing"] += stats.n_valid
        c["tokens_selected"] += stats.n_selected
        valid = torch.ones_like(mask)
        valid[:, 0] = False
        step = {}
        for key, chosen in (("kind_seen", valid), ("kind_selected", mask)):
            step[key] = torch.bincount(kinds[chosen], minlength=len(self.kind_names)).tolist()
            c[key] = [a + b for a, b in zip(c[key], step[key])]
        return {
            name: selected / seen
            for name, seen, selected in zip(self.kind_names, step["kind_seen"], step["kind_selected"])
            if seen
        }

    # -- state ---------------------------------------------------------------------------------
    def _state_path(self) -> Path:
        return Path(self.cfg.state_dir) / STATE_FILE

    def _staged_checkpoint(self, tokens: int) -> Path:
        return Path(self.cfg.state_dir) / "checkpoints" / f"tokens-{tokens}"

    def _save_state(self, step: int) -> None:
        state = {
            "fingerprint": self.cfg.fingerprint(),
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "counters": self.counters,
            "torch_rng": torch.get_rng_state(),
            "metrics": self.metrics,
        }
        with atomic_path(self._state_path()) as tmp:
            torch.save(state, tmp)

    def _load_state(self) -> int:
        path = self._state_path()
        if not path.is_file():
            return 0
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("fingerprint") != self.cfg.fingerprint():
            log.warning("ignoring saved state %s: it belongs to a different training configuration", path)
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.counters = state["counters"]
        self.metrics = state["metrics"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at step %d/%d", path, state["step"], self.total_steps)
        return state["step"]

    def _stats(self, step: int, tokens_per_second: float) -> dict:
        c = self.counters
        return {
            "run": Path(self.cfg.out_dir).parent.name,
            "ratio": self.cfg.ratio,
            "unit": self.cfg.unit,
            "score_fn": self.cfg.score_fn,
            "weighting": self.cfg.weighting,
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
            "init_model": self.cfg.init_model,
            "reference_model": self.cfg.reference_model,
        }

    def _save_model(self, out_dir: str | Path, step: int, tokens_per_second: float) -> None:
        stats = self._stats(step, tokens_per_second)
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
        )

    # -- the loop ------------------------------------------------------------------------------
    def run(self, interrupt_at_step: int | None = None) -> dict:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model, self.tokenizer = load_model(cfg.init_model, self.device)
        self.model.train()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        )
        self.metrics: list[dict] = []
        start_step = self._load_state()
        token_families = [[s.tokens for s in self.corpus.shards], [s.kinds for s in self.corpus.shards]]
        if self.scores:
            token_families.append(self.scores)
        log.info(
            "training %s from %s: %d steps x %d tokens, ratio %.2f (%s, %s), %d sequences of %d",
            cfg.out_dir,
            cfg.init_model,
            self.total_steps,
            self.tokens_per_step,
            cfg.ratio,
            cfg.unit,
            cfg.score_fn,
            len(self.corpus),
            self.seq_len,
        )
        name = cfg.name or Path(cfg.out_dir).parent.name
        tracker = open_tracker(cfg.tracking, name, cfg.role, dataclasses.asdict(cfg), start_step)
        bar = progress(self.total_steps, f"train {name}", "step", initial=start_step)
        window_start, window_tokens = time.perf_counter(), 0
        run_start, run_tokens = window_start, 0
        for step in range(start_step, self.total_steps):
            if interrupt_at_step is not None and step == interrupt_at_step:
                raise KeyboardInterrupt(f"interrupted at step {step} (test hook)")
            arrays = self.corpus.gather(self.sampler.batch(step), token_families)
            ids = torch.from_numpy(arrays[0].astype(np.int64)).to(self.device)
            kinds = torch.from_numpy(arrays[1].astype(np.int64))
            ref = torch.from_numpy(arrays[2].astype(np.float32)).to(self.device) if self.scores else None
            stats, mask = self.train_step(step, ids, ref)
            # A tensor: read (a host sync) only at log steps.
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or math.inf)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)

            kind_shares = self._count(stats, mask.cpu(), kinds)
            bar.update()
            c = self.counters
            window_tokens += ids.numel()
            run_tokens += ids.numel()
            done = step + 1
            if done % cfg.log_every == 0 or done == self.total_steps:
                now = time.perf_counter()
                tokens_per_second = window_tokens / (now - window_start)
                entry = {
                    "step": done,
                    "tokens_seen": c["tokens_seen"],
                    "lr": self.scheduler.get_last_lr()[0],
                    **stats.as_log(),
                    "tokens_per_second": tokens_per_second,
                    "grad_norm": float(grad_norm),
                    "kind_selected_fraction": kind_shares,
                }
                self.metrics.append(entry)
                tracker.log(done, entry)
                log.info(
                    "step %d/%d tokens %d loss %.4f (selected) %.4f (unselected) all %.4f selected %.3f %.0f tok/s",
                    done,
                    self.total_steps,
                    c["tokens_seen"],
                    entry["loss"],
                    entry["loss_unselected"],
                    entry["loss_all"],
                    entry["selected_fraction"],
                    tokens_per_second,
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
        for tokens in self.checkpoint_steps.values():
            with atomic_path(Path(cfg.checkpoint_dir) / f"tokens-{tokens}") as tmp:
                shutil.copytree(self._staged_checkpoint(tokens), tmp, copy_function=os.link)
        self._save_model(cfg.out_dir, self.total_steps, run_tps)
        shutil.rmtree(cfg.state_dir, ignore_errors=True)
        return self._stats(self.total_steps, run_tps)


def train(spec: dict, interrupt_at_step: int | None = None) -> dict:
    return Trainer(TrainConfig.from_dict(spec)).run(interrupt_at_step=interrupt_at_step)
