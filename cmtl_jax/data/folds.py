"""Stratified K-fold splits of a training pool, padded so that every fold has the same array shape.

The one place fold logic lives: the grid search, the single-model path and the ablation all take folds from here.
"""

import hashlib
import math

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
                      f'training pool ({smallest}): lower --config.search.cv or raise --config.data.train_per_class.')
  splitter = model_selection.StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
  return [(np.sort(pool[train]), np.sort(pool[val])) for train, val in splitter.split(pool, labels[pool])]


def pad_stack(index_arrays, length: int = 0) -> np.ndarray:
  """Stacks 1-D index arrays into int32 `[len(index_arrays), length]`, padding with -1 (padding is never used)."""
  length = max(length, max(len(a) for a in index_arrays))
  out = np.full((len(index_arrays), length), -1, np.int32)
  for row, a in zip(out, index_arrays):
    row[:len(a)] = a
  return out


def stratified_split(labels: np.ndarray, pool: np.ndarray, fraction: float, seed: int, key: str):
  """`(kept, held_out)`: `pool` split stratified by class, `fraction` of it held out (at least one example per
  class on each side), in `train_test_split`'s shuffled order (the low-data subsample draws from it). Raises ConfigError naming `key` (the config key that set `fraction`) when the
  classes are too small for it."""
  pool = np.asarray(pool)
  try:
    kept, held_out = model_selection.train_test_split(pool, test_size=fraction, stratify=labels[pool],
                                                      random_state=seed)
  except ValueError as e:  # Too few examples for every class to appear on both sides.
    raise ConfigError(f'cannot split {len(pool)} examples stratified with {key}={fraction}: {e}') from None
  return kept, held_out


def inner_splits(labels: np.ndarray, pool: np.ndarray, inner_cv: int, val_fraction: float, seed: int):
  """Nested CV's inner splits of an outer training set `pool`: `inner_cv` stratified folds, or (inner_cv = 1) one
  stratified split holding out `val_fraction`. Only indices of `pool` appear in them."""
  if inner_cv == 1:
    return [tuple(np.sort(side) for side in stratified_split(labels, pool, val_fraction, seed, 'val_fraction'))]
  return fold_indices(labels, pool, inner_cv, seed)


def smallest_train_count(per_class: int, cv: int) -> int:
  """Fewest examples of a class with `per_class` examples that a training side of a stratified `cv`-fold split
  can hold: its validation side takes at most ceil(per_class / cv) of them."""
  return per_class - math.ceil(per_class / cv)


def explicit_splits(splits):
  """`(train_idx, val_idx)` pairs given by a caller, as sorted int arrays; raises ConfigError when a split is
  empty or its two sides overlap."""
  out = []
  for k, (train, val) in enumerate(splits):
    train, val = np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(val, np.int64))
    if not len(train) or not len(val):
      raise ConfigError(f'split {k} has an empty training or validation side.')
    if np.intersect1d(train, val).size:
      raise ConfigError(f'split {k}: its training and validation indices overlap.')
    out.append((train, val))
  if not out:
    raise ConfigError('cv needs at least one (train, validation) split.')
  return out


def check_splits(splits, test: np.ndarray) -> None:
  """Raises ConfigError when any split uses an index of the held-out test split."""
  for k, (train, val) in enumerate(splits):
    if np.intersect1d(np.concatenate([train, val]), test).size:
      raise ConfigError(f'split {k} uses examples of the held-out test split.')


def fingerprint(splits) -> str:
  """A short digest of the splits' indices (a resumable search's identity)."""
  digest = hashlib.sha256()
  for train, val in splits:
    digest.update(np.asarray(train, np.int64).tobytes() + b'|' + np.asarray(val, np.int64).tobytes() + b';')
  return digest.hexdigest()[:16]
