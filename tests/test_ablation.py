"""The ablation: arms share folds, the frozen arm's BERT weights never move, the corrected t-test, the report."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.linear_model import LogisticRegression

import cmtl_jax
from cmtl_jax import ablation
from cmtl_jax import data
from cmtl_jax import experiment
from cmtl_jax.search import grid as grid_lib
from cmtl_jax.data import folds as folds_lib
from cmtl_jax import metrics as metrics_lib
from cmtl_jax.models import build as model_lib
from cmtl_jax import optim
from cmtl_jax.search import stacked
from cmtl_jax import stats
from cmtl_jax import train
from cmtl_jax.errors import AllCellsDivergedError, ConfigError


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
  model, params, pretrained, sources = model_lib.build_model(config, 10, train.model_rngs(config.seed)[0])
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

  # The other arms' optimisers move every BERT weight: one update from unit gradients (no warmup), on the path the
  # frozen arm's epoch above took.
  for arm in ('hybrid', 'hybrid_random_bert'):
    config = ablation.grid_lib.apply_params(tiny_config, {**ablation.ARMS[arm], 'warmup_fraction': 0.0})
    _, params, pretrained, sources = model_lib.build_model(config, 10, train.model_rngs(config.seed)[0])
    tx = optim.from_config(config, steps_per_epoch=10, pretrained=pretrained)
    updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    moved = jax.tree.map(lambda u: bool(np.any(np.asarray(u) != 0)), updates)
    assert all(_bert_leaves(moved, layer_norm=False)) and all(_bert_leaves(moved, layer_norm=True)), arm
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


class RecordedStack:
  """Stands in for stacked.Stack: records the indices every stack of models was given, returns made-up scores that
  rise with the epoch (so every arm chooses its last epoch) and differ by learning rate (1e-3 scores higher)."""
  seen = []

  def __init__(self, programs, params, learning_rates, train_idx, val_idx, rngs):
    del programs, params, rngs
    RecordedStack.seen.append((np.asarray(train_idx), np.asarray(val_idx)))
    self.learning_rates = np.asarray(learning_rates)
    self.models = np.arange(len(learning_rates))

  def train(self, until_epoch, images, labels, on_epoch=None):
    rising = np.linspace(0.3, 0.6, until_epoch)[None, :] + 0.2 * (self.learning_rates[:, None] > 5e-4)
    history = {k: rising for k in metrics_lib.METRICS}
    return {**history, 'loss': 1 - rising, 'seconds': np.ones_like(rising)}


@pytest.fixture
def quick_references(monkeypatch):
  """The pixel logistic regression stopped at a loose tolerance: these tests need its row, not its convergence
  (`test_logistic_regression_row_is_scikit_learns_on_the_same_folds` checks the real one)."""
  monkeypatch.setattr(ablation, 'logistic_regression', lambda: LogisticRegression(max_iter=2000, tol=1e-2))


@pytest.fixture
def recorded(monkeypatch, quick_references):
  del quick_references
  RecordedStack.seen = []
  monkeypatch.setattr(stacked, 'Stack', RecordedStack)
  return RecordedStack.seen


def _nested_config(config):
  config.cv, config.inner_cv, config.val_fraction = 3, 2, 0.2
  config.arms = ('beit', 'hybrid')
  config.grid = {'learning_rate': (1e-4, 1e-3)}
  config.num_epochs, config.batch_size = 3, 16
  return config


def _inside(indices, pool):
  return np.isin(np.asarray(indices), np.asarray(pool)).all()


def test_inner_selection_sees_only_outer_training_indices(tiny_config, tmp_path, recorded):
  config = _nested_config(tiny_config)
  summary = experiment.ablation(config, str(tmp_path), log=None)
  recorded_json = json.loads((tmp_path / 'ablation.json').read_text())
  point = recorded_json['points']['0']
  outer = point['fold_indices']
  for arm in config.arms:
    inner = point['arms'][arm]['inner_indices']
    assert len(inner) == config.cv
    for (outer_train, outer_val), splits in zip(outer, inner):
      assert len(splits) == config.inner_cv
      for inner_train, inner_val in splits:  # Only outer-training examples, never the outer fold that scores.
        assert _inside(inner_train, outer_train) and _inside(inner_val, outer_train)
        assert not np.isin(inner_val, outer_val).any() and not np.isin(inner_train, outer_val).any()
  # What the stacks actually trained on agrees: selection stacks saw inner splits, final stacks the outer folds.
  outer_sets = [set(t) for t, _ in outer]
  for train_idx, val_idx in recorded:
    for t, v in zip(train_idx, val_idx):
      t, v = set(t[t >= 0].tolist()), set(v[v >= 0].tolist())
      assert any(t <= o for o in outer_sets), 'a stack trained on examples of no single outer training set'
      if not any(t == o for o in outer_sets):  # A selection fit: its validation side is inside that outer set.
        assert any(t | v <= o for o in outer_sets)
  assert summary['points']['0']['table']['hybrid']['vs_baseline']['accuracy']['mean'] == pytest.approx(0.0)


@pytest.mark.slow
def test_each_arm_records_its_own_choice_per_outer_fold(tiny_config, tmp_path, quick_references):
  # A real tiny run (slow tier: real MiniLM training; the default tier checks the choices on recorded stacks): BEiT alone (every weight fresh) learns only at the larger learning rate, the hybrid's
  # pretrained post-LN BERT layer (MiniLM's first: the stand-in learns at both) only at the smaller one.
  tiny_config.bert_path = ''
  config = _nested_config(tiny_config)
  config.cv, config.inner_cv, config.num_epochs, config.batch_size = 2, 1, 2, 32
  config.grid = {'learning_rate': (1e-5, 3e-3)}
  experiment.ablation(config, str(tmp_path), log=None)
  chosen = {arm: r['chosen_params'] for arm, r in
            json.loads((tmp_path / 'ablation.json').read_text())['points']['0']['arms'].items()}
  assert [c['learning_rate'] for c in chosen['beit']] == [3e-3, 3e-3]
  assert [c['learning_rate'] for c in chosen['hybrid']] == [1e-5, 1e-5]
  assert all(1 <= c['num_epochs'] <= 2 for arm in chosen for c in chosen[arm])
  report = (tmp_path / 'report.md').read_text()
  for arm in ('beit', 'hybrid'):
    line = next(l for l in report.splitlines() if l.startswith(f'| {arm} | fold 0:'))
    for k, c in enumerate(chosen[arm]):
      assert f'fold {k}: learning_rate {c["learning_rate"]:g}, num_epochs {c["num_epochs"]}' in line


def test_logistic_regression_row_is_scikit_learns_on_the_same_folds(tiny_config, digits):
  from sklearn.model_selection import StratifiedKFold  # pylint: disable=g-import-not-at-top
  pool = np.sort(np.concatenate([digits.train, digits.val]))
  outer = folds_lib.fold_indices(digits.labels, pool, 3, 0)
  got = ablation.reference_scores(digits, outer, image_size=6, num_channels=1)
  # The same folds cut independently, the pixels resized to 6 px as the models see them, sklearn at its defaults.
  splitter = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
  for k, (train_pos, val_pos) in enumerate(splitter.split(pool, digits.labels[pool])):
    features = np.asarray(data.preprocess(jnp.asarray(digits.images[pool]), 6, 1)).reshape(len(pool), -1)
    fitted = LogisticRegression(max_iter=2000).fit(features[train_pos], digits.labels[pool][train_pos])
    assert got['logistic_regression']['accuracy'][k] == fitted.score(features[val_pos], digits.labels[pool][val_pos])
    majority = np.bincount(digits.labels[pool][train_pos]).argmax()
    assert got['chance']['accuracy'][k] == np.mean(digits.labels[pool][val_pos] == majority)
  assert 0.8 < np.mean(got['logistic_regression']['accuracy']) < 1.0


def test_corrected_interval_matches_the_t_test():
  d, n_train, n_test = [0.01, 0.02, 0.03, 0.04, 0.05], 800, 200
  low, high = stats.corrected_interval(d, n_train, n_test)
  t, p = stats.corrected_resampled_ttest(d, n_train, n_test)
  half = (high - low) / 2
  assert (low + high) / 2 == pytest.approx(0.03)
  # At p = 0.0474 < 0.05 the 95 % interval excludes zero just barely; its half-width is t_crit * se = 0.03 * t_crit / t.
  assert half == pytest.approx(0.03 * scipy_stats.t.ppf(0.975, 4) / t)
  assert low > 0
  words = ablation.verdict('a', 'b', {'mean': 0.01, 'ci95': [-0.02, 0.04], 'p': 0.4}, 5)
  assert 'includes zero' in words and 'no difference' in words and 'confirms' not in words
  # A difference against a flagged arm says so in the same sentence.
  comparison = {'mean': 0.06, 'ci95': [0.03, 0.09], 'p': 0.01}
  hybrid = {'vs_baseline': {'accuracy': comparison}}
  flagged = ablation.conclusions({'beit': {'below_logistic_regression': True}, 'hybrid': hybrid}, 3)
  assert len(flagged) == 1 and 'excludes zero' in flagged[0]
  assert 'But `beit` ends below the pixel logistic regression' in flagged[0]
  assert 'But' not in ablation.conclusions({'beit': {}, 'hybrid': hybrid}, 3)[0]


def test_a_curve_size_too_small_for_the_folds_is_refused_before_any_training(tiny_config, recorded, tmp_path):
  config = _nested_config(tiny_config)
  config.curve_arms = ('beit',)
  for sizes, inner_cv, batch_size, message in [
      ((50, 2), 2, 16, 'curve_sizes entry 2: the smallest class has 2 images in the pool, too few for cv=3 outer folds: '
                   'raise curve_sizes entry 2 or lower --config.cv / --config.inner_cv'),
      ((50, 4), 3, 16, 'curve_sizes entry 4: an outer training set can hold only 2 images of the smallest class, too few '
                   'for inner_cv=3 inner split'),
      ((50, 10), 2, 64, 'curve_sizes entry 10: an inner training set holds 33 images, fewer than batch_size 64')]:
    config.curve_sizes, config.inner_cv, config.batch_size = sizes, inner_cv, batch_size
    with pytest.raises(ConfigError, match=message):
      experiment.ablation(config, str(tmp_path), log=None)
  assert not recorded  # Refused before any model trained.


@pytest.mark.parametrize('per_class', [3, 4])
def test_train_per_class_too_small_for_cv_names_the_keys(tiny_config, per_class, recorded):
  tiny_config.train_per_class = per_class
  with pytest.raises(ConfigError, match=f'cv=5 folds is not possible.*smallest class count in the training pool '
                                        f'\\({per_class}\\): lower --config.cv or raise --config.train_per_class'):
    grid_lib.GridSearchCV(tiny_config, {'learning_rate': [1e-3]}, cv=5, log=None).fit()
  assert not recorded


def test_every_cell_diverged_refuses_to_refit(tiny_config, tmp_path):
  tiny_config.optimizer, tiny_config.grad_clip = 'sgdm', 0.0
  search = grid_lib.GridSearchCV(tiny_config, {'learning_rate': [1e8, 1e9]}, cv=2, log=None)
  with pytest.raises(AllCellsDivergedError, match='every cell of the grid diverged.*nothing was refit.*1e\\+08, '
                                                  '1e\\+09'):
    search.fit()
  assert search.diverged_.all() and np.isnan(search.cv_results_['mean_test_accuracy']).all()
  assert not hasattr(search, 'test_scores_')


def test_ablation_writes_a_filled_report(tiny_config, tmp_path, recorded):
  config = _nested_config(tiny_config)
  config.arms = ('beit', 'hybrid', 'hybrid_random_bert')
  config.curve_sizes = (10, 20)
  config.curve_arms = ('beit', 'hybrid', 'hybrid_random_bert')
  config.batch_size = 4
  out = tmp_path / 'out'
  summary = experiment.ablation(config, str(out), log=None, commands=['python -m experiments.ablation ...'])
  for name in ('report.md', 'ablation.json', 'ablation_bars.png', 'learning_curve.png', 'training_curves.png'):
    assert os.path.getsize(out / name) > 0, name
  report = (out / 'report.md').read_text()
  table = summary['points']['0']['table']
  for name in ('beit', 'hybrid', 'logistic_regression', 'chance'):
    assert f'{table[name]["accuracy"]["mean"]:.4f} ± {table[name]["accuracy"]["std"]:.4f}' in report
  assert 'logistic regression (pixels)' in report and 'chance (most frequent class)' in report
  assert 'fresh (not pretrained)' in report and tiny_config.bert_path in report  # Each side's source.
  assert 'the 8 x 8 px images are resized to 8 x 8' in report and 'learning_rate ∈ {0.0001, 0.001}' in report
  assert '| 10 |' in report and '| 20 |' in report and 'python -m experiments.ablation' in report
  assert report.count('`hybrid` vs `hybrid_random_bert`') + report.count(
      '`hybrid` scores higher than `hybrid_random_bert`') + report.count(
      '`hybrid` scores lower than `hybrid_random_bert`') == 3  # The table's size and both curve sizes.
  # The made-up scores rise with the epoch: every choice is the last epoch, which is flagged.
  assert all(table[a]['late_epoch'] for a in config.arms) and 'a chosen epoch near the maximum' in report
  written = json.loads((out / 'ablation.json').read_text())
  assert written['points']['20']['pool'] == 200 and written['curve_sizes'] == ['10', '20']
  assert written['points']['0']['arms']['hybrid']['params_transferred'] > 0
  assert written['points']['0']['arms']['beit']['params_transferred'] == 0
  assert written['points']['0']['arms']['beit']['train_flops'] > 0


def test_fresh_beit_arms_need_a_pretrained_beit_to_differ_from(tiny_config, tmp_path, recorded):
  config = _nested_config(tiny_config)
  config.arms = ('beit', 'fresh_beit')
  with pytest.raises(ConfigError, match='fresh_beit, which differ from their twins only by a fresh BEiT.*'
                                        'set --config.beit_path'):
    experiment.ablation(config, str(tmp_path), log=None)
  assert not recorded


def test_each_pretrained_beit_arm_is_compared_with_its_fresh_twin(tiny_config, tmp_path, recorded):
  from cmtl_jax.models import beit as beit_lib  # pylint: disable=g-import-not-at-top
  from cmtl_jax.models import checkpoints  # pylint: disable=g-import-not-at-top
  from cmtl_jax.models.configs import BeitConfig  # pylint: disable=g-import-not-at-top
  # The checkpoint's architecture differs from `beit.*` in a key left at its default (relative position bias), so
  # a fresh twin built from `beit.*` instead of from the checkpoint's config.json would have other parameters.
  beit = BeitConfig.from_dict({**tiny_config.beit.to_dict(), 'use_relative_position_bias': True})
  weights = beit_lib.BeitModel(beit).init(jax.random.key(5), jnp.zeros((1, 8, 8, 1)))['params']
  checkpoints.save_beit(str(tmp_path / 'beit'), beit, weights)
  config = _nested_config(tiny_config)
  config.beit_path = str(tmp_path / 'beit')
  config.arms = ('beit', 'hybrid', 'fresh_beit', 'hybrid_fresh_beit')
  config.curve_sizes, config.curve_arms = (20,), ('beit', 'fresh_beit')
  summary = experiment.ablation(config, str(tmp_path / 'out'), log=None)
  arms = summary['points']['0']['arms']
  for arm, pretrained in (('beit', True), ('hybrid', True), ('fresh_beit', False), ('hybrid_fresh_beit', False)):
    assert arms[arm]['pretrained']['beit'].startswith('pretrained' if pretrained else 'fresh (random init, '
                                                      'architecture of'), arm
  # Each twin is the same model: only where its weights start differs.
  assert arms['fresh_beit']['params_total'] == arms['beit']['params_total']
  assert arms['hybrid_fresh_beit']['params_total'] == arms['hybrid']['params_total']
  beit_size = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(weights))
  pooler = 2 * beit.hidden_size  # The BEiT pooler's LayerNorm: the hybrid does not use it.
  assert arms['hybrid']['params_transferred'] - arms['hybrid_fresh_beit']['params_transferred'] >= beit_size - pooler
  assert arms['fresh_beit']['params_transferred'] == 0 < arms['beit']['params_transferred']
  table = summary['points']['0']['table']
  assert table['beit']['fresh_beit_twin'] == 'fresh_beit'
  assert table['hybrid']['fresh_beit_twin'] == 'hybrid_fresh_beit'
  # The recorded stacks score by learning rate only, so every twin difference is zero.
  assert table['beit']['vs_fresh_beit']['accuracy']['mean'] == 0.0
  report = (tmp_path / 'out' / 'report.md').read_text()
  assert '`beit` vs `fresh_beit`' in report and '`hybrid` vs `hybrid_fresh_beit`' in report
  curve_head = next(line for line in report.splitlines() if line.startswith('| images per class |'))
  assert curve_head.endswith('| logistic regression (pixels) | beit − fresh_beit |')  # Only beit and its twin ran.
  assert report.count('`beit` vs `fresh_beit`') == 1 + len(config.curve_sizes)
  assert '`fresh_beit` vs `beit`' not in report and 'vs_baseline' not in table['fresh_beit']  # One pair, once.
