"""The uncertainty the tables report, and where a curve first reaches a level.

Two 95% intervals, for two different questions:

* **over seeds** (:func:`seed_interval`): how much a result moves when the run is trained again with
  another seed (data order, random selection): Student's t interval of the mean of the replicates,
  ``mean ± t(0.975, n-1) · sd / sqrt(n)``; none with a single seed.
* **over evaluation problems** (:func:`bootstrap_interval`): how much an accuracy moves with the sample of
  problems it is measured on: percentile bootstrap, resampling each task's documents with replacement
  (:data:`N_RESAMPLES` times, a fixed seed, so a table is the same on every rerun). For a difference of two
  models evaluated on the same documents, the per-document differences are resampled (paired).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: What an accuracy in percent, and a difference of two, can be (``bounds`` of :func:`seed_interval`).
PERCENT = (0.0, 100.0)
PERCENT_DIFFERENCE = (-100.0, 100.0)


def seed_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Student's t interval of the mean of ``values`` (one per seed), cut to ``bounds`` (low, high) when
    given; NaNs with fewer than 2 values."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    if len(x) < 2 or not np.isfinite(x).all():
        return math.nan, math.nan
    half = t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    low, high = x.mean() - half, x.mean() + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return float(low), float(high)


def bootstrap_interval(
    vectors: Sequence[np.ndarray],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean over vectors of mean(vector)``.

    Each vector holds one task's per-document values (e.g. 0/1 correctness, or a per-document difference
    of two models); each is resampled with replacement on its own, so the interval of an average over
    tasks accounts for every task's sample. NaNs when a vector is empty or not finite.
    """
    vectors = [np.asarray(v, dtype=float) for v in vectors]
    if not vectors or any(len(v) == 0 or not np.isfinite(v).all() for v in vectors):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    for v in vectors:
        total += v[rng.integers(0, len(v), size=(n_resamples, len(v)))].mean(axis=1)
    stat = total / len(vectors)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(stat, [tail, 100 - tail])
    return float(low), float(high)


def first_crossing(tokens: Sequence[float], values: Sequence[float], target: float) -> float:
    """The token count at which a curve first reaches ``target``, linearly interpolated between the two
    points around the crossing; the first point's count when it already reaches it; NaN when it never does.

    ``tokens`` increase along the curve; ``values`` are measured there (higher is better).
    """
    x, y = np.asarray(tokens, dtype=float), np.asarray(values, dtype=float)
    if len(x) == 0 or np.any(np.diff(x) <= 0):
        raise ValueError(f"first_crossing: token counts must increase, got {list(x)}")
    reached = np.flatnonzero(y >= target)
    if len(reached) == 0:
        return math.nan
    i = int(reached[0])
    if i == 0:
        return float(x[0])
    return float(x[i - 1] + (target - y[i - 1]) / (y[i] - y[i - 1]) * (x[i] - x[i - 1]))
