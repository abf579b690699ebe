"""GridSearchCV: scikit-learn's cv_results_ shape and ranks, refit, divergence, determinism, resume, bad grids (on the
fake task), and a grid over `model.beit_pretrained` whose cells start from different BEiT weights (the real one)."""

import jax
import numpy as np
import pytest
from sklearn import base as sk_base
from sklearn import model_selection

from cmtl_jax import metrics as metrics_lib
from cmtl_jax.errors import AllCellsDivergedError, ConfigError
from cmtl_jax.models import checkpoints
from cmtl_jax.models.configs import BeitConfig
from cmtl_jax.search import engine as engine_lib
from cmtl_jax.search import grid
from cmtl_jax.search import results as results_lib
from tests.fake_task import FakeTask
from tests.helpers import TINY_BEIT

SCORES = ('split', 'mean_test', 'std_test', 'rank_test')
DIVERGING_LR = 1e38


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


def _search(config, fake, param_grid=None, **kwargs):
  kwargs = {'cv': 2, 'refit': None, 'log': None, 'build_task': fake, **kwargs}
  return grid.GridSearchCV(config, param_grid or {'optim.batch_size': [32, 64],
                                                  'optim.learning_rate': [1e-3, 3e-3]}, **kwargs)


def test_groups_are_cells_that_differ_only_in_learning_rate(tiny_config, fake, digits):
  search = _search(tiny_config, fake).fit(digits)
  assert search.kind == 'exhaustive'
  assert search.models_per_program_ == {0: 4, 1: 4}  # 2 batch sizes: 2 programs of 2 learning rates x 2 folds.
  assert [c['optim.batch_size'] for c in search.cv_results_['params']] == [32, 32, 64, 64]
  assert search.score_epochs_.tolist() == [[1, 1]] * 4


def test_recipe_keys_are_grid_keys_each_value_its_own_program(tiny_config, fake, digits):
  search = _search(tiny_config, fake, {'augment.mixup': [0.0, 0.8], 'optim.learning_rate': [1e-3, 3e-3]}).fit(digits)
  assert search.models_per_program_ == {0: 4, 1: 4}  # Mixup off / on: 2 programs of 2 learning rates x 2 folds.
  scores = search.cv_results_['mean_test_accuracy']
  assert [c['augment.mixup'] for c in search.cv_results_['params']] == [0.0, 0.0, 0.8, 0.8]
  assert scores[0] != scores[2] or scores[1] != scores[3]  # The mixed cells trained on other batches.


def test_refit_scores_the_held_out_test_split(tiny_config, fake, digits):
  search = _search(tiny_config, fake, {'optim.learning_rate': [1e-3, 3e-2]}, refit='accuracy').fit(digits)
  assert search.best_params_ == search.cv_results_['params'][int(np.argmin(search.cv_results_['rank_test_accuracy']))]
  assert search.cv_results_['split1_test_accuracy'].shape == (2,)
  # The refit model is the best cell trained on the whole pool: its test scores are its own predictions'.
  predictions = np.argmax(np.asarray(search.best_task_.apply(search.best_params_tree_, digits.images[digits.test])),
                          -1)
  assert search.test_scores_['accuracy'] == pytest.approx(np.mean(predictions == digits.labels[digits.test]))


def test_a_diverged_cell_scores_nan_and_ranks_last(tiny_config, fake, digits):
  tiny_config.optim.optimizer, tiny_config.optim.grad_clip = 'sgdm', 0.0
  search = _search(tiny_config, fake, {'optim.learning_rate': [1e-3, DIVERGING_LR, 3e-3]}, refit='accuracy')
  results = search.fit(digits).cv_results_
  assert search.diverged_.tolist() == [[False, False], [True, True], [False, False]]
  for metric in metrics_lib.METRICS:
    assert np.isnan(results[f'mean_test_{metric}'][1]) and np.isnan(results[f'split0_test_{metric}'][1])
    assert results[f'rank_test_{metric}'][1] == 3
    assert np.isfinite(results[f'mean_test_{metric}'][[0, 2]]).all()
  assert search.best_params_['optim.learning_rate'] != DIVERGING_LR
  every = _search(tiny_config, fake, {'optim.learning_rate': [DIVERGING_LR]}, refit='accuracy')
  with pytest.raises(AllCellsDivergedError, match='every cell of the grid diverged'):
    every.fit(digits)
  assert np.isnan(every.cv_results_['mean_test_accuracy']).all()  # Set before the error, as scikit-learn's.


