"""Helpers of the fault-injection tests: wait for a condition, find and kill real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

SLM = [sys.executable, "-m", "slm"]


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.005):
    """Poll ``condition`` until it returns something truthy (returned), else fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def find_slm(command: str, *needles: str, root: int | None = None, cwd: Path | None = None) -> psutil.Process | None:
    """A ``python -m slm <command>`` process whose arguments contain every string of ``needles``:
    among the descendants of process ``root``, or (a SLURM job's, started by slurmd) among all
    processes running in ``cwd``."""
    try:
        candidates = psutil.Process(root).children(recursive=True) if root else psutil.process_iter()
    except psutil.NoSuchProcess:
        return None
    for process in candidates:
        try:
            argv = process.cmdline()
            if argv[1:4] != ["-m", "slm", command] or (cwd is not None and Path(process.cwd()) != cwd):
                continue
        except (psutil.Error, IndexError):
            continue
        if all(any(n in arg for arg in argv) for n in needles):
            return process
    return None


def kill(process: psutil.Process | subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal one process (SIGKILL: no chance to clean up), and reap it if it is ours."""
    os.kill(process.pid, sig)
    if isinstance(process, subprocess.Popen) and sig == signal.SIGKILL:
        process.wait()


def has_saved_state(state_dir: Path) -> bool:
    """Whether the trainer has saved a complete state there (``step-NNNNNNNNN``, renamed once whole)."""
    return any(Path(state_dir).glob("step-*[0-9]"))


def stop_after_first_save(
    process: subprocess.Popen,
    workdir: Path,
    runs: str | tuple[str, ...],
    sig: int = signal.SIGKILL,
    timeout: float = 3600,
    **where,
) -> str:
    """Find the training process of whichever of ``runs`` starts first (``where``: root or cwd, as
    for find_slm), wait for its first saved state, then signal it at once (a save every few steps of
    a small model leaves little time); each wait fails after ``timeout`` s. Returns that run's name:
    the order in which Snakemake starts independent jobs is not fixed, so a test must not assume it."""
    runs = (runs,) if isinstance(runs, str) else runs

    def started():
        for run in runs:
            if trainer := find_slm("train", f"results/train_state/{run}", **where):
                return run, trainer
        return process.poll() is not None

    found = wait_for(started, timeout, f"the training process of {' or '.join(runs)}", 0.05)
    assert process.poll() is None and found is not True, f"the run ended before {' or '.join(runs)} trained"
    run, trainer = found
    state_dir = workdir / "results" / "train_state" / run
    wait_for(lambda: has_saved_state(state_dir) or not trainer.is_running(), timeout, f"{run}'s first save", 0.002)
    assert trainer.is_running(), f"{run}'s training ended before it could be stopped"
    kill(trainer, sig)
    return run


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session=True`` and everything it started."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def slm(*args: str, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``python -m slm <args>`` with its output in ``log``."""
    with open(log, "w") as handle:
        return subprocess.Popen([*SLM, *args], stdout=handle, stderr=subprocess.STDOUT, cwd=cwd)
