"""The corrected resampled t-test (Nadeau & Bengio 2003) and its interval, against hand computations and scipy."""

import math

import pytest
from scipy import stats as scipy_stats

from cmtl_jax import stats


def test_corrected_ttest_matches_a_hand_computed_example():
  # d = 0.01..0.05: mean 0.03, sample variance 0.00025; k = 5 folds of 800 train / 200 test:
  # t = 0.03 / sqrt((1/5 + 200/800) * 0.00025) = 0.03 / sqrt(1.125e-4) = 2 sqrt(2).
  t, p = stats.corrected_resampled_ttest([0.01, 0.02, 0.03, 0.04, 0.05], n_train=800, n_test=200)
  assert t == pytest.approx(2 * math.sqrt(2), rel=1e-12)
  # Two-sided p from Student's t CDF in closed form for 4 degrees of freedom.
  u = t * t / (4 + t * t)
  cdf = 0.5 + 0.75 * math.sqrt(u) * (1 - u / 3)
  assert p == pytest.approx(2 * (1 - cdf), rel=1e-9)
  assert p == pytest.approx(0.047421, abs=1e-6)
  # Without the n_test / n_train term it is the plain paired t-test: the correction shrinks t by sqrt(0.2 / 0.45).
  plain = scipy_stats.ttest_1samp([0.01, 0.02, 0.03, 0.04, 0.05], 0.0).statistic
  assert t == pytest.approx(plain * math.sqrt(0.2 / 0.45), rel=1e-12)
  # Sign follows the difference; no spread: p 1 for no difference, 0 for a constant one.
  assert stats.corrected_resampled_ttest([-0.01, -0.02, -0.03, -0.04, -0.05], 800, 200)[0] == pytest.approx(-t)
  assert stats.corrected_resampled_ttest([0.0] * 5, 800, 200) == (0.0, 1.0)
  assert stats.corrected_resampled_ttest([0.02] * 5, 800, 200) == (math.inf, 0.0)
  with pytest.raises(ValueError):
    stats.corrected_resampled_ttest([0.1], 800, 200)


def test_corrected_interval_matches_the_t_test():
  d, n_train, n_test = [0.01, 0.02, 0.03, 0.04, 0.05], 800, 200
  low, high = stats.corrected_interval(d, n_train, n_test)
  t, _ = stats.corrected_resampled_ttest(d, n_train, n_test)
  assert (low + high) / 2 == pytest.approx(0.03)
  # At p = 0.0474 < 0.05 the 95 % interval excludes zero just barely; its half-width is t_crit * se = 0.03 * t_crit / t.
  assert (high - low) / 2 == pytest.approx(0.03 * scipy_stats.t.ppf(0.975, 4) / t)
  assert low > 0
