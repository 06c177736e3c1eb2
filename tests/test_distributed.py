"""The trainer on several processes (torchrun, gloo, CPU) against the same trainer in one process.

Real processes, real collectives: tests/distributed_worker.py runs on 2 and on 4 ranks. Each rank's
share of the selection (forced ties included) must be the single-process selection's rows, the
gradients those of the single-process loss (summed over the ranks, not averaged), and every run
(CLM, SLM at each unit, soft weights, random scores, gradient accumulation, loss on some span kinds
only) must end at the single-process weights within fp32 tolerance (the gradient sums are taken in
another order) and select exactly the same tokens. A state saved by 4 ranks, killed, resumes on 2, and then on 1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import train_spec
from distributed_worker import tied_losses
from slm.distributed import clip_grad_norm, full_state_dict, process_group, shard_model
from slm.launch import BatchSplitError, launch_command, split_batch
from slm.resources import StageResources
from slm.train import BatchLoader, TrainConfig, Trainer, train

TESTS = Path(__file__).resolve().parent
WORKFLOW = TESTS.parent / "workflow"
STEPS = 6
RUNS = {
    "clm": {},
    "batch": {"ratio": 0.6},
    "batch-accumulated": {"ratio": 0.6, "micro_batch_size": 1},
    "sequence": {"ratio": 0.6, "unit": "sequence"},
    "document": {"ratio": 0.6, "unit": "document"},
    "soft": {"weighting": "soft", "temperature": 0.5},
    "random": {"ratio": 0.6, "score_fn": "random"},
    # Loss on some span kinds only: a count of loss-bearing tokens that changes every step, global.
    "clm-kinds": {"loss_kinds": ["math"]},
    "batch-kinds": {"ratio": 0.6, "loss_kinds": ["math", "noise"], "micro_batch_size": 1},
}
# Relative to the largest weight: the ranks' gradient sums are taken in another order than one
# process's, and AdamW's normalised steps carry those rounding differences into the weights.
WEIGHT_TOLERANCE = 1e-4


def _spec(root: Path, name: str, base_model, shards, score_dirs, **overrides) -> dict:
    """Run ``name`` under ``root``: 6 steps of 8 sequences, with the reference scores when it selects."""
    spec = train_spec(root / name, base_model, shards, batch_size=8, max_tokens=8 * 32 * STEPS, save_every=100)
    spec.update(overrides)
    if spec.get("ratio", 1.0) < 1.0 or spec.get("weighting") == "soft":
        spec.update(scores=[str(s) for s in score_dirs], reference_model=str(base_model))
    return spec


def torchrun(n_procs: int, *args: str, log: Path) -> subprocess.Popen:
    """Start ``n_procs`` gloo ranks of ``args`` (a script or ``-m module ...``) under torchrun."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKFLOW), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n_procs}", *args]
    with open(log, "w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def finished(proc: subprocess.Popen, log: Path, timeout: int = 600) -> None:
    assert proc.wait(timeout=timeout) == 0, log.read_text()[-5000:]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "run" / "final" / "model.safetensors"))


def train_stats(run_dir: Path) -> dict:
    return json.loads((run_dir / "run" / "final" / "train_stats.json").read_text())


def logged(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "run" / "final" / "metrics.jsonl").read_text().splitlines()]


def assert_close_weights(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name in theirs:
        scale = theirs[name].abs().max()
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=WEIGHT_TOLERANCE * scale, msg=name)


@pytest.fixture(scope="module")
def single(tmp_path_factory, base_model, shards, score_dirs) -> Path:
    """Every run in this process, as a plain `python -m slm train` would run it."""
    root = tmp_path_factory.mktemp("single")
    for name, overrides in RUNS.items():
        train(_spec(root, name, base_model, shards, score_dirs, **overrides))
    return root


