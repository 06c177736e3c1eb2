"""Intervals over seeds and over evaluation documents, and the crossing point of a curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from slm.intervals import PERCENT, PERCENT_DIFFERENCE, bootstrap_interval, first_crossing, seed_interval


def test_seed_interval_is_students_t():
    values = [31.3, 27.0, 35.8]
    low, high = seed_interval(values)
    expected = stats.t.interval(0.95, df=2, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    assert all(math.isnan(v) for v in seed_interval([31.3]))  # one seed: no interval
    assert all(math.isnan(v) for v in seed_interval([1.0, float("nan")]))


def test_seed_interval_is_cut_to_what_the_mean_can_take():
    values = [99.8, 92.8, 99.2]  # three seeds near the ceiling: the t interval runs past 100
    low, high = seed_interval(values)
    assert high > 100
    assert seed_interval(values, bounds=PERCENT) == (low, 100.0)
    assert seed_interval([-13.2, -7.2, -95.8], bounds=PERCENT_DIFFERENCE)[0] == -100.0
    assert seed_interval([31.3, 27.0, 35.8], bounds=PERCENT) == seed_interval([31.3, 27.0, 35.8])  # inside


def test_bootstrap_interval_of_an_accuracy_matches_the_binomial_spread():
    rng = np.random.default_rng(1)
    correct = (rng.random(400) < 0.3).astype(float)
    low, high = bootstrap_interval([correct])
    p, n = correct.mean(), len(correct)
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    assert low < p < high
    assert low == pytest.approx(p - half, abs=0.01) and high == pytest.approx(p + half, abs=0.01)
    assert bootstrap_interval([correct]) == (low, high)  # a fixed seed: the same interval on every rerun


def test_bootstrap_interval_of_a_mean_over_tasks_and_of_paired_differences():
    rng = np.random.default_rng(2)
    a, b = (rng.random(300) < 0.5).astype(float), (rng.random(100) < 0.8).astype(float)
    low, high = bootstrap_interval([a, b])
    mean = (a.mean() + b.mean()) / 2
    half = 1.96 * math.sqrt(a.var() / len(a) + b.var() / len(b)) / 2
    assert low == pytest.approx(mean - half, abs=0.015) and high == pytest.approx(mean + half, abs=0.015)
    # two models that agree on most documents: the paired interval is much narrower than either's
    other = a.copy()
    other[:15] = 1 - other[:15]
    paired = bootstrap_interval([other - a])
    alone = bootstrap_interval([a])
    assert paired[1] - paired[0] < 0.5 * (alone[1] - alone[0])
    assert all(math.isnan(v) for v in bootstrap_interval([np.array([])]))


@pytest.mark.parametrize(
    "values, target, expected",
    [
        ([10.0, 20.0, 30.0], 25.0, 150.0),  # halfway between the points at 100 and 200
        ([10.0, 20.0, 30.0], 20.0, 100.0),  # reached exactly at a point
        ([25.0, 20.0, 30.0], 22.0, 0.0),  # already there at the start
        ([10.0, 24.0, 20.0, 30.0], 22.0, 100 * 12 / 14),  # the first crossing, not a later one
        ([10.0, 20.0, 30.0], 31.0, math.nan),  # never
    ],
)
def test_first_crossing(values, target, expected):
    tokens = [0, 100, 200, 300][: len(values)]
    got = first_crossing(tokens, values, target)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_first_crossing_needs_increasing_tokens():
    with pytest.raises(ValueError, match="must increase"):
        first_crossing([0, 100, 100], [1.0, 2.0, 3.0], 2.5)
