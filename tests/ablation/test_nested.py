"""Nested CV's mechanics on the fake task: inner selection sees only outer training indices, choices and scores land
in the results, every size is checked before anything trains, the twins are compared, the report is filled."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cmtl_jax import experiment
from cmtl_jax.ablation import nested
from cmtl_jax.ablation import references
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import checkpoints
from cmtl_jax.models.configs import BeitConfig
from cmtl_jax.search import engine as engine_lib


@pytest.fixture
def quick_references(monkeypatch):
  """The pixel logistic regression stopped at a loose tolerance: these tests need its row, not its convergence
  (tests/ablation/test_references.py checks the real one)."""
  monkeypatch.setattr(references, 'logistic_regression', lambda: LogisticRegression(max_iter=2000, tol=1e-2))


@pytest.fixture
def trained(monkeypatch, quick_references):
  """Every list of fits the engine trains, as `(name, train_idx, val_idx)` triples."""
  del quick_references
  seen = []
  original = engine_lib.Engine.train

  def recording(self, fits, *args, **kwargs):
    seen.extend((f.name, np.asarray(f.train_idx), np.asarray(f.val_idx)) for f in fits)
    return original(self, fits, *args, **kwargs)

  monkeypatch.setattr(engine_lib.Engine, 'train', recording)
  return seen


def _nested_config(config):
  config.search.cv, config.ablation.inner_cv, config.data.val_fraction = 3, 2, 0.2
  config.ablation.arms = ('beit', 'hybrid')
  config.search.grid = {'optim': {'learning_rate': (1e-3, 3e-2)}}
  config.optim.num_epochs, config.optim.batch_size = 3, 16
  return config


def test_inner_selection_sees_only_outer_training_indices(tiny_config, tmp_path, fake, trained):
  config = _nested_config(tiny_config)
  summary = experiment.ablation(config, str(tmp_path), log=None, build_task=fake)
  point = json.loads((tmp_path / 'ablation.json').read_text())['points']['0']
  outer = point['fold_indices']
  for arm in config.ablation.arms:
    inner = point['arms'][arm]['inner_indices']
    assert len(inner) == 3
    for (outer_train, outer_val), splits in zip(outer, inner):
      assert len(splits) == 2
      for inner_train, inner_val in splits:  # Only outer-training examples, never the outer fold that scores.
        assert np.isin(inner_train, outer_train).all() and np.isin(inner_val, outer_train).all()
        assert not np.isin(inner_val, outer_val).any() and not np.isin(inner_train, outer_val).any()
    for k, chosen in enumerate(point['arms'][arm]['chosen_params']):  # Each fold's choice is from the space.
      assert chosen['optim.learning_rate'] in (1e-3, 3e-2) and 1 <= chosen['optim.num_epochs'] <= 3, (arm, k)
  # What the engine trained agrees: selection fits on inner splits, final fits on whole outer training sets.
  outer_sets = [set(t) for t, _ in outer]
  finals = [(t, v) for name, t, v in trained if name.startswith('final/')]
  assert len(finals) == 2 * 3
  for t, v in finals:
    assert any(set(t.tolist()) == o for o in outer_sets) and any(np.array_equal(v, ov) for _, ov in outer)
  for name, t, v in trained:
    if not name.startswith('final/'):
      assert any(set(t.tolist()) | set(v.tolist()) <= o for o in outer_sets), name
  # An outer score is the final fit's at the chosen epoch.
  assert all(0.0 <= s <= 1.0 for s in point['arms']['beit']['accuracy'])
  table = summary['points']['0']['table']
  assert table['hybrid']['vs_baseline']['accuracy']['differences'] == pytest.approx(
      np.subtract(point['arms']['hybrid']['accuracy'], point['arms']['beit']['accuracy']).tolist())


def test_a_size_too_small_for_the_folds_is_refused_before_any_training(tiny_config, tmp_path, fake, trained):
  config = _nested_config(tiny_config)
  config.ablation.curve_arms = ('beit',)
  for sizes, inner_cv, batch_size, message in [
      ((50, 2), 2, 16, 'ablation.curve_sizes entry 2: the smallest class has 2 images in the pool, too few for '
                       'search.cv=3 outer folds: raise ablation.curve_sizes entry 2 or lower --config.search.cv / '
                       '--config.ablation.inner_cv'),
      ((50, 4), 3, 16, 'ablation.curve_sizes entry 4: an outer training set can hold only 2 images of the smallest '
                       'class, too few for ablation.inner_cv=3 inner split'),
      ((50, 10), 2, 64, 'ablation.curve_sizes entry 10: an inner training set holds 33 images, fewer than '
                        'optim.batch_size 64')]:
    config.ablation.curve_sizes, config.ablation.inner_cv, config.optim.batch_size = sizes, inner_cv, batch_size
    with pytest.raises(ConfigError, match=message):
      experiment.ablation(config, str(tmp_path), log=None, build_task=fake)
  assert not trained  # Refused before any model trained.


def test_an_ablation_run_resumes_without_training_again(tiny_config, tmp_path, fake, trained):
  config = _nested_config(tiny_config)
  config.ablation.arms = ('beit',)
  first = experiment.ablation(config, str(tmp_path), log=None, build_task=fake)
  trained.clear()
  calls = []
  original = engine_lib.Engine._train_group
  engine_lib.Engine._train_group = lambda self, *a: calls.append(1) or original(self, *a)
  try:
    again = experiment.ablation(config, str(tmp_path), log=None, build_task=fake)
  finally:
    engine_lib.Engine._train_group = original
  assert not calls
  assert again['points']['0']['arms']['beit']['accuracy'] == first['points']['0']['arms']['beit']['accuracy']


def test_the_report_holds_every_row_size_and_pair(tiny_config, tmp_path, fake, trained):
  # The checkpoint's architecture differs from the config's BEiT in a field the config leaves unset: the fresh
  # twins are built from the checkpoint's config.json.
  beit = BeitConfig.from_dict({**{k: v for k, v in tiny_config.model.beit.items() if v is not None},
                               'use_relative_position_bias': True})
  tiny_config.model.beit.use_relative_position_bias = None  # Unset: the checkpoint's.
  weights = beit_lib.BeitModel(beit).init(jax.random.key(5), jnp.zeros((1, 8, 8, 1)))['params']
  checkpoints.save_beit(str(tmp_path / 'beit'), beit, weights)
  config = _nested_config(tiny_config)
  config.model.beit_path = str(tmp_path / 'beit')
  config.ablation.arms = ('beit', 'hybrid', 'hybrid_random_bert', 'fresh_beit')
  config.ablation.curve_sizes, config.ablation.curve_arms = (20,), ('beit', 'fresh_beit')
  config.optim.batch_size = 4
  out = tmp_path / 'out'
  summary = experiment.ablation(config, str(out), log=None, commands=['python -m experiments.ablation ...'],
                                build_task=fake)
  for name in ('report.md', 'ablation.json', 'ablation_bars.png', 'learning_curve.png', 'training_curves.png'):
    assert os.path.getsize(out / name) > 0, name
  report = (out / 'report.md').read_text()
  table = summary['points']['0']['table']
  for name in ('beit', 'hybrid', 'hybrid_random_bert', 'fresh_beit', 'logistic_regression', 'chance'):
    assert f'{table[name]["accuracy"]["mean"]:.4f} ± {table[name]["accuracy"]["std"]:.4f}' in report, name
  assert set(table['hybrid']) >= {'vs_baseline', 'vs_random_bert'} and table['beit']['fresh_beit_twin'] == 'fresh_beit'
  assert 'vs_baseline' not in table['fresh_beit']  # The baseline's twin is compared with it once, as its twin.
  for size in ('20',):
    curve = summary['points'][size]['table']
    assert set(curve) == {'beit', 'fresh_beit', 'logistic_regression', 'chance'} and 'vs_fresh_beit' in curve['beit']
    assert f'| {size} | {curve["beit"]["accuracy"]["mean"]:.4f}' in report
  written = json.loads((out / 'ablation.json').read_text())
  assert written['points']['20']['pool'] == 200 and written['curve_sizes'] == ['20']
  assert written['run']['model']['beit']['use_relative_position_bias'] is True  # The resolved run is recorded.
  assert written['points']['0']['arms']['beit']['train_flops'] > 0
  assert written['points']['0']['arms']['fresh_beit']['pretrained']['beit'].startswith('fresh (random init')
  assert 'python -m experiments.ablation' in report