@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"{n}-ranks")
def ranks(request, tmp_path_factory, base_model, shards, score_dirs) -> tuple[int, Path]:
    """Every run on 2 and on 4 gloo ranks (one torchrun each), with each rank's step-0 selection."""
    n_procs = request.param
    root = tmp_path_factory.mktemp(f"ranks-{n_procs}")
    runs = {name: _spec(root, name, base_model, shards, score_dirs, **o) for name, o in RUNS.items()}
    job = root / "job.json"
    job.write_text(json.dumps({"out": str(root), "runs": runs}))
    log = root / "torchrun.log"
    finished(torchrun(n_procs, str(TESTS / "distributed_worker.py"), str(job), log=log), log)
    return n_procs, root


def single_step_zero(base_model, shards, score_dirs, name: str, tmp_path: Path) -> dict:
    """Step 0 of a run in one process: the selection over the whole batch, the model's mask, the gradients."""
    trainer = Trainer(TrainConfig.from_dict(_spec(tmp_path, name, base_model, shards, score_dirs, **RUNS[name])))
    trainer.model = AutoModelForCausalLM.from_pretrained(base_model)
    batch = BatchLoader(trainer).load(0)
    out = {}
    if trainer.cfg.ranks_batch:
        random = trainer._random_scores(0) if trainer.cfg.score_fn == "random" else None
        out["tied_weights"] = trainer._batch_weights(tied_losses(8, trainer.seq_len), batch, random)
    _, out["mask"] = trainer.train_step(0, batch)
    out["grads"] = {name: p.grad for name, p in trainer.model.named_parameters()}
    return out


@pytest.mark.parametrize("name", RUNS)
def test_each_rank_selects_its_rows_of_the_single_process_selection(
    name, ranks, base_model, shards, score_dirs, tmp_path
):
    n_procs, root = ranks
    expected = single_step_zero(base_model, shards, score_dirs, name, tmp_path)
    shares = [torch.load(root / f"{name}-rank{r}.pt") for r in range(n_procs)]
    assert torch.equal(torch.cat([s["mask"] for s in shares]), expected["mask"])
    if "tied_weights" in expected:
        tied = torch.cat([s["tied_weights"] for s in shares])
        assert torch.equal(tied, expected["tied_weights"])  # soft weights too: the same softmax, bit for bit
        if name != "soft":
            assert 0 < int(tied.sum()) < tied.numel()
    # Summed, not averaged, over the ranks: the gradient of the single-process loss.
    for param, grad in expected["grads"].items():
        torch.testing.assert_close(shares[0]["grads"][param], grad, rtol=1e-4, atol=1e-7, msg=param)


@pytest.mark.parametrize("name", RUNS)
def test_training_on_several_ranks_ends_at_the_single_process_weights(name, ranks, single):
    n_procs, root = ranks
    assert_close_weights(weights(root / name), weights(single / name))
    ours, theirs = train_stats(root / name), train_stats(single / name)
    for key in ("tokens_seen", "tokens_loss_bearing", "tokens_selected", "kinds"):
        assert ours[key] == theirs[key], key
    assert ours["world_size"] == n_procs and theirs["world_size"] == 1
    metrics, reference = logged(root / name), logged(single / name)
    assert [m["loss"] for m in metrics] == pytest.approx([m["loss"] for m in reference], rel=1e-4)
    if name == "soft":
        assert all(0 < m["effective_sample_size"] <= 8 * 31 for m in metrics)
    selective = RUNS[name].get("ratio", 1.0) < 1.0 or RUNS[name].get("weighting") == "soft"
    if selective and RUNS[name].get("unit") != "sequence":
        assert all(0 <= m["selection_share"] < 1 for m in metrics)


def launch(n_procs: int, command: list[str], log: Path) -> subprocess.Popen:
    """The training command on ``n_procs`` gloo ranks under torchrun, or as one plain process."""
    if n_procs > 1:
        return torchrun(n_procs, *command, log=log)
    env = {**os.environ, "PYTHONPATH": str(WORKFLOW), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, *command], env=env, stdout=handle, stderr=subprocess.STDOUT)


