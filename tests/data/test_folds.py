"""Folds: stratified, disjoint, covering the pool, never touching the held-out test split; the test split depends on
`split_seed` only; preprocessing fits no statistic."""

import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax import data
from cmtl_jax import resolve
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.errors import ConfigError


def test_folds_are_stratified_disjoint_and_cover_the_pool(digits):
  pool = digits.pool
  pairs = folds_lib.fold_indices(digits.labels, pool, 5, seed=0)
  assert sorted(np.concatenate([v for _, v in pairs]).tolist()) == pool.tolist()  # Each validated exactly once.
  for train_idx, val_idx in pairs:
    assert not set(train_idx) & set(val_idx)
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == pool.tolist()
    assert not set(np.concatenate([train_idx, val_idx])) & set(digits.test.tolist())
    counts = np.bincount(digits.labels[val_idx], minlength=10)
    expected = np.bincount(digits.labels[pool], minlength=10) / 5
    assert np.all(np.abs(counts - expected) <= 1)
  other = folds_lib.fold_indices(digits.labels, pool, 5, seed=1)
  assert not np.array_equal(other[0][1], pairs[0][1])


def test_too_many_folds_is_refused(digits):
  with pytest.raises(ConfigError, match='cv=1000 folds is not possible.*lower --config.search.cv'):
    folds_lib.fold_indices(digits.labels, digits.train, 1000, 0)


def test_inner_splits_stay_inside_the_outer_training_set(digits):
  outer_train, _ = folds_lib.fold_indices(digits.labels, digits.pool, 3, 0)[0]
  for inner_cv in (1, 3):
    splits = folds_lib.inner_splits(digits.labels, outer_train, inner_cv, 0.2, 0)
    assert len(splits) == inner_cv
    for train_idx, val_idx in splits:
      assert np.isin(train_idx, outer_train).all() and np.isin(val_idx, outer_train).all()
      assert not set(train_idx) & set(val_idx)


def test_explicit_splits_are_checked(digits):
  with pytest.raises(ConfigError, match='split 0: its training and validation indices overlap'):
    folds_lib.explicit_splits([(np.arange(10), np.arange(5, 15))])
  with pytest.raises(ConfigError, match='split 0 uses examples of the held-out test split'):
    folds_lib.check_splits([(digits.test[:5], digits.train[:5])], digits.test)


def test_no_leakage_from_the_held_out_test_split(tiny_config, digits):
  test = set(digits.test.tolist())
  assert not test & set(digits.pool.tolist())
  # The test split depends on split_seed only, never on the training seed.
  other = data.load_dataset(resolve.resolve(resolve.with_keys(tiny_config, {'seed': 7})).data)
  np.testing.assert_array_equal(other.test, digits.test)
  # Preprocessing fits nothing: an image's pixels do not depend on which other images share its batch (no batch or
  # dataset statistics), so no test-split statistic can reach training. A batch statistic would move the first
  # image by ~1 next to 300 all-white images; float rounding of the batched resize moves it by ~1e-7.
  images = jnp.asarray(digits.images)
  alone = data.preprocess(images[digits.train[:1]], 16, 1)
  white = jnp.full((300, *digits.images.shape[1:]), 255, jnp.uint8)
  with_others = data.preprocess(jnp.concatenate([images[digits.train[:1]], white]), 16, 1)
  np.testing.assert_allclose(alone[0], with_others[0], atol=1e-6)
  assert float(jnp.abs(alone[0]).max()) == 1.0  # Pixels map to [-1, 1] by fixed constants.
