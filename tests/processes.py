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


def find_slm(root: int, command: str, *needles: str) -> psutil.Process | None:
    """The ``python -m slm <command>`` process among the descendants of process ``root`` whose
    arguments contain every string of ``needles`` (e.g. its state directory)."""
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            argv = child.cmdline()
        except psutil.Error:
            continue
        if argv[1:4] == ["-m", "slm", command] and all(any(n in arg for arg in argv) for n in needles):
            return child
    return None


def kill(process: psutil.Process | subprocess.Popen) -> None:
    """SIGKILL one process (no chance to clean up), and reap it if it is ours."""
    os.kill(process.pid, signal.SIGKILL)
    if isinstance(process, subprocess.Popen):
        process.wait()


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session=True`` and everything it started."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def slm(*args: str, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``python -m slm <args>`` with its output in ``log``."""
    with open(log, "w") as handle:
        return subprocess.Popen([*SLM, *args], stdout=handle, stderr=subprocess.STDOUT, cwd=cwd)