def kill_after_a_new_save(proc: subprocess.Popen, state_dir: Path, log: Path) -> None:
    """Wait until the run has saved a state newer than the ones it started with, then SIGKILL its
    launcher only: a rank must die with its launcher."""
    before = {p.name for p in state_dir.glob("step-*")}
    deadline = time.monotonic() + 600
    while not {p.name for p in state_dir.glob("step-*")} - before and time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before a new save:\n{log.read_text()[-3000:]}"
        time.sleep(0.01)
    ranks = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive, f"ranks outlived their launcher: {alive}"


def resumed_step(log: Path) -> int:
    text = log.read_text()
    assert "resumed from" in text, text[-3000:]
    return int(text.split("resumed from ")[1].split("at step ")[1].split("/")[0])


def test_a_state_saved_by_4_ranks_resumes_on_1_and_then_on_2(tmp_path, base_model, shards, score_dirs):
    """The real command: 4 ranks under torchrun, killed (SIGKILL) after a save; one plain process resumes
    it (DCP without collectives) and is killed after a later save; 2 ranks finish it from that one-process
    state. The weights end where an uninterrupted run's do, and the counts and logs are those of one run."""
    overrides = dict(ratio=0.6, max_tokens=8 * 32 * 40, save_every=2, log_every=5)
    train(_spec(tmp_path, "straight", base_model, shards, score_dirs, **overrides))
    spec = _spec(tmp_path, "resumed", base_model, shards, score_dirs, **overrides)
    paths = {k: spec.pop(k) for k in ("init_model", "data", "scores", "reference_model", "out_dir", "state_dir")}
    command = ["-m", "slm", "train", "--options", json.dumps(spec), "--paths", json.dumps(paths)]
    state_dir = Path(paths["state_dir"])
    kill_after_a_new_save(launch(4, command, tmp_path / "four.log"), state_dir, tmp_path / "four.log")
    kill_after_a_new_save(launch(1, command, tmp_path / "one.log"), state_dir, tmp_path / "one.log")
    finished(launch(2, command, tmp_path / "two.log"), tmp_path / "two.log")
    one, two = resumed_step(tmp_path / "one.log"), resumed_step(tmp_path / "two.log")
    assert 0 < one < two < 40, (one, two)
    assert f"at step {one}/40 on 1 rank(s)" in (tmp_path / "one.log").read_text()
    assert f"at step {two}/40 on 2 rank(s)" in (tmp_path / "two.log").read_text()
    assert_close_weights(weights(tmp_path / "resumed"), weights(tmp_path / "straight"))
    ours, theirs = train_stats(tmp_path / "resumed"), train_stats(tmp_path / "straight")
    for key in ("tokens_seen", "tokens_loss_bearing", "tokens_selected", "kinds"):
        assert ours[key] == theirs[key], key
    assert [m["step"] for m in logged(tmp_path / "resumed")] == list(range(5, 41, 5))
    assert not state_dir.exists()


