"""The ablation: arms share folds, the frozen arm's BERT weights never move, the corrected t-test, the report."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

import cmtl_jax
from cmtl_jax import ablation
from cmtl_jax import experiment
from cmtl_jax import folds as folds_lib
from cmtl_jax import metrics as metrics_lib
from cmtl_jax import model as model_lib
from cmtl_jax import optim
from cmtl_jax import stacked
from cmtl_jax import stats
from cmtl_jax import train
from cmtl_jax.errors import ConfigError


def test_corrected_ttest_matches_a_hand_computed_example():
  # d = 0.01..0.05: mean 0.03, sample variance 0.00025; k = 5 folds of 800 train / 200 test:
  # t = 0.03 / sqrt((1/5 + 200/800) * 0.00025) = 0.03 / sqrt(1.125e-4) = 2 sqrt(2).
  t, p = stats.corrected_resampled_ttest([0.01, 0.02, 0.03, 0.04, 0.05], n_train=800, n_test=200)
  assert t == pytest.approx(2 * math.sqrt(2), rel=1e-12)
  # Two-sided p from Student's t CDF in closed form for 4 degrees of freedom.
  u = t * t / (4 + t * t)
  cdf = 0.5 + 0.75 * math.sqrt(u) * (1 - u / 3)
  assert p == pytest.approx(2 * (1 - cdf), rel=1e-9)
  assert p == pytest.approx(0.047421, abs=1e-6)
  # Without the n_test / n_train term it is the plain paired t-test: the correction shrinks t by sqrt(0.2 / 0.45).
  plain = scipy_stats.ttest_1samp([0.01, 0.02, 0.03, 0.04, 0.05], 0.0).statistic
  assert t == pytest.approx(plain * math.sqrt(0.2 / 0.45), rel=1e-12)
  # Sign follows the difference; no spread: p 1 for no difference, 0 for a constant one.
  assert stats.corrected_resampled_ttest([-0.01, -0.02, -0.03, -0.04, -0.05], 800, 200)[0] == pytest.approx(-t)
  assert stats.corrected_resampled_ttest([0.0] * 5, 800, 200) == (0.0, 1.0)
  assert stats.corrected_resampled_ttest([0.02] * 5, 800, 200) == (math.inf, 0.0)
  with pytest.raises(ValueError):
    stats.corrected_resampled_ttest([0.1], 800, 200)


def _bits(tree):
  return jax.tree.map(lambda x: np.asarray(x).view(np.uint32).copy(), tree)


def _train_one_epoch(config, digits):
  model, params, pretrained, sources = model_lib.from_config(config, 10, train.model_rngs(config.seed)[0])
  steps = train.steps_per_epoch(len(digits.train), config.batch_size)
  tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
  before = _bits(params)
  after, _ = train.fit(model, tx, params, jnp.asarray(digits.images), jnp.asarray(digits.labels), digits.train,
                       None, num_epochs=1, batch_size=config.batch_size, num_classes=10,
                       rng=train.model_rngs(config.seed)[1], log=None)
  return before, _bits(after), pretrained, sources


def _changed(before, after):
  return jax.tree.map(lambda b, a: not np.array_equal(b, a), before, after)


def _bert_leaves(tree, layer_norm):
  leaves = jax.tree_util.tree_leaves_with_path(tree['bert_encoder'])
  return [v for path, v in leaves if ('LayerNorm' in jax.tree_util.keystr(path)) == layer_norm]


def test_frozen_arm_keeps_bert_weights_bit_identical(tiny_config):
  digits = cmtl_jax.load_dataset(tiny_config)
  frozen_config = ablation.grid_lib.apply_params(tiny_config, ablation.ARMS['hybrid_frozen_bert'])
  before, after, _, _ = _train_one_epoch(frozen_config, digits)
  changed = _changed(before, after)
  assert not any(_bert_leaves(changed, layer_norm=False))  # Attention and MLP weights: every bit the same.
  assert all(_bert_leaves(changed, layer_norm=True))         # BERT's LayerNorms train.
  assert all(jax.tree.leaves(changed['head'])) and any(jax.tree.leaves(changed['beit_encoder']))

  for arm in ('hybrid', 'hybrid_random_bert'):
    config = ablation.grid_lib.apply_params(tiny_config, ablation.ARMS[arm])
    before, after, pretrained, sources = _train_one_epoch(config, digits)
    assert all(_bert_leaves(_changed(before, after), layer_norm=False)), arm
    assert all(jax.tree.leaves(pretrained['bert_encoder'])) == (arm == 'hybrid')
    assert sources['bert']['pretrained'] == (arm == 'hybrid')


def test_freeze_keeps_negative_zero_weights():
  # x + 0.0 turns a -0.0 weight into +0.0; the frozen update is -0.0, which leaves every float unchanged.
  params = {'a': jnp.array([-0.0, 0.0, 1.5, -2.0]), 'b': jnp.array([1.0, -0.0])}
  tx = optim.make_optimizer('sgdm', 1.0, total_steps=10, warmup_fraction=0.0, weight_decay=0.1,
                            frozen={'a': True, 'b': False})
  state = tx.init(params)
  grads = {'a': jnp.ones(4), 'b': jnp.ones(2)}
  updates, _ = tx.update(grads, state, params)
  new = jax.tree.map(lambda p, u: p + u, params, updates)
  assert np.array_equal(np.asarray(new['a']).view(np.uint32), np.asarray(params['a']).view(np.uint32))
  assert not np.array_equal(np.asarray(new['b']), np.asarray(params['b']))


def test_arms_share_the_same_folds(tiny_config, monkeypatch):
  # Record the fold indices every arm's models are trained and scored on (the training itself is replaced).
  seen = {}

  class Recorded:  # Stands in for stacked.Stack: records the folds, returns made-up scores.

    def __init__(self, programs, params, learning_rates, train_idx, val_idx, rngs):
      del programs, params, rngs
      seen[len(seen)] = (np.asarray(train_idx), np.asarray(val_idx))
      self.models = np.arange(len(learning_rates))

    def train(self, until_epoch, images, labels, on_epoch=None):
      fake = np.tile(np.linspace(0.5, 0.9, len(self.models))[:, None], (1, until_epoch))
      return {k: fake for k in ('loss', 'seconds', *metrics_lib.METRICS)}

  monkeypatch.setattr(stacked, 'Stack', Recorded)
  config = tiny_config
  config.cv = 3
  digits = cmtl_jax.load_dataset(config)
  result = ablation.run_arms(config, list(ablation.ARMS), digits, log=None)
  assert len(seen) == len(ablation.ARMS)
  pool = np.sort(np.concatenate([digits.train, digits.val]))
  expected = folds_lib.fold_indices(digits.labels, pool, 3, config.seed)
  for train_idx, val_idx in seen.values():
    for k, (t, v) in enumerate(expected):
      np.testing.assert_array_equal(train_idx[k][train_idx[k] >= 0], t)
      np.testing.assert_array_equal(val_idx[k][val_idx[k] >= 0], v)
  assert result['fold_indices'] == [[t.tolist(), v.tolist()] for t, v in expected]
  # Scores come back per arm and fold, and compare() pairs them fold by fold.
  assert result['arms']['hybrid']['accuracy'] == pytest.approx([0.5, 0.7, 0.9])
  table = ablation.compare(result)
  assert table['hybrid']['vs_baseline']['accuracy']['differences'] == pytest.approx([0.0, 0.0, 0.0])
  assert table['hybrid']['accuracy_change']['absolute'] == pytest.approx(0.0)
  assert 'vs_baseline' not in table['beit']


@pytest.mark.parametrize('arms, message', [((), 'at least one'), (('beit', 'vit'), 'at least one'),
                                           (('beit', 'beit'), 'repeats')])
def test_bad_arms_are_refused(arms, message):
  with pytest.raises(ConfigError, match=message):
    ablation.arm_grid(arms)


def test_ablation_writes_a_filled_report(tiny_config, tmp_path):
  config = tiny_config
  config.cv = 2
  config.arms = ('beit', 'hybrid')
  config.curve_sizes = (10, 20)
  config.curve_arms = ('beit',)
  config.curve_steps = 2
  config.batch_size = 8
  # A finished grid's workdir: its best cell sets the hyperparameters, its heatmap goes into the report.
  grid_dir = tmp_path / 'grid'
  grid_dir.mkdir()
  (grid_dir / 'grid_config.json').write_text(json.dumps({'config': config.to_dict()}))
  (grid_dir / 'cv_results.json').write_text(json.dumps({
      'params': [{'learning_rate': 1e-3}, {'learning_rate': 2e-3}], 'rank_test_accuracy': [2, 1]}))
  (grid_dir / 'heatmap_adam.png').write_bytes(b'png')
  out = tmp_path / 'out'
  summary = experiment.ablation(config, str(out), str(grid_dir), log=None,
                                commands=['python -m experiments.ablation ...'])
  assert summary['config']['learning_rate'] == 2e-3
  for name in ('report.md', 'ablation.json', 'ablation_bars.png', 'learning_curve.png', 'heatmap_adam.png'):
    assert os.path.getsize(out / name) > 0, name
  report = (out / 'report.md').read_text()
  assert '![heatmap_adam.png](heatmap_adam.png)' in report and 'peak learning rate 0.002' in report
  hybrid = summary['table']['hybrid']
  assert f'{hybrid["accuracy"]["mean"]:.4f} ± {hybrid["accuracy"]["std"]:.4f}' in report
  assert 'fresh (not pretrained)' in report and 'packaged all-MiniLM-L6-v2' in report
  assert 'the 8 x 8 px images are resized to 8 x 8' in report
  assert '| 10 |' in report and '| 20 |' in report and 'python -m experiments.ablation' in report
  assert json.loads((out / 'ablation.json').read_text())['curve']['20']['pool'] == 200


def test_config_from_a_grid_workdir_takes_its_best_cell(tiny_config, tmp_path):
  grid_config = tiny_config.to_dict()
  grid_config['grid'] = {'learning_rate': [1e-3, 3e-3], 'optimizer': ['sgdm']}
  (tmp_path / 'grid_config.json').write_text(json.dumps({'config': grid_config, 'cv': 5}))
  (tmp_path / 'cv_results.json').write_text(json.dumps({
      'params': [{'learning_rate': 1e-3, 'optimizer': 'sgdm'}, {'learning_rate': 3e-3, 'optimizer': 'sgdm'}],
      'rank_test_accuracy': [2, 1]}))
  ablation_config = ablation.grid_lib.apply_params(tiny_config, {'arms': ('beit', 'hybrid'), 'cv': 3})
  config = ablation.config_from_grid(str(tmp_path), ablation_config)
  assert (config.learning_rate, config.optimizer) == (3e-3, 'sgdm')
  assert tuple(config.arms) == ('beit', 'hybrid') and config.cv == 3 and not config.grid
  assert config.beit.hidden_size == tiny_config.beit.hidden_size
