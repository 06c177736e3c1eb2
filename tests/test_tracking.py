"""Experiment tracking: what TensorBoard and W&B receive is exactly what the trainer writes to metrics.jsonl."""

import json
import math
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from processes import kill, wait_for
from slm.tracking import scalars, tracking_spec
from slm.train import BatchLoader, TrainConfig, Trainer, train
from test_train import _finish, _train_command
from test_train import _spec as train_spec


def _spec(tmp_path, base_model, shards, score_dirs, **overrides):
    """test_train's tiny run, as SLM at ratio 0.5 logging every step, named like the workflow's run."""
    return train_spec(
        tmp_path,
        base_model,
        shards,
        scores=[str(s) for s in score_dirs],
        ratio=0.5,
        out_dir=str(tmp_path / "slm" / "final"),
        name="slm",
        role="run",
        **overrides,
    )


def _metrics(out_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def _tensorboard(log_dir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert all(len(dict(values)) == len(values) for values in logged.values()), "a step logged twice"
    return {tag: dict(values) for tag, values in logged.items()}


def _expected(metrics: list[dict]) -> dict[str, dict[int, float]]:
    """metrics.jsonl as tag -> step -> value, stored as TensorBoard stores it (float32)."""
    expected: dict[str, dict[int, float]] = {}
    for entry in metrics:
        for tag, value in scalars(entry).items():
            expected.setdefault(tag, {})[entry["step"]] = float(np.float32(value))
    return expected


def test_scalars_are_the_finite_numbers_by_key_path():
    entry = {"step": 3, "loss": 1.5, "loss_unselected": math.nan, "kind_selected_fraction": {"math": 0.75}, "x": "a"}
    assert scalars(entry) == {"loss": 1.5, "kind_selected_fraction/math": 0.75}


def test_tensorboard_holds_every_logged_value(tmp_path, base_model, shards, score_dirs):
    spec = _spec(tmp_path, base_model, shards, score_dirs, tracking={"tensorboard": str(tmp_path / "tb")})
    train(spec)
    metrics = _metrics(spec["out_dir"])
    logged = _tensorboard(tmp_path / "tb" / "slm")
    assert logged == _expected(metrics)
    tags = set(logged)
    assert {"loss", "loss_unselected", "loss_all", "selected_fraction", "lr", "tokens_per_second", "grad_norm"} <= tags
    assert {"kind_selected_fraction/math", "kind_selected_fraction/noise"} <= tags
    assert sorted(logged["loss"]) == list(range(1, 7))
    # SLM at ratio 0.5 keeps about half of the tokens, and not the same share of every span kind
    shares = [m["kind_selected_fraction"] for m in metrics]
    assert all(0.0 <= v <= 1.0 for s in shares for v in s.values())
    assert any(len({round(v, 3) for v in s.values()}) > 1 for s in shares)


def test_grad_norm_is_the_norm_of_the_first_steps_gradient(tmp_path, base_model, shards, score_dirs):
    """The logged gradient norm, against the norm of the gradient of the same first step taken apart."""
    spec = _spec(tmp_path, base_model, shards, score_dirs)
    train(spec)
    trainer = Trainer(TrainConfig.from_dict(_spec(tmp_path / "b", base_model, shards, score_dirs)))
    trainer.model = AutoModelForCausalLM.from_pretrained(base_model)
    trainer.train_step(0, BatchLoader(trainer).load(0))
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
    assert _metrics(spec["out_dir"])[0]["grad_norm"] == pytest.approx(norm.item(), rel=1e-5)


def test_a_resumed_or_repeated_run_logs_each_step_once(tmp_path, base_model, shards, score_dirs):
    """Killed (SIGKILL) after the state of step 10 was saved and step 12 logged: the rerun resumes at
    step 10, and TensorBoard drops the first attempt's steps 11 and 12, so every step has the value of
    metrics.jsonl. A run started afresh in the same directory (here with another learning rate)
    replaces it all."""
    spec = _spec(tmp_path, base_model, shards, score_dirs, max_tokens=4 * 32 * 40, save_every=10)
    tracking = {"tensorboard": str(tmp_path / "tb")}
    first_log = tmp_path / "killed.log"
    process = _train_command(spec, first_log, "--tracking", json.dumps(tracking))
    wait_for(lambda: "step 12/40" in first_log.read_text() or process.poll() is not None, 120, "step 12", 0.002)
    kill(process, signal.SIGSTOP)
    states = sorted(p.name for p in Path(spec["state_dir"]).glob("step-*[0-9]"))
    kill(process)
    assert states == ["step-000000010"], f"not between the saves of steps 10 and 20: {states}"
    killed = _tensorboard(tmp_path / "tb" / "slm")
    assert max(killed["loss"]) >= 12  # the killed attempt's steps past its saved state were written

    log = _finish(spec, tmp_path / "resumed.log", "--tracking", json.dumps(tracking))
    assert "at step 10/40" in log and "resumed from" in log
    first = _tensorboard(tmp_path / "tb" / "slm")
    assert first == _expected(_metrics(spec["out_dir"]))
    train({**spec, "lr": spec["lr"] / 2, "tracking": tracking})
    again = _tensorboard(tmp_path / "tb" / "slm")
    assert again == _expected(_metrics(spec["out_dir"])) and again["lr"] != first["lr"]


def _wandb_history(run_file: Path) -> dict[int, dict]:
    """The logged rows of a W&B run file: a LevelDB-style log (32 KiB blocks, records of a 7-byte
    header: crc32, length, type) of wandb protobuf Records, after a 7-byte file header."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, chunks, records = run_file.read_bytes(), 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            records.append(chunks)
            chunks = b""
    history = {}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history[items.pop("_step")] = {k: v for k, v in items.items() if not k.startswith("_")}
    return history


def test_wandb_offline_run_holds_every_logged_value(tmp_path, base_model, shards, score_dirs, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracking = tracking_spec({"tracking": {"tensorboard": False, "wandb": {"project": "slm-test"}}}, str(tmp_path))
    spec = _spec(tmp_path, base_model, shards, score_dirs, tracking=tracking)
    train(spec)
    assert not (tmp_path / "tensorboard").exists()
    run_files = list((tmp_path / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    history = _wandb_history(run_files[0])
    assert history == {m["step"]: scalars(m) for m in _metrics(spec["out_dir"])}


def test_tracking_spec_from_the_config():
    assert tracking_spec({}) == {"tensorboard": "logs/tensorboard", "wandb": None}
    spec = tracking_spec({"tracking": {"wandb": {"project": "p", "mode": "offline"}}})
    assert spec["wandb"] == {"project": "p", "mode": "offline", "dir": "logs/wandb"}
    assert tracking_spec({"tracking": {"tensorboard": False}})["tensorboard"] is None
