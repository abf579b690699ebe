"""A search's scores in scikit-learn's shape: `cv_results_` keys, ranks, and the epoch each fit is scored at."""

import numpy as np

from cmtl_jax import metrics as metrics_lib


def rank(scores: np.ndarray) -> np.ndarray:
  """sklearn's ranking: 1 = best, ties share the lowest rank ('min'), NaN (diverged) ranks last."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  scores = np.asarray(scores, np.float64)
  if np.all(np.isnan(scores)):
    return np.ones(len(scores), np.int32)
  scores = np.nan_to_num(scores, nan=np.nanmin(scores) - 1)
  return stats.rankdata(-scores, method='min').astype(np.int32)


def cv_results(cells: list, fold_scores: dict, fit_times: np.ndarray, score_times: np.ndarray, cv: int) -> dict:
  """`cv_results_` with sklearn's keys from per-cell, per-fold scores (`fold_scores[metric]`: `[cells, cv]`)."""
  keys = sorted({k for cell in cells for k in cell})
  results = {'mean_fit_time': fit_times.mean(1), 'std_fit_time': fit_times.std(1),
             'mean_score_time': score_times.mean(1), 'std_score_time': score_times.std(1)}
  for key in keys:
    results[f'param_{key}'] = np.ma.MaskedArray([cell.get(key) for cell in cells], [key not in c for c in cells],
                                                dtype=object)
  results['params'] = [dict(cell) for cell in cells]
  for metric in metrics_lib.METRICS:
    scores = fold_scores[metric]
    for k in range(cv):
      results[f'split{k}_test_{metric}'] = scores[:, k]
    results[f'mean_test_{metric}'] = scores.mean(1)
    results[f'std_test_{metric}'] = scores.std(1)
    results[f'rank_test_{metric}'] = rank(results[f'mean_test_{metric}'])
  return results


def pick_epoch(history: dict, score_epoch: str, refit: str) -> dict:
  """Per-model scores at the last epoch, or at each model's best epoch of the `refit` metric, with `epoch`
  (1-based) and `diverged`: a fit that diverged at any epoch scores NaN whichever epoch is picked (sklearn's
  error_score=nan)."""
  if score_epoch == 'last':
    at = np.full(history[refit].shape[0], history[refit].shape[1] - 1)
  else:
    at = np.argmax(np.nan_to_num(history[refit], nan=-np.inf), axis=1)
  rows = np.arange(len(at))
  diverged = ~np.all(np.isfinite(history['loss']) & np.isfinite(history['accuracy']), axis=1)
  return {**{k: np.where(diverged, np.nan, history[k][rows, at]) for k in metrics_lib.METRICS},
          'epoch': at + 1, 'diverged': diverged}
