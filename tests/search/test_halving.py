"""Successive halving: the schedule, and (on the fake task) the exhaustive search's best cell reaches the last round
with the exhaustive search's scores, for a fraction of its epochs; a killed search resumes."""

import numpy as np
import pytest

from cmtl_jax import metrics as metrics_lib
from cmtl_jax.errors import ConfigError
from cmtl_jax.search import engine as engine_lib
from cmtl_jax.search import grid
from cmtl_jax.search import halving


def test_schedule_follows_sklearn_halving_with_epochs_as_the_resource():
  assert halving.schedule(12, 9, 3) == [(12, 1), (4, 3), (2, 9)]  # The digits grid at 9 epochs: 32 / 108 epochs.
  assert halving.schedule(12, 4, 3) == [(12, 1), (4, 3), (2, 4)]  # The last round always ends at num_epochs.
  assert halving.schedule(6, 3, 3) == [(6, 1), (2, 3)]
  assert halving.schedule(12, 2, 3) == [(12, 1), (4, 2)]          # Rounds whose epochs would not grow are dropped.
  assert halving.schedule(27, 27, 3, min_epochs=9) == [(27, 9), (9, 27)]
  assert halving.schedule(1, 5, 3) == [(1, 5)]


def test_num_epochs_cannot_be_a_halving_grid_key(tiny_config):
  with pytest.raises(ConfigError, match='optim.num_epochs'):
    halving.HalvingGridSearchCV(tiny_config, {'optim.num_epochs': [1, 2]}, cv=2, log=None)


# The fake task's mean accuracy after epoch 1 / 3: best at 1e-2 after 3 epochs, and among the best two after one.
LEARNING_RATES = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def test_halving_keeps_the_exhaustive_best_cell_with_its_scores(tiny_config, fake, digits):
  tiny_config.optim.num_epochs = 3
  param_grid = {'optim.learning_rate': LEARNING_RATES}  # One group: one compiled program.
  common = dict(cv=3, refit=None, log=None, build_task=fake)
  exhaustive = grid.GridSearchCV(tiny_config, param_grid, **common).fit(digits)
  halved = halving.HalvingGridSearchCV(tiny_config, param_grid, **common).fit(digits)
  results = halved.cv_results_
  assert halved.kind == 'halving'
  assert halved.n_candidates_ == [6, 2] and halved.n_resources_ == [1, 3]
  assert list(results['iter']) == [0] * 6 + [1] * 2 and list(results['n_resources']) == [1] * 6 + [3] * 2
  # 6 cells x 3 folds x 1 epoch, then 2 cells x 3 folds x 2 more epochs, of 6 x 3 x 3 exhaustive.
  assert halved.epochs_trained_ == 30 and halved.exhaustive_epochs_ == 54
  last = [i for i in range(len(results['params'])) if results['iter'][i] == 1]
  final_cells = [results['params'][i] for i in last]
  assert halved.best_params_ == exhaustive.best_params_ and exhaustive.best_params_ in final_cells
  # A survivor trained exactly as in the exhaustive search: its last-round scores are the exhaustive ones.
  for i in last:
    j = exhaustive.cells.index(results['params'][i])
    for metric in metrics_lib.METRICS:
      for k in range(3):
        assert results[f'split{k}_test_{metric}'][i] == exhaustive.cv_results_[f'split{k}_test_{metric}'][j]
  # Round 0 scores are each cell's epoch-1 scores of the exhaustive run; the survivors were its best 2.
  first = {results['params'][i]['optim.learning_rate']: results['mean_test_accuracy'][i] for i in range(6)}
  for c, cell in enumerate(exhaustive.cells):
    assert first[cell['optim.learning_rate']] == pytest.approx(exhaustive.histories_[c]['accuracy'][:, 0].mean(),
                                                               abs=1e-12)
  best_two = sorted(first, key=lambda lr: -first[lr])[:2]
  assert sorted(best_two) == sorted(c['optim.learning_rate'] for c in final_cells)
  assert results['rank_test_accuracy'][last].min() == 1 and results['rank_test_accuracy'][:6].min() == 3


@pytest.mark.parametrize('vmap_width', [1, 0])
def test_an_interrupted_halving_search_resumes_to_the_uninterrupted_results(tiny_config, fake, digits, tmp_path,
                                                                           monkeypatch, vmap_width):
  tiny_config.optim.num_epochs, tiny_config.devices.vmap_width = 3, vmap_width
  param_grid = {'optim.learning_rate': [1e-3, 3e-3, 1e-2]}  # 3 cells to epoch 1, then the best one to epoch 3.

  def search(**kwargs):
    return halving.HalvingGridSearchCV(tiny_config, param_grid, cv=2, refit=None, log=None, build_task=fake,
                                       **kwargs)

  class Interrupt(Exception):
    pass

  original = engine_lib.Engine._train_group

  def stop_in_the_second_round(self, unit, *args):
    if unit == 1:
      raise Interrupt()
    return original(self, unit, *args)

  workdir = str(tmp_path / 'run')
  with monkeypatch.context() as patch:
    patch.setattr(engine_lib.Engine, '_train_group', stop_in_the_second_round)
    with pytest.raises(Interrupt):
      search().fit(digits, workdir=workdir)
  resumed = search().fit(digits, workdir=workdir)
  assert (resumed.units_resumed_, resumed.units_trained_) == ([0], [1])  # Round 0's survivor went on from its state.
  fresh = search().fit(digits)  # In memory, never stopped.
  assert fresh.n_candidates_ == [3, 1] and resumed.epochs_trained_ == fresh.epochs_trained_ == 3 * 2 + 1 * 2 * 2
  for key, value in fresh.cv_results_.items():
    if key.startswith(('split', 'mean_test', 'std_test', 'rank_test', 'iter', 'n_resources', 'params')):
      np.testing.assert_array_equal(resumed.cv_results_[key], value, err_msg=key)
  for cell, history in fresh.histories_.items():
    for key in ('loss', *metrics_lib.METRICS):
      np.testing.assert_array_equal(resumed.histories_[cell][key], history[key], err_msg=f'{cell} {key}')
  again = search().fit(digits, workdir=workdir)  # Every round done: nothing trains.
  assert again.units_trained_ == [] and again.best_params_ == fresh.best_params_
  with pytest.raises(ConfigError, match='another run .*halving.factor'):
    search(factor=2).fit(digits, workdir=workdir)