def test_fsdp_on_one_process_takes_the_unsharded_steps(tmp_path, base_model, shards, score_dirs):
    """Why one fp32 process skips FSDP (slm.distributed.needs_sharding): on one rank FSDP takes the
    same steps bit for bit, only with extra copies."""
    results = []
    for sharded in (False, True):
        trainer = Trainer(TrainConfig.from_dict(_spec(tmp_path, "one", base_model, shards, score_dirs, ratio=0.6)))
        with process_group(trainer.device, trainer.world):
            model = AutoModelForCausalLM.from_pretrained(base_model)
            if sharded:
                model = shard_model(model, trainer.device, precision="fp32", reshard_after_forward=False)
            trainer.model = model
            parameters = list(model.parameters())
            optimizer = torch.optim.AdamW(parameters, lr=trainer.cfg.lr, weight_decay=trainer.cfg.weight_decay)
            loader = BatchLoader(trainer)
            for step in range(STEPS):
                trainer.train_step(step, loader.load(step))
                clip_grad_norm(parameters, trainer.cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            state = full_state_dict(model)
            results.append({name: state[name] for name, _ in model.named_parameters()})
    unsharded, sharded = results
    assert unsharded.keys() == sharded.keys()
    for name in unsharded:
        assert torch.equal(unsharded[name], sharded[name]), name


@pytest.mark.parametrize(
    "res, expected",
    [
        (StageResources(gpus=0), "python"),
        (StageResources(gpus=1), "python"),
        (StageResources(gpus=8), "torchrun --standalone --nproc-per-node 8"),
    ],
)
def test_launch_command_on_one_node(res, expected):
    assert launch_command(res) == expected


def test_launch_command_on_several_nodes_starts_one_torchrun_per_node():
    command = launch_command(StageResources(gpus=8, nodes=4, cpus_per_gpu=12))
    srun, torchrun_part = command.split(" torchrun ")
    expected = "srun --nodes 4 --ntasks 4 --ntasks-per-node 1 --cpus-per-task 96 --kill-on-bad-exit 1"
    assert srun.split() == expected.split()
    assert "--nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-id $SLURM_JOB_ID" in torchrun_part
    assert torchrun_part.endswith(":29500") and "scontrol show hostnames" in torchrun_part


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="needs SLURM's scontrol (Debian: slurm-client)")
def test_launch_command_first_host_expands_in_bash(tmp_path):
    """The rendezvous host is the first of the job's nodes, as bash expands the command: the job's node
    list from squeue (a stand-in here: it needs a live job), expanded by the real scontrol."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text('#!/bin/sh\n[ "$*" = "-h -j 42 -o %N" ] && echo "gpu[07-09]"\n')
    squeue.chmod(0o755)
    command = launch_command(StageResources(gpus=2, nodes=3))
    endpoint = command.split("--rdzv-endpoint ")[1]
    out = subprocess.run(
        ["bash", "-c", f"echo {endpoint}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "42"},
    )
    assert out.stdout.strip() == "gpu07:29500", out.stderr


@pytest.mark.parametrize(
    "batch, micro, world, expected",
    [(16, None, 1, (16, 16)), (16, 4, 2, (8, 4)), (16, 16, 4, (4, 4)), (512, 16, 32, (16, 16))],
)
def test_split_batch(batch, micro, world, expected):
    assert split_batch(batch, micro, world) == expected


@pytest.mark.parametrize("batch, micro, world, key", [(16, None, 3, "batch_size"), (16, 3, 2, "micro_batch_size")])
def test_split_batch_refuses_uneven_shares(batch, micro, world, key):
    with pytest.raises(BatchSplitError) as err:
        split_batch(batch, micro, world)
    assert err.value.key == key


def test_benchmark_under_torchrun_reports_per_rank(tmp_path, tokenizer_dir, corpus_files):
    """`python -m slm benchmark` on 2 gloo ranks: rank 0 alone prints and writes the result, with the
    training rows at world size 2 and scoring on one device."""
    spec = {
        "seq_len": 32,
        "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
        "batch_size": 4,
        "steps": 4,
        "ratios": [1.0, 0.5],
        "repeats": 1,
        "device": "cpu",
    }
    args = ["--tokenizer", str(tokenizer_dir), "--files", *map(str, corpus_files), "--spec", json.dumps(spec)]
    log = tmp_path / "benchmark.log"
    finished(torchrun(2, "-m", "slm", "benchmark", *args, "--out", str(tmp_path / "out.json"), log=log), log)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["world_size"] == 2 and log.read_text().count("| arm | world size |") == 1
    rows = {(row["arm"], row["ratio"]): row for row in result["summary"]}
    assert rows[("scoring", None)]["world_size"] == 1
    assert rows[("training", 1.0)]["world_size"] == rows[("training", 0.5)]["world_size"] == 2
    assert 0 < rows[("training", 0.5)]["selection_share"]["median"] < 1
