"""Successive halving: the schedule, and on digits the exhaustive search's best cell reaches the last round with the
exhaustive search's scores, for a fraction of its epochs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cmtl_jax
from cmtl_jax.search import grid
from cmtl_jax.search import halving
from cmtl_jax import metrics as metrics_lib
from cmtl_jax.models import build as model_lib
from cmtl_jax import optim
from cmtl_jax.search import stacked
from cmtl_jax import train
from cmtl_jax.errors import ConfigError


def test_schedule_follows_sklearn_halving_with_epochs_as_the_resource():
  assert halving.schedule(12, 9, 3) == [(12, 1), (4, 3), (2, 9)]  # The digits grid at 9 epochs: 32 / 108 epochs.
  assert halving.schedule(12, 4, 3) == [(12, 1), (4, 3), (2, 4)]  # The last round always ends at num_epochs.
  assert halving.schedule(6, 3, 3) == [(6, 1), (2, 3)]
  assert halving.schedule(12, 2, 3) == [(12, 1), (4, 2)]          # Rounds whose epochs would not grow are dropped.
  assert halving.schedule(27, 27, 3, min_epochs=9) == [(27, 9), (9, 27)]
  assert halving.schedule(1, 5, 3) == [(1, 5)]


def test_num_epochs_cannot_be_a_halving_grid_key(tiny_config):
  with pytest.raises(ConfigError, match='num_epochs cannot be a grid key'):
    halving.HalvingGridSearchCV(tiny_config, {'num_epochs': [1, 2]}, cv=2, log=None)


def test_halving_keeps_the_exhaustive_best_cell_with_its_scores(tiny_config):
  config = tiny_config
  config.num_epochs = 3
  # One group: one compiled program. The stand-in model is best at 1e-3 after 3 epochs and among the best two after
  # one; at 1e-2 and above it stays near chance.
  param_grid = {'learning_rate': [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]}
  digits = cmtl_jax.load_dataset(config)
  exhaustive = grid.GridSearchCV(config, param_grid, cv=3, refit=None, log=None).fit(digits)
  halved = halving.HalvingGridSearchCV(config, param_grid, cv=3, refit=None, log=None).fit(digits)
  results = halved.cv_results_
  assert halved.n_candidates_ == [6, 2] and halved.n_resources_ == [1, 3]
  assert list(results['iter']) == [0] * 6 + [1] * 2 and list(results['n_resources']) == [1] * 6 + [3] * 2
  # 6 cells x 3 folds x 1 epoch, then 2 cells x 3 folds x 2 more epochs, of 6 x 3 x 3 exhaustive.
  assert halved.epochs_trained_ == 30 and halved.exhaustive_epochs_ == 54
  last = [i for i in range(len(results['params'])) if results['iter'][i] == 1]
  final_cells = [results['params'][i] for i in last]
  assert exhaustive.best_params_ in final_cells
  assert halved.best_params_ == exhaustive.best_params_
  # A survivor trained exactly as in the exhaustive search: its last-round scores are the exhaustive ones.
  for i in last:
    j = exhaustive.cells.index(results['params'][i])
    for metric in metrics_lib.METRICS:
      for k in range(3):
        assert results[f'split{k}_test_{metric}'][i] == exhaustive.cv_results_[f'split{k}_test_{metric}'][j]
  # Round 0 scores are each cell's epoch-1 scores of the exhaustive run; the survivors were its best 2.
  first = {tuple(sorted(results['params'][i].items())): results['mean_test_accuracy'][i]
           for i in range(6)}
  for c, cell in enumerate(exhaustive.cells):
    at_epoch_1 = exhaustive.histories_[c]['accuracy'][:, 0].mean()
    assert first[tuple(sorted(cell.items()))] == pytest.approx(at_epoch_1, abs=1e-12)
  best_two = sorted(first, key=lambda c: -first[c])[:2]
  assert sorted(best_two) == sorted(tuple(sorted(c.items())) for c in final_cells)
  assert results['rank_test_accuracy'][last].min() == 1 and results['rank_test_accuracy'][:6].min() == 3


def test_a_vectorised_stack_continues_the_models_it_keeps(tiny_config):
  # Halving's `keep` on the vectorised path (the one-by-one path is the test above): models 2 and 0 of a stack of
  # 3, kept after epoch 1, train on as the same two models trained for 2 epochs in a stack of their own.
  digits = cmtl_jax.load_dataset(tiny_config)
  model, params, pretrained, _ = model_lib.build_model(tiny_config, 10, jax.random.key(0))
  steps = train.steps_per_epoch(len(digits.train), 64)
  tx = optim.from_config(grid.apply_params(tiny_config, {'num_epochs': 2}), steps_per_epoch=steps,
                         pretrained=pretrained)
  programs = stacked.make_programs(model, tx, batch_size=64, steps=steps, num_classes=10, width=0)
  lrs = np.array([1e-4, 1e-3, 3e-3], np.float32)
  rngs = jax.random.split(jax.random.key(3), 3)
  staged = cmtl_jax.data.stage(digits)

  def new_stack(rows):
    rows = np.array(rows)
    return stacked.Stack(programs, jax.tree.map(lambda x: jnp.stack([x] * len(rows)), params), lrs[rows],
                         np.stack([digits.train] * len(rows)), np.stack([digits.val] * len(rows)), rngs[rows])

  kept = new_stack([0, 1, 2])
  kept.train(1, *staged)
  kept.keep([2, 0])
  history = kept.train(2, *staged)
  alone = new_stack([2, 0]).train(2, *staged)
  assert list(kept.models) == [2, 0]
  np.testing.assert_allclose(history['loss'][:, 0], alone['loss'][:, 1], rtol=1e-4)  # Vectorised: float32 rounding.
  np.testing.assert_allclose(history['accuracy'][:, 0], alone['accuracy'][:, 1], atol=2 / len(digits.val))


# The vectorised path (0) runs in the slow tier; the default tier has it continue kept models above.
@pytest.mark.parametrize('vmap_width', [1, pytest.param(0, marks=pytest.mark.slow)])
def test_an_interrupted_halving_search_resumes_to_the_uninterrupted_results(tiny_config, tmp_path, vmap_width):
  config = tiny_config
  config.num_epochs, config.vmap_width = 3, vmap_width  # 1: model after model (the CPU path); 0: vectorised.
  param_grid = {'learning_rate': [1e-4, 1e-3, 3e-3]}  # Rounds: 3 cells to epoch 1, then the best one to epoch 3.
  digits = cmtl_jax.load_dataset(config)

  def search():
    return halving.HalvingGridSearchCV(config, param_grid, cv=2, refit=None, log=None)

  class Interrupt(Exception):
    pass

  def stop_after(round_index):
    raise Interrupt(round_index)

  workdir = str(tmp_path / 'run')
  with pytest.raises(Interrupt):
    search().fit(digits, workdir=workdir, on_round_done=stop_after)
  resumed = search().fit(digits, workdir=workdir)
  assert resumed.rounds_trained_ == [1]  # Round 0 was not trained again: its survivors went on from their states.
  fresh = search().fit(digits)  # In memory, never stopped.
  assert fresh.rounds_trained_ == [0, 1] and fresh.n_candidates_ == [3, 1]
  assert resumed.epochs_trained_ == fresh.epochs_trained_ == 3 * 2 * 1 + 1 * 2 * 2
  for key, value in fresh.cv_results_.items():
    if key.startswith(('split', 'mean_test', 'std_test', 'rank_test', 'iter', 'n_resources', 'params')):
      np.testing.assert_array_equal(resumed.cv_results_[key], value, err_msg=key)
  for cell, history in fresh.histories_.items():
    for key in ('loss', *metrics_lib.METRICS):
      np.testing.assert_array_equal(resumed.histories_[cell][key], history[key], err_msg=f'{cell} {key}')
  assert resumed.best_params_ == fresh.best_params_

  again = search().fit(digits, workdir=workdir)  # Every round done: nothing trains.
  assert again.rounds_trained_ == [] and again.best_params_ == fresh.best_params_
  with pytest.raises(ConfigError, match='different config .*halving.factor'):
    halving.HalvingGridSearchCV(config, param_grid, cv=2, refit=None, log=None, factor=2).fit(digits,
                                                                                                workdir=workdir)
