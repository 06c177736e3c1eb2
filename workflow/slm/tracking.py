"""Experiment tracking of every training stage: TensorBoard event files, and Weights & Biases on request.

The trainer hands a :class:`Tracker` the entry it appends to ``metrics.jsonl`` at every log step; each
finite number in it becomes a scalar named by its key path (``loss``, ``grad_norm``,
``kind_selected_fraction/math``), at the entry's ``step``. NaN (the loss on unselected tokens of a run
that selects every token) is left out rather than drawn as an empty chart.

The workflow's ``tracking`` config block becomes one spec, which the training jobs find in ``$SLM_TRACKING``
(``python -m slm train --tracking`` overrides it)::

    {"tensorboard": "logs/tensorboard", "wandb": {"project": "rho1", "mode": "offline", "dir": "logs/wandb"}}

TensorBoard writes ``<tensorboard>/<stage name>/`` (``tensorboard --logdir logs/tensorboard``); W&B writes
its run files under ``<dir>/wandb/`` (offline: ``wandb sync`` them later).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol

LOG_DIR = "logs"
WANDB_KEYS = ("project", "entity", "mode", "group", "tags")


class Tracker(Protocol):
    def log(self, step: int, metrics: dict) -> None: ...

    def close(self) -> None: ...


def scalars(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a metrics entry by key path (nested dicts joined by '/'), without the step."""
    out = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalars(value, f"{name}/"))
        elif name != "step" and isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                out[name] = float(value)
    return out


class TensorBoardTracker:
    """Scalars into TensorBoard event files; the run's options as a text summary."""

    def __init__(self, log_dir: str | Path, config: dict, start_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        # Earlier attempts in the same directory: a run resumed from the state saved at start_step
        # drops what they logged after that step, a fresh run all of it (TensorBoard discards those
        # events when it reads the directory).
        self.writer = SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else 0)
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=2, sort_keys=True)}\n```", start_step)

    def log(self, step: int, metrics: dict) -> None:
        for tag, value in scalars(metrics).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # every log step: a crashed run keeps what it logged

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """Scalars into a Weights & Biases run (``mode: offline`` writes local run files only)."""

    def __init__(self, spec: dict, name: str, role: str | None, config: dict):
        import wandb

        Path(spec["dir"]).mkdir(parents=True, exist_ok=True)
        options = {k: spec[k] for k in WANDB_KEYS if spec.get(k) is not None}
        # Without a mode in the config, wandb's own setting applies (WANDB_MODE, else online).
        self.run = wandb.init(name=name, job_type=role, dir=spec["dir"], config=config, **options)

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(scalars(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """Every configured tracker behind one; none configured: logging does nothing."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def log(self, step: int, metrics: dict) -> None:
        for tracker in self.trackers:
            tracker.log(step, metrics)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_tracker(spec: dict | None, name: str, role: str | None, config: dict, start_step: int = 0) -> Trackers:
    """The trackers of a tracking spec (see the module docstring) for the stage ``name``."""
    spec = spec or {}
    trackers: list[Tracker] = []
    if spec.get("tensorboard"):
        trackers.append(TensorBoardTracker(Path(spec["tensorboard"]) / name, config, start_step))
    if spec.get("wandb"):
        trackers.append(WandbTracker(spec["wandb"], name, role, config))
    return Trackers(trackers)


def tracking_spec(config: dict, log_dir: str = LOG_DIR) -> dict:
    """The tracking spec of a workflow config's ``tracking`` block: TensorBoard unless turned off,
    W&B when the block has a ``wandb`` section."""
    tracking = config.get("tracking") or {}
    wandb = tracking.get("wandb")
    return {
        "tensorboard": f"{log_dir}/tensorboard" if tracking.get("tensorboard", True) else None,
        "wandb": {**wandb, "dir": f"{log_dir}/wandb"} if wandb else None,
    }
