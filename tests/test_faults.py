"""Fault injection: real processes killed with SIGKILL, and the runs that follow.

- The smoke workflow from its training runs on (a copy of the uninterrupted run's data, base,
  reference and scores), the training job that starts first (CLM's or SLM's: Snakemake's order is not
  fixed) killed after its first state save (the default profile's retry resumes it), then the whole
  Snakemake process group killed while the other trains: the same command finishes the run, and
  every output equals an uninterrupted run's.
- A training job killed with retries off: the run fails (it succeeds only through the retry); the
  base model's pretraining budget then changes and the rerun trains from step 0, saying why, to the
  weights of a fresh run on the new base.
- A scoring process killed mid-shard leaves no score directory, and the rerun's equals an
  uninterrupted one.
- A Snakemake lock counts as stale only when no run holds the directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer

from conftest import SEQ_LEN, TINY_LLAMA, write_corpus
from processes import has_saved_state, kill, kill_group, slm, stop_after_first_save, wait_for
from slm.data.packed import pack_documents
from slm.data.sources import iter_files
from slm.model import init_model
from smoke import REPO, TRAINING_RUNS, differences, output_digest, snakemake, start_snakemake

pytestmark = pytest.mark.e2e
TIMEOUT = 3600


def kill_training_after_its_first_save(process: subprocess.Popen, workdir: Path, runs: str | tuple[str, ...]) -> str:
    """SIGKILL the training process of whichever of ``runs`` starts first (a job of Snakemake
    ``process``) right after its first save; returns that run."""
    return stop_after_first_save(process, workdir, runs, root=process.pid)


@pytest.fixture(scope="module")
def faulted_run(tmp_path_factory, smoke_local):
    # the data, base, reference and scores of the uninterrupted run: what follows them is run here
    workdir = smoke_local.before_training(tmp_path_factory.mktemp("faults") / "run")
    first_log, second_log = workdir / "first.log", workdir / "second.log"
    process = start_snakemake(workdir, "--cores", "2", log=first_log)
    killed = kill_training_after_its_first_save(process, workdir, TRAINING_RUNS)
    held = next(run for run in TRAINING_RUNS if run != killed)
    # the other held (SIGSTOP) the moment its first state is saved, so that its few remaining steps
    # cannot finish first; then Snakemake and every job it runs are killed
    stop_after_first_save(process, workdir, held, signal.SIGSTOP, root=process.pid)
    assert process.poll() is None, first_log.read_text()[-4000:]
    kill_group(process)
    locks = sorted(p.name for p in (workdir / ".snakemake" / "locks").glob("*.lock"))
    second = start_snakemake(workdir, "--cores", "2", log=second_log)  # the same command again
    assert second.wait(timeout=TIMEOUT) == 0, second_log.read_text()[-6000:]
    return workdir, killed, held, first_log.read_text(), second_log.read_text(), locks


def test_killed_training_job_is_retried_and_resumes(faulted_run):
    workdir, killed, _, first, _, _ = faulted_run
    assert re.search(rf"Error in rule train:(.|\n)*?wildcards: run={killed}", first)
    assert "Trying to restart job" in first
    log = (workdir / "logs" / "train" / f"{killed}.log").read_text()
    assert re.search(rf"resumed from results/train_state/{killed}/step-\d+ at step \d+/16", log), log


def test_killed_snakemake_run_is_finished_by_the_same_command(faulted_run):
    workdir, _, held, _, second, locks = faulted_run
    assert locks, "the killed run left no lock: nothing was tested"
    for lock in locks:
        assert f"Removed .snakemake/locks/{lock}: the lock of a Snakemake run that was killed." in second
    log = (workdir / "logs" / "train" / f"{held}.log").read_text()
    assert re.search(rf"resumed from results/train_state/{held}/step-\d+ at step \d+/16", log), log
    assert not list((workdir / "results").rglob(".*.tmp"))


def test_outputs_equal_an_uninterrupted_run(faulted_run, smoke_local):
    assert differences(output_digest(faulted_run[0]), smoke_local[1]) == []


def _train_command(workdir: Path, target: str) -> list[str]:
    """The exact ``python -m slm train`` command of ``target``, as Snakemake would run it."""
    # (the target first: --forcerun takes every argument after it)
    proc = snakemake(workdir, target, "-n", "-p", "--cores", "2", "--forcerun", "train")
    lines = (proc.stdout + proc.stderr).splitlines()
    line = next(line for line in lines if "python -m slm train" in line and f'"out_dir": "{target}"' in line)
    command = shlex.split(line[line.index("python -m slm train") :].split(" > ")[0])
    return [sys.executable, *command[1:]]  # the rules' python: this interpreter (common.smk)


def test_stale_state_of_another_base_model_is_not_resumed(tmp_path, smoke_local):
    workdir = smoke_local.before_training(tmp_path / "run")
    target = "results/models/clm/final"
    # A training job that fails on its first attempt fails the run when there is no retry.
    log = workdir / "first.log"
    process = start_snakemake(workdir, "--cores", "2", "--retries", "0", target, log=log)
    kill_training_after_its_first_save(process, workdir, "clm")
    assert process.wait(timeout=TIMEOUT) != 0
    assert "Error in rule train" in log.read_text()
    saved = has_saved_state(workdir / "results" / "train_state" / "clm")
    assert saved and not (workdir / target).exists()

    # The base model's pretraining budget changes: the base is rebuilt at the same path.
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["base_model"]["pretrain"]["max_tokens"] *= 2
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "--cores", "2", target)
    assert "rule pretrain_base" in proc.stdout + proc.stderr
    train_log = (workdir / "logs" / "train" / "clm.log").read_text()
    assert "ignoring saved state results/train_state/clm/step-" in train_log, train_log
    assert "its init_model changed since it was saved; starting from step 0" in train_log
    assert "resumed from" not in train_log

    # The same training, uninterrupted, on the new base: the same weights.
    command = _train_command(workdir, target)
    paths = json.loads(command[command.index("--paths") + 1])
    paths.update(out_dir="fresh/final", state_dir="fresh/state", checkpoint_dir="fresh/checkpoints")
    command[command.index("--paths") + 1] = json.dumps(paths)
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}  # the rules' package: this checkout's
    subprocess.run(command, cwd=workdir, check=True, capture_output=True, env=env)
    ours, fresh = (load_file(workdir / d / "model.safetensors") for d in (target, "fresh/final"))
    assert all((ours[name] == fresh[name]).all() for name in fresh)


def test_scoring_killed_mid_shard_leaves_nothing_that_looks_complete(tmp_path, tokenizer_dir):
    """A shard that takes the scorer seconds (a wider model, one sequence per forward pass), killed
    just after scoring starts."""
    corpus = write_corpus(tmp_path / "big.jsonl", 600, seed=5)
    shard = tmp_path / "packed"
    pack_documents(iter_files([corpus]), AutoTokenizer.from_pretrained(tokenizer_dir), shard, seq_len=SEQ_LEN)
    model = tmp_path / "model"
    init_model(tokenizer_dir, model, **{**TINY_LLAMA, "hidden_size": 128, "intermediate_size": 512}, seed=3)
    out = tmp_path / "scores" / "shard-000"

    def score(out: Path, log: str) -> subprocess.Popen:
        args = ["--model", str(model), "--shard", str(shard), "--out", str(out), "--batch-size", "1"]
        return slm("score", *args, "--device", "cpu", log=tmp_path / log)

    process = score(out, "killed.log")
    wait_for(
        lambda: "scoring the" in (tmp_path / "killed.log").read_text() or process.poll() is not None,
        TIMEOUT,
        "the scorer to start",
    )
    time.sleep(0.5)
    assert process.poll() is None, (tmp_path / "killed.log").read_text()
    kill(process)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())
    # A writer killed while writing leaves its temporary (named as atomic_path names it): never
    # taken for the shard, and removed by the next write of it.
    partial = out.parent / f".{out.name}.k1ll3d_x.tmp" / out.name
    partial.mkdir(parents=True)
    np.save(partial / "scores.npy", np.zeros(7, dtype=np.float16))
    assert score(out, "rerun.log").wait() == 0, (tmp_path / "rerun.log").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    assert score(tmp_path / "straight", "straight.log").wait() == 0
    scores = np.load(out / "scores.npy")
    assert np.array_equal(scores, np.load(tmp_path / "straight" / "scores.npy"), equal_nan=True)
    assert json.loads((out / "meta.json").read_text())["n_tokens"] == scores.size
    # scoring the whole shard takes longer than the half second after which it was killed: mid-shard
    wrote = re.search(
        r"wrote \S+: (\d+) tokens, mean loss \S+, (\d+) tokens/s", (tmp_path / "straight.log").read_text()
    )
    assert int(wrote.group(1)) / int(wrote.group(2)) > 1.0


def test_a_lock_is_stale_only_when_no_run_holds_the_directory(tmp_path):
    """slm.runlock: each process that calls it holds a flock for life; a lock is removed only when
    no such process is alive (the holder here is killed with SIGKILL, as a Snakemake run would be)."""
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    script = (
        "import sys, time; from slm.runlock import clear_stale_locks; print(clear_stale_locks(sys.argv[1]), flush=True)"
    )

    def run(*extra: str) -> subprocess.Popen:
        code = script + ("; time.sleep(600)" if "hold" in extra else "")
        return subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)

    (locks / "0.input.lock").write_text("stale\n")
    holder = run("hold")
    assert "0.input.lock" in holder.stdout.readline()  # nobody else alive: the stale lock goes
    (locks / "0.output.lock").write_text("the holder's own lock\n")
    other = run()
    assert other.stdout.read().strip() == "[]" and (locks / "0.output.lock").exists()
    kill(holder)
    after = run()
    assert "0.output.lock" in after.stdout.read() and not any(locks.iterdir())
