"""Stale Snakemake locks: a run killed outright must not stop the next one.

Snakemake locks its working directory while it runs (``.snakemake/locks``) and removes the lock when
it ends. A Snakemake process killed with SIGKILL (the OOM killer, a lost login session) leaves the
lock behind, and the next run stops with "Directory cannot be locked" until ``snakemake --unlock``.

To tell a stale lock from a live one, every Snakemake process of this workflow holds a shared flock
on ``.snakemake/slm-run.flock`` for its whole life; the kernel drops it when the process dies, however
it dies. A process that can take the flock exclusively is the only one alive in this directory, so
any Snakemake lock there is stale, and it removes it before Snakemake locks the directory again.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

FLOCK = "slm-run.flock"
# This process's handle of the flock file: kept open, and so the flock held, until the process ends.
_held = None


def clear_stale_locks(workdir: str | Path = ".") -> list[Path]:
    """Remove the Snakemake locks of ``workdir`` that no live Snakemake process of this workflow
    holds; return the removed lock files. Then hold the shared flock for the rest of this process."""
    global _held
    if _held is not None:
        return []
    state = Path(workdir) / ".snakemake"
    state.mkdir(exist_ok=True)
    handle = open(state / FLOCK, "a")
    removed = []
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # another Snakemake process of this workflow is alive here: its locks are live
    else:
        removed = sorted((state / "locks").glob("*.lock"))
        for lock in removed:
            lock.unlink()
    fcntl.flock(handle, fcntl.LOCK_SH)
    _held = handle
    return removed