def test_same_seed_gives_bit_identical_results_and_another_seed_other_folds(tiny_config, fake, digits):
  first, second = (_search(tiny_config, fake, {'optim.learning_rate': [1e-3]}).fit(digits) for _ in range(2))
  for key, value in first.cv_results_.items():
    if key.startswith(SCORES):
      np.testing.assert_array_equal(second.cv_results_[key], value, err_msg=key)
  for key in ('loss', *metrics_lib.METRICS):  # Every epoch's numbers, not only the picked ones.
    np.testing.assert_array_equal(first.histories_[0][key], second.histories_[0][key], err_msg=key)
  tiny_config.seed = 1
  other = _search(tiny_config, fake, {'optim.learning_rate': [1e-3]}).fit(digits)
  assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first.folds_, other.folds_))


def test_an_interrupted_grid_resumes_to_the_same_results(tiny_config, fake, digits, tmp_path, monkeypatch):
  class Interrupt(Exception):
    pass

  original = engine_lib.Engine._train_group

  def stop_at_the_second_group(self, unit, *args):
    if unit == 1:
      raise Interrupt()
    return original(self, unit, *args)

  with monkeypatch.context() as patch:
    patch.setattr(engine_lib.Engine, '_train_group', stop_at_the_second_group)
    with pytest.raises(Interrupt):
      _search(tiny_config, fake).fit(digits, workdir=str(tmp_path / 'a'))
  resumed = _search(tiny_config, fake).fit(digits, workdir=str(tmp_path / 'a'))
  assert (resumed.units_resumed_, resumed.units_trained_) == ([0], [1])  # Group 0 was not trained twice.
  fresh = _search(tiny_config, fake).fit(digits)
  for key, value in fresh.cv_results_.items():
    if key.startswith(SCORES):
      np.testing.assert_array_equal(resumed.cv_results_[key], value, err_msg=key)
  tiny_config.optim.num_epochs = 2
  with pytest.raises(ConfigError, match='another run .*optim.num_epochs'):
    _search(tiny_config, fake).fit(digits, workdir=str(tmp_path / 'a'))


@pytest.mark.parametrize('grid_spec,message', [
    ({}, 'grid is empty'),
    ({'optim.learning_rate': []}, 'non-empty list'),
    ({'optim.learning_rate': [1e-3, 1e-3]}, 'repeat a value'),
    ({'no_such_key': [1]}, "unknown config key 'no_such_key'"),
    ({'learning_rate': [1e-3]}, "'learning_rate' is now one of optim.learning_rate, pretrain.learning_rate"),
    ({'variant': ['beit']}, "'variant' is now 'model.variant'"),
    ({'optim.learning_rate': [1e-3, -1.0]}, 'optim.learning_rate must be a positive number'),
    ({'data.train_per_class': [10, 20]}, 'cannot vary the data group'),
])
def test_bad_grids_are_refused(tiny_config, grid_spec, message):
  with pytest.raises(ConfigError, match=message):
    grid.GridSearchCV(tiny_config, grid_spec)


def test_a_grid_over_beit_pretrained_starts_its_cells_from_different_beit_weights(tiny_config, digits, tmp_path):
  """A cached model keyed by a hand-kept field list once left `beit_pretrained` out: both cells trained from the
  checkpoint's weights. The search's tasks are keyed by the resolved model spec."""
  beit = BeitConfig.from_dict(TINY_BEIT)
  params = jax.tree.map(lambda x: x + 0.5, _beit_params(beit))
  checkpoints.save_beit(str(tmp_path / 'beit'), beit, params)
  tiny_config.model.beit_path = str(tmp_path / 'beit')
  tiny_config.model.beit = {k: None for k in tiny_config.model.beit}  # Unset: the checkpoint's.
  search = grid.GridSearchCV(tiny_config, {'model.beit_pretrained': [True, False]}, cv=2, log=None)
  search.prepare(digits)
  pretrained, fresh = (search.fits([c], 10)[0].task for c in range(2))
  assert pretrained is not fresh
  start = [task.init(jax.random.key(0))['beit_encoder'] for task in (pretrained, fresh)]
  np.testing.assert_array_equal(start[0]['layer']['0']['lambda_1'], params['encoder']['layer']['0']['lambda_1'])
  assert not np.allclose(start[1]['layer']['0']['lambda_1'], params['encoder']['layer']['0']['lambda_1'])
  # The fresh cell's BEiT leaves get the fresh weights' learning-rate multiplier, the pretrained cell's do not.
  assert all(jax.tree.leaves(pretrained.pretrained['beit_encoder']))
  assert not any(jax.tree.leaves(fresh.pretrained['beit_encoder']))


def _beit_params(beit):
  from cmtl_jax.models import beit as beit_lib  # pylint: disable=g-import-not-at-top
  pixels = np.zeros((1, beit.image_size, beit.image_size, beit.num_channels), np.float32)
  return beit_lib.BeitModel(beit).init(jax.random.key(7), pixels)['params']
