"""Progress with an ETA for the long stages (training, scoring, evaluation).

On a terminal a tqdm bar, with log records printed above it. Otherwise (Snakemake sends every job's
output to its file under ``logs/``) a redrawn bar would be one long line of carriage returns, so the
same progress becomes a log line at most every ``interval`` seconds, plus one at the start and one at
the end::

    2025-01-01 12:00:30 INFO slm.progress: train slm:  41% 120/293 step [00:42 elapsed, ETA 01:01, 2.86step/s]

Both are tqdm objects (``update``, ``close``, context manager), so a loop uses one API either way.
lm-eval draws its own tqdm bars; :func:`lm_eval_log_lines` turns those into the same log lines.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)

INTERVAL_S = 30.0
LINE_FORMAT = (
    "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} {unit} [{elapsed} elapsed, ETA {remaining}, {rate_fmt}{postfix}]"
)
# lm-eval modules that bind tqdm at import (``from tqdm import tqdm``): the request loops of the
# transformers model and of the model base class.
LM_EVAL_MODULES = ("lm_eval.models.huggingface", "lm_eval.api.model")
LIBRARY_BARS = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


class _Discard:
    """A file that drops what tqdm would draw: a log-line bar reports through logging only."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class LogLineProgress(tqdm):
    """A tqdm bar that reports as a log line at most every ``interval`` seconds, and when it closes."""

    def __init__(self, *args, interval: float = INTERVAL_S, **kwargs):
        kwargs.setdefault("bar_format", LINE_FORMAT)
        # miniters=1: check the clock at every update instead of tqdm's adaptive skipping, which
        # could leave a slowing loop silent for far longer than the interval.
        kwargs.update(file=_Discard(), mininterval=interval, maxinterval=interval, miniters=1)
        self._logged_n = None
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self.n != self._logged_n:  # closing right after a line at the same count adds nothing
            log.info("%s", self.format_meter(**self.format_dict))
            self._logged_n = self.n
        return True


class TerminalProgress(tqdm):
    """A tqdm bar on a terminal; log records are printed above it instead of through it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()

    def close(self) -> None:
        if getattr(self, "_redirect", None) is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
        super().close()


def quiet_library_bars() -> None:
    """Not on a terminal: no progress bars from transformers, the hub and datasets (loading and
    saving models, mapping datasets), whose redraws would clutter the job logs; each stage reports
    its own progress. Takes effect for the libraries imported afterwards."""
    if not on_terminal():
        for name in LIBRARY_BARS:
            os.environ.setdefault(name, "1")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(
    total: int, desc: str, unit: str = "it", *, initial: int = 0, unit_scale: bool = False, disable: bool = False
) -> tqdm:
    """Progress over ``total`` units (``initial`` already done, e.g. on resumption); ``disable``: none
    shown (the ranks of a distributed run other than 0)."""
    cls = TerminalProgress if on_terminal() else LogLineProgress
    return cls(
        total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale, dynamic_ncols=True, disable=disable
    )


def lm_eval_log_lines() -> None:
    """While not on a terminal, lm-eval's progress bars report as log lines too (for this process).

    lm-eval binds ``tqdm`` at import in the modules of its request loops; those bindings become
    :class:`LogLineProgress`, which takes the same arguments.
    """
    if on_terminal():
        return
    for name in LM_EVAL_MODULES:
        importlib.import_module(name).tqdm = LogLineProgress
