"""The real workflow on the smoke config (tests/e2e/config.yaml): how the end-to-end, fault-injection
and SLURM tests run Snakemake, what they compare between two runs, and the checks the workflow runs
on a config before any job."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import yaml
from snakemake.utils import validate

from slm.config import check_config

REPO = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = REPO / "tests" / "e2e" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def workflow_checks(config: dict, base_dir: Path) -> None:
    """What workflow/rules/common.smk runs on the config before any job: the schema, then slm.config."""
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    check_config(config, base_dir)


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def start_snakemake(workdir: Path, *args: str, log: Path) -> subprocess.Popen:
    """Snakemake in the background, in its own process group (so that a test can kill all of it)."""
    with open(log, "a") as handle:
        return subprocess.Popen(
            [*SNAKEMAKE, "--directory", str(workdir), *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def smoke_workdir(workdir: Path, **overlay) -> Path:
    """A working directory with the smoke config as config/config.yaml (top-level keys of
    ``overlay`` replaced)."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    if overlay:
        config = {**yaml.safe_load(SMOKE_CONFIG.read_text()), **overlay}
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    else:
        shutil.copy(SMOKE_CONFIG, workdir / "config" / "config.yaml")
    return workdir


class SmokeRun(NamedTuple):
    workdir: Path
    digest: dict[str, str]  # output_digest of the finished run
    untrained: Path  # the run as it stood before its training runs (without_training_runs)

    def before_training(self, workdir: Path) -> Path:
        """A fresh copy of ``untrained`` in ``workdir``, for a run that starts at the training runs."""
        return shutil.copytree(self.untrained, workdir, symlinks=True)


# The smoke config's continual-pretraining runs, and what its run makes before them (under results/).
TRAINING_RUNS = ("clm", "slm")
BEFORE_TRAINING_RUNS = (
    "data",
    "models/base-init",
    "models/base",
    "models/reference",
    "scores",
    "eval/tasks",
    "eval/base",
    "eval/reference",
)


def without_training_runs(finished: Path, copy: Path) -> Path:
    """``copy``: the finished smoke run in ``finished`` as it stood before its training runs (no logs;
    modification times and Snakemake's metadata kept): Snakemake run there trains both runs again, and
    makes what follows them, on the same data, base, reference and scores."""

    def outputs(directory: str, _) -> list[str]:
        return ["results", "logs"] if directory == str(finished) else []

    shutil.copytree(finished, copy, symlinks=True, ignore=outputs)
    for path in BEFORE_TRAINING_RUNS:
        shutil.copytree(finished / "results" / path, copy / "results" / path, symlinks=True)
    return copy


# What two runs of one config must agree on, bit for bit: weights, token and score arrays, tables,
# and the metrics and counts of every JSON result. Left out: timings (tokens/s, seconds, the share of
# a step spent selecting) and paths that name the working directory or a temporary (lm-eval task
# files, the dynamics HTML view).
_COMPARED_SUFFIXES = (".safetensors", ".npy", ".npz", ".csv", ".md", ".tex", ".json", ".jsonl")
_VOLATILE_KEYS = ("per_second", "seconds", "selection_share", "wall", "time", "date", "path", "include")


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not any(word in k for word in _VOLATILE_KEYS)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def output_digest(workdir: Path) -> dict[str, str]:
    """sha256 of every compared output under ``results/`` (JSON with its volatile keys dropped)."""
    digest = {}
    results = workdir / "results"
    for path in sorted(results.rglob("*")):
        relative = path.relative_to(workdir)
        if not path.is_file() or path.suffix not in _COMPARED_SUFFIXES:
            continue
        if any(part.startswith(".") or part == "train_state" for part in relative.parts):
            continue  # temporaries and resumable state
        if path.suffix in (".json", ".jsonl"):
            lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
            data = json.dumps([_stable(json.loads(line)) for line in lines if line.strip()], sort_keys=True)
            digest[str(relative)] = hashlib.sha256(data.encode()).hexdigest()
        else:
            digest[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def differences(ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """Outputs missing from one side or different."""
    return sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
