"""Paired comparison of two models scored on the same cross-validation folds."""

import math

import numpy as np
from scipy import stats


def corrected_resampled_ttest(differences, n_train: float, n_test: float):
  """Nadeau & Bengio's (2003) corrected resampled t-test on per-fold score differences.

  With k folds, t = mean(d) / sqrt((1/k + n_test/n_train) * var(d)), var with ddof=1, and k - 1 degrees of
  freedom. The n_test/n_train term corrects the plain paired t-test's 1/k for the overlap of the folds' training
  sets, which makes the plain test far too eager to call a difference significant.

  Args:
    differences: per-fold differences of a score (model A - model B), the same folds for both.
    n_train, n_test: training and validation examples per fold (the fold means when they differ by one).

  Returns:
    (t, p): the statistic and its two-sided p-value. With no variance, t = 0, p = 1 for a zero mean difference
    and t = +-inf, p = 0 otherwise.
  """
  d = np.asarray(differences, np.float64)
  if d.ndim != 1 or d.size < 2:
    raise ValueError(f'need per-fold differences of at least 2 folds, got shape {d.shape}.')
  if n_train <= 0 or n_test <= 0:
    raise ValueError(f'n_train and n_test must be positive, got {n_train} and {n_test}.')
  mean, var = d.mean(), d.var(ddof=1)
  if var == 0:
    return (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
  t = mean / math.sqrt((1 / d.size + n_test / n_train) * var)
  return float(t), float(2 * stats.t.sf(abs(t), df=d.size - 1))


def corrected_interval(differences, n_train: float, n_test: float, level: float = 0.95):
  """The two-sided `level` confidence interval of the mean difference that goes with
  `corrected_resampled_ttest`: mean +- t_{k-1} * sqrt((1/k + n_test/n_train) * var), var with ddof=1 (Nadeau &
  Bengio 2003). NaN bounds when a difference is NaN.

  Returns:
    (low, high) floats.
  """
  d = np.asarray(differences, np.float64)
  if d.ndim != 1 or d.size < 2:
    raise ValueError(f'need per-fold differences of at least 2 folds, got shape {d.shape}.')
  half = stats.t.ppf(0.5 + level / 2, df=d.size - 1) * math.sqrt((1 / d.size + n_test / n_train) * d.var(ddof=1))
  return float(d.mean() - half), float(d.mean() + half)
