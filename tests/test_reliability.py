"""Reliability: divergence is isolated, runs are deterministic, nothing leaks from the held-out test split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cmtl_jax
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.search import grid
from cmtl_jax import metrics as metrics_lib
from cmtl_jax.models import build as model_lib
from cmtl_jax import optim
from cmtl_jax.search import stacked
from cmtl_jax import train

DIVERGING_LR = 1e38  # x10 for fresh weights: the SGD update overflows float32 at the first step.


def _fit_stacked(config, digits, members, vmap_width):
  pool = np.sort(np.concatenate([digits.train, digits.val]))
  pairs = folds_lib.fold_indices(digits.labels, pool, 3, config.seed)
  steps = train.steps_per_epoch(min(len(t) for t, _ in pairs), config.batch_size)
  model, loaded, pretrained, _ = model_lib.build_model(config, 10, train.model_rngs(0)[0])
  tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
  init_rngs, rngs = (jnp.stack(r) for r in zip(*(train.model_rngs(config.seed, k) for _, k in members)))
  params = model_lib.init_stacked(model, init_rngs, loaded, pretrained)
  return stacked.fit_stacked(
      model, tx, params, np.array([lr for lr, _ in members], np.float32), jnp.asarray(digits.images),
      jnp.asarray(digits.labels), folds_lib.pad_stack([pairs[k][0] for _, k in members]),
      folds_lib.pad_stack([pairs[k][1] for _, k in members]), rngs, num_epochs=config.num_epochs,
      batch_size=config.batch_size, num_classes=10, vmap_width=vmap_width)


@pytest.mark.parametrize('vmap_width', [1, 0])
def test_a_diverging_model_does_not_touch_its_neighbours(tiny_config, digits, vmap_width):
  config = tiny_config
  config.optimizer, config.grad_clip, config.num_epochs = 'sgdm', 0.0, 2
  good = [(1e-3, 0), (3e-3, 2)]
  params, history = _fit_stacked(config, digits, [good[0], (DIVERGING_LR, 1), good[1]], vmap_width)
  if vmap_width == 1:  # Models run one by one: compare with the run that does not have the bad cell at all.
    other_params, other = _fit_stacked(config, digits, good, vmap_width)
  else:  # Vectorised: a stack of another size may sum in another order, so compare with the bad cell made good.
    other_params, other = _fit_stacked(config, digits, [good[0], (1e-3, 1), good[1]], vmap_width)
    other_params = jax.tree.map(lambda x: x[np.array([0, 2])], other_params)
    other = {k: v[[0, 2]] for k, v in other.items()}
  # The bad model: NaN loss and no scores; its parameters stay finite (the non-finite steps were dropped).
  assert np.isnan(history['loss'][1]).all() and np.isnan(history['accuracy'][1]).all()
  assert all(np.isfinite(np.asarray(leaf[1])).all() for leaf in jax.tree.leaves(params))
  # Its neighbours: bit for bit what they are without it.
  for key in ('loss', *metrics_lib.METRICS):
    np.testing.assert_array_equal(history[key][[0, 2]], other[key])
  for leaf, other_leaf in zip(jax.tree.leaves(params), jax.tree.leaves(other_params)):
    np.testing.assert_array_equal(np.asarray(leaf)[[0, 2]], np.asarray(other_leaf))


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
  def search():
    return grid.GridSearchCV(tiny_config, {'learning_rate': [1e-3]}, cv=2, refit=None, log=None).fit(digits)

  first, second = search(), search()
  for key, value in first.cv_results_.items():
    if key.startswith(('split', 'mean_test', 'std_test', 'rank_test')):
      np.testing.assert_array_equal(second.cv_results_[key], value, err_msg=key)
  for key in ('loss', *metrics_lib.METRICS):  # Every epoch's numbers, not only the picked ones.
    np.testing.assert_array_equal(first.histories_[0][key], second.histories_[0][key], err_msg=key)
  pool = np.sort(np.concatenate([digits.train, digits.val]))
  other = folds_lib.fold_indices(digits.labels, pool, 2, tiny_config.seed + 1)
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
  # dataset statistics), so no test-split statistic can reach training. A batch statistic would move the first
  # image by ~1 next to 300 all-white images; float rounding of the batched resize moves it by ~1e-7.
  from cmtl_jax import data  # pylint: disable=g-import-not-at-top
  images = jnp.asarray(digits.images)
  alone = data.preprocess(images[digits.train[:1]], 16, 1)
  white = jnp.full((300, *digits.images.shape[1:]), 255, jnp.uint8)
  with_others = data.preprocess(jnp.concatenate([images[digits.train[:1]], white]), 16, 1)
  np.testing.assert_allclose(alone[0], with_others[0], atol=1e-6)
  assert float(jnp.abs(alone[0]).max()) == 1.0  # Pixels map to [-1, 1] by fixed constants.
