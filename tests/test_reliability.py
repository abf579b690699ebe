"""Reliability: divergence is isolated, runs are deterministic, nothing leaks from the held-out test split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cmtl_jax
from cmtl_jax import folds as folds_lib
from cmtl_jax import grid
from cmtl_jax import metrics as metrics_lib
from cmtl_jax import model as model_lib
from cmtl_jax import optim
from cmtl_jax import train

DIVERGING_LR = 1e20  # SGD at this peak LR overflows float32 within a few steps.


@pytest.fixture
def digits(tiny_config):
  return cmtl_jax.load_dataset(tiny_config)


def _fit_stacked(config, digits, members, vmap_width):
  pool = np.sort(np.concatenate([digits.train, digits.val]))
  pairs = folds_lib.fold_indices(digits.labels, pool, 3, config.seed)
  steps = train.steps_per_epoch(min(len(t) for t, _ in pairs), config.batch_size)
  model, loaded, pretrained, _ = model_lib.from_config(config, 10, train.model_rngs(0)[0])
  tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
  init_rngs, rngs = (jnp.stack(r) for r in zip(*(train.model_rngs(config.seed, k) for _, k in members)))
  params = model_lib.with_pretrained(model_lib.init_stacked(model, init_rngs), loaded, pretrained)
  return grid.fit_stacked(
      model, tx, params, np.array([lr for lr, _ in members], np.float32), jnp.asarray(digits.images),
      jnp.asarray(digits.labels), folds_lib.pad_stack([pairs[k][0] for _, k in members]),
      folds_lib.pad_stack([pairs[k][1] for _, k in members]), rngs, num_epochs=config.num_epochs,
      batch_size=config.batch_size, num_classes=10, vmap_width=vmap_width)


@pytest.mark.parametrize('vmap_width', [1, 0])
def test_a_diverging_model_does_not_touch_its_neighbours(tiny_config, digits, vmap_width):
  config = tiny_config
  config.optimizer, config.grad_clip, config.num_epochs = 'sgdm', 0.0, 2
  good = [(1e-3, 0), (3e-3, 2)]
  with_bad = [good[0], (DIVERGING_LR, 1), good[1]]
  params, history = _fit_stacked(config, digits, with_bad, vmap_width)
  alone_params, alone = _fit_stacked(config, digits, good, vmap_width)
  # The bad model: NaN loss and no scores; its parameters stay finite (the non-finite steps were dropped).
  assert np.isnan(history['loss'][1]).all() and np.isnan(history['accuracy'][1]).all()
  assert all(np.isfinite(np.asarray(leaf[1])).all() for leaf in jax.tree.leaves(params))
  # Its neighbours: bit for bit what they are without it.
  for key in ('loss', *metrics_lib.METRICS):
    np.testing.assert_array_equal(history[key][[0, 2]], alone[key])
  for leaf, alone_leaf in zip(jax.tree.leaves(params), jax.tree.leaves(alone_params)):
    np.testing.assert_array_equal(np.asarray(leaf)[[0, 2]], np.asarray(alone_leaf))


def test_a_diverged_cell_scores_nan_and_ranks_last(tiny_config):
  config = tiny_config
  config.optimizer, config.grad_clip = 'sgdm', 0.0
  search = grid.GridSearchCV(config, {'learning_rate': [1e-3, DIVERGING_LR, 3e-3]}, cv=2, refit='accuracy',
                             log=None).fit()
  results = search.cv_results_
  assert search.diverged_.tolist() == [[False, False], [True, True], [False, False]]
  for metric in metrics_lib.METRICS:
    assert np.isnan(results[f'mean_test_{metric}'][1]) and np.isnan(results[f'split0_test_{metric}'][1])
    assert results[f'rank_test_{metric}'][1] == 3
    assert np.isfinite(results[f'mean_test_{metric}'][[0, 2]]).all()
  assert search.best_params_['learning_rate'] != DIVERGING_LR


def test_same_seed_gives_bit_identical_results_and_another_seed_other_folds(tiny_config, digits):
  def search(seed):
    config = grid.apply_params(tiny_config, {'seed': seed})
    return grid.GridSearchCV(config, {'learning_rate': [1e-3, 3e-3]}, cv=2, refit=None, log=None).fit(digits)

  first, second = search(0), search(0)
  for key, value in first.cv_results_.items():
    if key.startswith(('split', 'mean_test', 'std_test', 'rank_test')):
      np.testing.assert_array_equal(second.cv_results_[key], value, err_msg=key)
  other = search(1).folds_
  assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first.folds_, other))
  # Each seed's folds still partition the same pool.
  assert np.array_equal(np.sort(np.concatenate([v for _, v in other])),
                        np.sort(np.concatenate([v for _, v in first.folds_])))


def test_no_leakage_from_the_held_out_test_split(tiny_config, digits):
  test = set(digits.test.tolist())
  pool = np.sort(np.concatenate([digits.train, digits.val]))
  assert not test & set(pool.tolist())
  for seed in (0, 1):
    for train_idx, val_idx in folds_lib.fold_indices(digits.labels, pool, 5, seed):
      assert not test & set(train_idx.tolist()) and not test & set(val_idx.tolist())
  # The test split depends on split_seed only, never on the training seed.
  other = cmtl_jax.load_dataset(grid.apply_params(tiny_config, {'seed': 7}))
  np.testing.assert_array_equal(other.test, digits.test)
  # Preprocessing fits nothing: an image's pixels do not depend on which other images share its batch (no batch or
  # dataset statistics), so no test-split statistic can reach training.
  from cmtl_jax import data  # pylint: disable=g-import-not-at-top
  images = jnp.asarray(digits.images)
  alone = data.preprocess(images[digits.train[:1]], 16, 1)
  with_test = data.preprocess(images[np.concatenate([digits.train[:1], digits.test])], 16, 1)
  np.testing.assert_array_equal(alone[0], with_test[0])
