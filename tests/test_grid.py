"""The grid engine: stacked training equals one-by-one training; folds; sklearn-shaped results; resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import base as sk_base
from sklearn import model_selection

from cmtl_jax.data import folds as folds_lib
from cmtl_jax.search import grid
from cmtl_jax.search import results as results_lib
from cmtl_jax import metrics as metrics_lib
from cmtl_jax.models import build as model_lib
from cmtl_jax import optim
from cmtl_jax.search import stacked
from cmtl_jax import train
from cmtl_jax.errors import ConfigError

from conftest import count_compilations  # pylint: disable=g-bad-import-order


def test_stacked_models_match_single_model_training(tiny_config, digits, monkeypatch):
  config = tiny_config
  config.num_epochs = 2
  pool = np.sort(np.concatenate([digits.train, digits.val]))
  fold_pairs = folds_lib.fold_indices(digits.labels, pool, 3, config.seed)
  members = [(lr, k) for lr in (1e-4, 1e-3) for k in (0, 2)]  # K = 4 models: 2 learning rates x 2 folds.
  steps = train.steps_per_epoch(min(len(fold_pairs[k][0]) for _, k in members), config.batch_size)
  model, loaded, pretrained, _ = model_lib.build_model(config, 10, jax.random.key(0))
  loaded = jax.device_put(loaded, jax.devices()[0])  # Committed, as weights a user placed with device_put.

  def optimizer(lr):
    return optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained, learning_rate=lr)

  images, labels = jnp.asarray(digits.images), jnp.asarray(digits.labels)
  init_rngs, rngs = (jnp.stack(r) for r in zip(*(train.model_rngs(config.seed, k) for _, k in members)))
  # All 4 vectorised (the accelerator path) and the single-model program run model after model (the CPU path).
  names, stop = count_compilations(monkeypatch)
  try:
    runs = [stacked.fit_stacked(
        model, optimizer(config.learning_rate), model_lib.init_stacked(model, init_rngs, loaded, pretrained),
        np.array([lr for lr, _ in members], np.float32), images, labels,
        folds_lib.pad_stack([fold_pairs[k][0] for _, k in members]),
        folds_lib.pad_stack([fold_pairs[k][1] for _, k in members]), rngs,
        num_epochs=config.num_epochs, batch_size=config.batch_size, num_classes=10, vmap_width=width)
            for width in (0, 1)]
  finally:
    stop()
  # Each program compiled once for both epochs: the second epoch's state (the first's output) must not look
  # different to jit. It did when the injected learning rates, made outside, stayed uncommitted beside committed
  # weights: every stack compiled twice.
  assert sum('epoch_fn' in n for n in names) == 2
  (vmapped_params, vmapped), (single_params, single) = runs
  for m, (lr, k) in enumerate(members):
    init_rng, train_rng = train.model_rngs(config.seed, k)
    params, alone = train.fit(model, optimizer(lr), model_lib.init_params(model, init_rng, loaded, pretrained),
                              images, labels, fold_pairs[k][0], fold_pairs[k][1], num_epochs=config.num_epochs,
                              batch_size=config.batch_size, num_classes=10, rng=train_rng, steps=steps, log=None)
    history = {name: [h[f'val_{name}'] for h in alone] for name in metrics_lib.METRICS}
    history['loss'] = [h['loss'] for h in alone]
    # The single-model program is `train.fit`'s computation: equal bit for bit.
    for name, values in history.items():
      np.testing.assert_array_equal(single[name][m], values, err_msg=name)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[m], b), single_params, params)
    # Vectorised, the matmuls are batched: another program, equal up to float32 rounding, which can flip a
    # prediction. Measured on the CPU box (BUILD_NOTES, "Tests"): rounding moved params by
    # <= 2e-5 and a score by <= 1.3e-3 (one of ~600 predictions); a planted fault (models' PRNG streams swapped,
    # or learning rates x1.5) moved params by >= 1e-2 and scores by >= 1.5e-2.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[m], b, atol=1e-3), vmapped_params, params)
    for name in metrics_lib.METRICS:
      np.testing.assert_allclose(vmapped[name][m], history[name], atol=5e-3, err_msg=name)
    np.testing.assert_allclose(vmapped['loss'][m], history['loss'], rtol=1e-4)
  # The learning rates really differ between models of the stack.
  assert not np.allclose(vmapped['loss'][0], vmapped['loss'][2])


def test_folds_are_stratified_disjoint_and_cover_the_pool(digits):
  pool = np.sort(np.concatenate([digits.train, digits.val]))
  pairs = folds_lib.fold_indices(digits.labels, pool, 5, seed=0)
  vals = [v for _, v in pairs]
  assert sorted(np.concatenate(vals).tolist()) == pool.tolist()  # Every pool index validated exactly once.
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
  with pytest.raises(ConfigError, match='cv=1000 folds is not possible'):
    folds_lib.fold_indices(digits.labels, digits.train, 1000, 0)


class _Scripted(sk_base.BaseEstimator, sk_base.ClassifierMixin):
  """A fake estimator whose predictions depend on its params: ties, and a failing cell (NaN score)."""

  def __init__(self, batch_size=1, learning_rate=1.0):
    self.batch_size = batch_size
    self.learning_rate = learning_rate

  def fit(self, x, y):
    if self.learning_rate > 5:
      raise FloatingPointError('diverged')
    self.y_ = y
    return self

  def predict(self, x):
    keep = int(len(x) * (0.2 + 0.1 * (self.learning_rate + self.batch_size % 3)))
    return np.where(np.arange(len(x)) < keep, x[:, 0], (x[:, 0] + 1) % 3)


def test_cv_results_keys_and_ranks_match_sklearn():
  param_grid = {'batch_size': [1, 2, 4], 'learning_rate': [0.5, 1.0, 9.0]}
  x = np.repeat(np.arange(3), 20)[:, None]
  y = x[:, 0]
  scoring = {'accuracy': 'accuracy', 'f1': 'f1_macro', 'precision': 'precision_macro', 'recall': 'recall_macro'}
  sk = model_selection.GridSearchCV(_Scripted(), param_grid, scoring=scoring, refit='accuracy', cv=5,
                                    error_score=np.nan)
  with pytest.warns(Warning):
    sk.fit(x, y)
  cells = grid.expand_grid(param_grid)
  assert cells == list(sk.cv_results_['params'])
  fold_scores = {m: np.stack([sk.cv_results_[f'split{k}_test_{m}'] for k in range(5)], 1)
                 for m in metrics_lib.METRICS}
  ours = results_lib.cv_results(cells, fold_scores, np.zeros((9, 5)), np.zeros((9, 5)), 5)
  assert set(ours) == set(sk.cv_results_)
  for metric in metrics_lib.METRICS:
    np.testing.assert_array_equal(ours[f'rank_test_{metric}'], sk.cv_results_[f'rank_test_{metric}'])
    np.testing.assert_allclose(ours[f'mean_test_{metric}'], sk.cv_results_[f'mean_test_{metric}'])
  assert int(np.argmin(ours['rank_test_accuracy'])) == sk.best_index_
  assert list(ours['param_batch_size']) == list(sk.cv_results_['param_batch_size'])
  assert len(set(sk.cv_results_['rank_test_accuracy'])) < 9  # The example really has ties.


def _small_search(config, **kwargs):
  return grid.GridSearchCV(config, {'batch_size': [32, 64], 'learning_rate': [1e-4, 1e-3]}, cv=2,
                           refit=None, log=None, **kwargs)


def test_interrupted_grid_resumes_to_the_same_results(tiny_config, tmp_path):
  class Interrupt(Exception):
    pass

  def stop_after_first(index):
    raise Interrupt(index)

  with pytest.raises(Interrupt):
    _small_search(tiny_config).fit(workdir=str(tmp_path / 'a'), on_group_done=stop_after_first)
  resumed = _small_search(tiny_config).fit(workdir=str(tmp_path / 'a'))
  assert resumed.trained_groups_ == [1]  # Group 0 was not trained twice.
  again = _small_search(tiny_config).fit(workdir=str(tmp_path / 'a'))
  assert again.trained_groups_ == []
  fresh = _small_search(tiny_config).fit(workdir=str(tmp_path / 'b'))
  assert fresh.trained_groups_ == [0, 1]
  for key, value in fresh.cv_results_.items():
    if key.startswith(('split', 'mean_test', 'std_test', 'rank_test')):
      np.testing.assert_array_equal(resumed.cv_results_[key], value, err_msg=key)
  assert resumed.best_params_ == fresh.best_params_

  tiny_config.num_epochs = 2
  with pytest.raises(ConfigError, match='different config .*num_epochs'):
    _small_search(tiny_config).fit(workdir=str(tmp_path / 'a'))


def test_refit_scores_the_held_out_test_split(tiny_config):
  search = grid.GridSearchCV(tiny_config, {'learning_rate': [1e-3]}, cv=2, log=None).fit()
  assert search.best_params_ == {'learning_rate': 1e-3}
  assert 0.0 <= search.test_scores_['accuracy'] <= 1.0
  assert search.cv_results_['split1_test_accuracy'].shape == (1,)


@pytest.mark.parametrize('grid_spec,message', [
    ({}, 'grid is empty'),
    ({'learning_rate': []}, 'non-empty list'),
    ({'learning_rate': [1e-3, 1e-3]}, 'repeat a value'),
    ({'no_such_key': [1]}, "'no_such_key' is not a config key"),
    ({'learning_rate': [1e-3, -1.0]}, 'learning_rate must be a positive number'),
])
def test_bad_grids_are_refused(tiny_config, grid_spec, message):
  with pytest.raises(ConfigError, match=message):
    grid.GridSearchCV(tiny_config, grid_spec)
