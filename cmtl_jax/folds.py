"""Stratified K-fold splits of a training pool, padded so that every fold has the same array shape.

The one place fold logic lives: the grid search, the single-model path and the ablation all take folds from here.
"""

import numpy as np
from sklearn import model_selection

from cmtl_jax.errors import ConfigError


def fold_indices(labels: np.ndarray, pool: np.ndarray, cv: int, seed: int):
  """`cv` stratified, shuffled (by `seed`) folds of the example indices in `pool`.

  Args:
    labels: int `[N]` labels of the whole dataset.
    pool: int `[n]` indices that may be used for training and validation (never the held-out test split).
    cv: number of folds (>= 2, <= the smallest class count in the pool).
    seed: shuffling seed (`StratifiedKFold(shuffle=True, random_state=seed)`).

  Returns:
    A list of `cv` pairs `(train_idx, val_idx)` of dataset indices, each sorted.
  """
  pool = np.asarray(pool)
  counts = np.bincount(labels[pool])
  smallest = int(counts[counts > 0].min())
  if not 2 <= cv <= smallest:
    raise ConfigError(f'cv={cv} folds is not possible: it must be >= 2 and <= the smallest class count in the '
                      f'training pool ({smallest}).')
  splitter = model_selection.StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
  return [(np.sort(pool[train]), np.sort(pool[val])) for train, val in splitter.split(pool, labels[pool])]


def pad_stack(index_arrays, length: int = 0) -> np.ndarray:
  """Stacks 1-D index arrays into int32 `[len(index_arrays), length]`, padding with -1 (padding is never used)."""
  length = max(length, max(len(a) for a in index_arrays))
  out = np.full((len(index_arrays), length), -1, np.int32)
  for row, a in zip(out, index_arrays):
    row[:len(a)] = a
  return out
