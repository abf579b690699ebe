"""The ablation: does text pretraining help the image model? Nested cross-validation, every arm tuned on its own.

Each arm is a setting of four config keys:

- `beit`: BEiT alone (the paper's baseline);
- `hybrid`: BEiT -> pretrained BERT layers (the paper's model);
- `hybrid_random_bert`: the same architecture with the BERT layers freshly initialised (extra capacity without
  transferred knowledge);
- `hybrid_frozen_bert`: pretrained BERT layers frozen except their LayerNorms; BEiT, adapter and head train;
- `fresh_beit`, `hybrid_fresh_beit`, `hybrid_random_bert_fresh_beit`: the first three with `beit_path`'s BEiT
  freshly initialised (its architecture, random weights) where the others load its weights (e.g. from
  `experiments.pretrain`): what image pretraining adds.

The protocol (nested CV: selection sits inside the loop that scores, so the scores carry no selection bias;
Varma & Simon 2006, Cawley & Talbot 2010):

- outer: stratified `cv` folds of the training pool, the same for every arm, so comparisons are paired fold by fold;
- inner: inside each outer training set, `inner_cv` stratified folds (or, with inner_cv = 1, one stratified split
  holding out `val_fraction`), cut from that outer training set's indices only;
- selection: every arm searches the same space (`config.grid`, e.g. learning rates; the config's learning rate when
  empty) with the same maximum training length (`max_epochs`); the arm's choice for an outer fold is the cell and
  epoch with the best mean inner validation score (`config.refit` metric) over that fold's inner splits;
- final fit: the chosen cell trains on the whole outer training set on the schedule the selection ran (it spans
  the maximum) and stops at the chosen epoch; only then is the outer fold scored. The outer fold influences nothing.
- references: a logistic regression on the pixels (resized as the models see them) and the most-frequent-class rule,
  on the same outer folds.

`compare` turns per-fold scores into the report's numbers: mean +- std, paired differences with their corrected
95 % interval and the Nadeau-Bengio corrected resampled t-test, against `beit` and `hybrid` against
`hybrid_random_bert` (transfer against capacity).
"""

import math
import os
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import dummy
from sklearn import linear_model
from sklearn import metrics as sk_metrics

from cmtl_jax import data
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.search import grid as grid_lib
from cmtl_jax import metrics as metrics_lib
from cmtl_jax.models import build as model_lib
from cmtl_jax import stats
from cmtl_jax import train
from cmtl_jax.errors import AllCellsDivergedError, ConfigError

ARMS = {
    'beit': dict(variant='beit', bert_pretrained=True, freeze_bert=False, beit_pretrained=True),
    'hybrid': dict(variant='hybrid', bert_pretrained=True, freeze_bert=False, beit_pretrained=True),
    'hybrid_random_bert': dict(variant='hybrid', bert_pretrained=False, freeze_bert=False, beit_pretrained=True),
    'hybrid_frozen_bert': dict(variant='hybrid', bert_pretrained=True, freeze_bert=True, beit_pretrained=True),
}
# Each arm with a pretrained BEiT (`beit_path`) and its twin: the same BEiT architecture with random weights.
FRESH_BEIT_TWINS = {'beit': 'fresh_beit', 'hybrid': 'hybrid_fresh_beit',
                    'hybrid_random_bert': 'hybrid_random_bert_fresh_beit'}
ARMS.update({twin: dict(ARMS[arm], beit_pretrained=False) for arm, twin in FRESH_BEIT_TWINS.items()})
BASELINE = 'beit'
PAPER_ACCURACY_GAIN = 0.128  # The paper's "+12.8 % accuracy" of the hybrid over BEiT alone.
REFERENCES = ('logistic_regression', 'chance')
LATE_EPOCH = 0.9  # A chosen epoch past this share of the maximum is flagged: the maximum may be too short.


def validate_arms(arms: Sequence[str], key: str = 'arms', beit_path: str = '') -> None:
  """Raises ConfigError for an empty, unknown or repeated arm, or a fresh-BEiT arm without `beit_path` (it would
  be its twin)."""
  unknown = [a for a in arms if a not in ARMS]
  if not arms or unknown:
    raise ConfigError(f'{key} must name at least one of {", ".join(ARMS)}; got {list(arms)!r}.')
  if len(set(arms)) != len(arms):
    raise ConfigError(f'{key} repeats an arm: {list(arms)!r}.')
  fresh = [a for a in arms if not ARMS[a]['beit_pretrained']]
  if fresh and not beit_path:
    raise ConfigError(f'{key} names {", ".join(fresh)}, which differ from their twins only by a fresh BEiT, but '
                      f'every BEiT is fresh without a checkpoint: set --config.beit_path (e.g. P/beit from '
                      f'python -m experiments.pretrain --workdir=P).')


def pretrained_sides(config, arm: str) -> dict:
  """Which sides of `arm` start from checkpoints, as the config loads them."""
  settings = ARMS[arm]
  if not config.beit_path:
    beit = 'fresh (not pretrained)'
  elif settings['beit_pretrained']:
    beit = f'pretrained ({config.beit_path})'
  else:
    beit = f'fresh (random init, architecture of {config.beit_path})'
  if settings['variant'] == 'beit':
    bert = 'none'
  elif not settings['bert_pretrained']:
    bert = 'fresh (random init, same architecture)'
  else:
    bert = f'pretrained ({config.bert_path or "packaged all-MiniLM-L6-v2"})'
    if settings['freeze_bert']:
      bert += ', frozen except LayerNorms'
  return {'beit': beit, 'bert': bert}


def search_space(config) -> dict:
  """What every arm searches: `config.grid` as lists, or the config's learning rate alone when it is empty."""
  space = {k: list(v) for k, v in config.grid.to_dict().items()}
  if 'num_epochs' in space:
    raise ConfigError('the ablation chooses the training length itself (the best epoch up to num_epochs): '
                      'num_epochs cannot be a grid key; set --config.num_epochs to the maximum.')
  return space or {'learning_rate': [config.learning_rate]}


# ---------------------------------------------------------------------------------------------------------------
# Planning: splits and budgets of every training-set size, checked before anything trains.

def max_epochs(config, inner_train_size: int) -> int:
  """The maximum training length of every fit at one size: `num_epochs`, or enough epochs for `min_steps`
  optimiser steps on the smallest inner training set at the largest batch size searched, when that is longer."""
  if not config.min_steps:
    return config.num_epochs
  batch = max(search_space(config).get('batch_size', [config.batch_size]))
  return max(config.num_epochs, math.ceil(config.min_steps / train.steps_per_epoch(inner_train_size, batch)))


def plan_point(config, size: int, where: str, dataset: Optional[data.Dataset] = None) -> dict:
  """The dataset, outer and inner splits and maximum epochs of one training-set size (`size` images per class;
  0 = the whole pool). Raises ConfigError naming `where` (the key that set the size) when the size cannot be
  split as the config asks or is smaller than a batch."""
  point_config = grid_lib.apply_params(config, {'train_per_class': int(size)})
  dataset = dataset or data.load_dataset(point_config, validation=False)
  pool = np.sort(np.concatenate([dataset.train, dataset.val]))
  counts = np.bincount(dataset.labels[pool])
  smallest = int(counts[counts > 0].min())
  fix = f'raise {where} or lower --config.cv / --config.inner_cv'
  if smallest < config.cv:
    raise ConfigError(f'{where}: the smallest class has {smallest} images in the pool, too few for cv={config.cv} '
                      f'outer folds: {fix}.')
  outer_train = folds_lib.smallest_train_count(smallest, config.cv)
  if outer_train < max(2, config.inner_cv):
    raise ConfigError(f'{where}: an outer training set can hold only {outer_train} images of the smallest class, '
                      f'too few for inner_cv={config.inner_cv} inner split(s): {fix}.')
  outer = folds_lib.fold_indices(dataset.labels, pool, config.cv, config.seed)
  try:
    inner = [folds_lib.inner_splits(dataset.labels, t, config.inner_cv, config.val_fraction, config.seed)
             for t, _ in outer]
  except ConfigError as e:
    raise ConfigError(f'{where}: {e}') from None
  smallest_inner = min(len(t) for splits in inner for t, _ in splits)
  batch = max(search_space(config).get('batch_size', [config.batch_size]))
  if batch > smallest_inner:
    raise ConfigError(f'{where}: an inner training set holds {smallest_inner} images, fewer than batch_size {batch}: '
                      f'lower --config.batch_size or raise {where}.')
  return {'size': int(size), 'config': point_config, 'dataset': dataset, 'outer': outer, 'inner': inner,
          'max_epochs': max_epochs(config, smallest_inner)}


# ---------------------------------------------------------------------------------------------------------------
# One arm at one size.

def _per_outer_fold(items: Sequence, inner_counts: Sequence[int]) -> list:
  """`items` listed inner split by inner split over every outer fold, cut into one list per outer fold."""
  bounds = np.cumsum([0, *inner_counts])
  return [list(items[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def choose(histories: dict, cells: list, inner_counts: Sequence[int], metric: str) -> list:
  """Per outer fold, the cell and epoch with the best mean inner validation `metric`.

  Args:
    histories: the selection search's `histories_` (`{cell: {metric: [splits, epochs]}}`), its splits the inner
      splits of every outer fold in order.
    cells: the search's cells; inner_counts: inner splits per outer fold.

  Returns:
    One dict per outer fold: `cell` (index), `params` (the cell plus `num_epochs`, the chosen epoch), `inner_score`
    and `curve` (the chosen cell's mean inner curve), or None when every cell diverged in that fold's inner fits
    (a cell with a diverged inner fit is never chosen, as scikit-learn scores a failed fit NaN).
  """
  choices, start = [], 0
  for count in inner_counts:
    rows = slice(start, start + count)
    start += count
    best = None
    for c, cell in enumerate(cells):
      history = histories[c]
      if not np.all(np.isfinite(history['loss'][rows])):
        continue
      curve = np.asarray(history[metric][rows], np.float64).mean(0)
      epoch = int(np.argmax(curve))  # The earliest of equal scores.
      if best is None or curve[epoch] > best['inner_score']:
        best = {'cell': c, 'params': {**cell, 'num_epochs': epoch + 1}, 'inner_score': float(curve[epoch]),
                'curve': curve.tolist()}
    choices.append(best)
  return choices


def _parameter_counts(config, num_classes: int):
  """(counts, model): an arm's parameters in all, transferred from a checkpoint and trained (not frozen)."""
  model, params, pretrained, _ = model_lib.build_model(config, num_classes, jax.random.key(0))
  sizes = jax.tree.leaves(jax.tree.map(lambda p: int(np.prod(p.shape)), params))
  frozen = model_lib.frozen_mask(pretrained) if config.freeze_bert else jax.tree.map(lambda _: False, pretrained)
  transferred = sum(s for s, p in zip(sizes, jax.tree.leaves(pretrained)) if p)
  frozen_count = sum(s for s, f in zip(sizes, jax.tree.leaves(frozen)) if f)
  return {'params_total': sum(sizes), 'params_transferred': transferred,
          'params_trained': sum(sizes) - frozen_count}, model


def run_arm(config, arm: str, point: dict, workdir: str = '', log: Optional[Callable] = print) -> dict:
  """Nested CV of one arm at one size (`plan_point`'s `point`).

  Returns `{metric: [cv] outer scores, 'chosen_params': [cv], 'inner_scores': [cv], 'inner_curves': [cv][epochs],
  'inner_indices': [cv][inner][2] (the splits the selection was given), 'fit_seconds', 'train_steps',
  'train_flops', 'params_*', 'pretrained'}`; a fold whose every inner cell diverged scores NaN, its choice None.
  """
  dataset, outer, inner, epochs = point['dataset'], point['outer'], point['inner'], point['max_epochs']
  arm_config = grid_lib.apply_params(point['config'], {**ARMS[arm], 'num_epochs': epochs})
  arm_config.grid = {}
  metric = config.refit or 'accuracy'
  common = dict(refit=None, models_per_program=config.models_per_program, log=log)
  splits = [s for fold in inner for s in fold]
  selection = grid_lib.GridSearchCV(arm_config, search_space(config), cv=splits, score_epoch='best', **common)
  try:
    selection.fit(dataset, os.path.join(workdir, 'selection') if workdir else '')
  except AllCellsDivergedError:
    pass  # No cell is chosen in any fold (below).
  choices = choose(selection.histories_, selection.cells, [len(f) for f in inner], metric)
  counts, model = _parameter_counts(arm_config, dataset.num_classes)
  smallest_inner = min(len(t) for t, _ in splits)
  steps = flops = 0  # Model FLOPs of every training step (selection and final fits); scoring passes left out.
  for cell in selection.cells:
    batch = cell.get('batch_size', arm_config.batch_size)
    cell_steps = len(splits) * epochs * train.steps_per_epoch(smallest_inner, batch)
    steps, flops = steps + cell_steps, flops + cell_steps * model_lib.train_step_flops(model, batch)
  seconds = float(np.sum(selection.cv_results_['mean_fit_time']) * len(splits))
  scores = {m: [math.nan] * len(outer) for m in metrics_lib.METRICS}
  by_cell = {}
  for k, choice in enumerate(choices):
    if choice is not None:
      by_cell.setdefault(choice['cell'], []).append(k)
  for cell, folds in by_cell.items():
    params = selection.cells[cell]
    final_config = grid_lib.apply_params(arm_config, params)
    final_config.schedule_epochs = epochs  # The selection's schedule; training stops at the chosen epoch.
    final_config.num_epochs = max(choices[k]['params']['num_epochs'] for k in folds)
    final = grid_lib.GridSearchCV(final_config, {k: [v] for k, v in params.items()}, cv=[outer[k] for k in folds],
                                  score_epoch='last', **common)
    try:
      final.fit(dataset, os.path.join(workdir, f'final_{cell}') if workdir else '')
    except AllCellsDivergedError:
      pass  # Read below: a fold that diverged before its chosen epoch scores NaN.
    batch = final_config.batch_size
    for j, k in enumerate(folds):
      at = choices[k]['params']['num_epochs'] - 1
      finite = np.all(np.isfinite(final.histories_[0]['loss'][j, :at + 1]))
      for m in metrics_lib.METRICS:
        scores[m][k] = float(final.histories_[0][m][j, at]) if finite else math.nan
    fold_steps = len(folds) * final_config.num_epochs * train.steps_per_epoch(
        min(len(outer[k][0]) for k in folds), batch)
    steps, flops = steps + fold_steps, flops + fold_steps * model_lib.train_step_flops(model, batch)
    seconds += float(final.cv_results_['mean_fit_time'][0]) * len(folds)
  return {**scores,
          'chosen_params': [c and c['params'] for c in choices],
          'inner_scores': [c and c['inner_score'] for c in choices],
          'inner_curves': [c and c['curve'] for c in choices],
          'inner_indices': _per_outer_fold([[t.tolist(), v.tolist()] for t, v in selection.folds_],
                                           [len(f) for f in inner]),
          'fit_seconds': seconds, 'train_steps': int(steps), 'train_flops': float(flops),
          **counts, 'pretrained': pretrained_sides(config, arm)}


# ---------------------------------------------------------------------------------------------------------------
# Reference rows.

def pixel_features(dataset: data.Dataset, idx: np.ndarray, image_size: int, num_channels: int,
                   batch: int = 4096) -> np.ndarray:
  """float32 `[len(idx), image_size * image_size * num_channels]`: the images as the models see them
  (`data.preprocess`: resized, in [-1, 1]), flattened."""
  parts = [np.asarray(data.preprocess(jnp.asarray(dataset.images[idx[i:i + batch]]), image_size, num_channels))
           for i in range(0, len(idx), batch)]
  return np.concatenate(parts).reshape(len(idx), -1)


def _sk_scores(labels, predictions) -> dict:
  return {'accuracy': float(sk_metrics.accuracy_score(labels, predictions)),
          **{m: float(fn(labels, predictions, average='macro', zero_division=0))
             for m, fn in (('f1', sk_metrics.f1_score), ('precision', sk_metrics.precision_score),
                           ('recall', sk_metrics.recall_score))}}


def logistic_regression(**kwargs):
  """The pixel reference: scikit-learn's `LogisticRegression` at its defaults (L2, C = 1, lbfgs), enough
  iterations to converge on pixels."""
  return linear_model.LogisticRegression(max_iter=2000, **kwargs)


def reference_scores(dataset: data.Dataset, outer: list, image_size: int, num_channels: int) -> dict:
  """Per-fold scores of the reference rows on the outer folds: `logistic_regression` (fitted on each outer
  training set's pixel features) and `chance` (the most frequent class of the outer training set)."""
  out = {name: {m: [] for m in metrics_lib.METRICS} for name in REFERENCES}
  seconds = {name: 0.0 for name in REFERENCES}
  for train_idx, val_idx in outer:
    x_train = pixel_features(dataset, train_idx, image_size, num_channels)
    x_val = pixel_features(dataset, val_idx, image_size, num_channels)
    y_train, y_val = dataset.labels[train_idx], dataset.labels[val_idx]
    for name, estimator in (('logistic_regression', logistic_regression()),
                            ('chance', dummy.DummyClassifier(strategy='most_frequent'))):
      began = time.perf_counter()
      predictions = estimator.fit(x_train, y_train).predict(x_val)
      seconds[name] += time.perf_counter() - began
      for m, v in _sk_scores(y_val, predictions).items():
        out[name][m].append(v)
  for name in REFERENCES:
    out[name]['fit_seconds'] = seconds[name]
  return out


# ---------------------------------------------------------------------------------------------------------------
# A whole point (every arm at one size), and the comparison.

def run_point(config, arms: Sequence[str], point: dict, workdir: str = '', log: Optional[Callable] = print) -> dict:
  """Every arm of `arms` and the reference rows at one size, on the same outer folds.

  Returns `{'arms': {arm: run_arm(...)}, 'references': reference_scores(...), 'folds': {'train': [cv], 'val':
  [cv]} (sizes), 'fold_indices': [[train, val] per outer fold], 'image_shape': [H, W, C], 'max_epochs': E,
  'pool': n, 'size': images per class (0 = all), 'search_space': {...}}`.
  """
  result = {'arms': {}}
  for arm in arms:
    if log:
      log(f'{arm}: {point["size"] or "all"} images per class, {len(point["outer"])} outer folds x '
          f'{len(point["inner"][0])} inner split(s), up to {point["max_epochs"]} epochs')
    result['arms'][arm] = run_arm(config, arm, point, os.path.join(workdir, arm) if workdir else '', log)
  beit = config.beit
  result['references'] = reference_scores(point['dataset'], point['outer'], beit.image_size, beit.num_channels)
  outer, dataset = point['outer'], point['dataset']
  result.update(folds={'train': [len(t) for t, _ in outer], 'val': [len(v) for _, v in outer]},
                fold_indices=[[t.tolist(), v.tolist()] for t, v in outer],
                image_shape=list(dataset.images.shape[1:]), max_epochs=point['max_epochs'],
                pool=int(sum(len(v) for _, v in outer)), size=point['size'], search_space=search_space(config))
  return result


def _paired(a, b, n_train: float, n_val: float) -> dict:
  diffs = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  t, p = stats.corrected_resampled_ttest(diffs, n_train, n_val)
  low, high = stats.corrected_interval(diffs, n_train, n_val)
  return {'differences': diffs.tolist(), 'mean': float(diffs.mean()), 't': t, 'p': p, 'ci95': [low, high]}


def compare(result: dict, baseline: str = BASELINE) -> dict:
  """Per arm and reference row: mean and std of every metric over the outer folds. Per arm against `baseline`
  (when it ran; the baseline's fresh-BEiT twin is its `vs_fresh_beit` instead), `hybrid` against
  `hybrid_random_bert` (`vs_random_bert`) and each pretrained-BEiT arm against its fresh-BEiT twin
  (`vs_fresh_beit`, the twin's name in `fresh_beit_twin`): paired differences, their mean, corrected 95 % interval
  and t-test (t, p) for every metric; `below_logistic_regression` and `late_epoch` flags; for `hybrid`, the
  accuracy change beside the paper's +12.8 %. Arms with a NaN fold (diverged) get NaN comparisons."""
  n_train, n_val = np.mean(result['folds']['train']), np.mean(result['folds']['val'])
  rows = {**result['arms'], **result.get('references', {})}
  table = {}
  for name, scores in rows.items():
    table[name] = {m: {'mean': float(np.mean(scores[m])), 'std': float(np.std(scores[m]))}
                   for m in metrics_lib.METRICS}
  reference = table.get('logistic_regression', {}).get('accuracy', {}).get('mean', -math.inf)
  for arm, scores in result['arms'].items():
    row = table[arm]
    if baseline in result['arms'] and arm not in (baseline, FRESH_BEIT_TWINS.get(baseline)):
      row['vs_baseline'] = {m: _paired(scores[m], result['arms'][baseline][m], n_train, n_val)
                            for m in metrics_lib.METRICS}
    row['below_logistic_regression'] = bool(row['accuracy']['mean'] < reference)
    epochs = [c['num_epochs'] for c in scores['chosen_params'] if c]
    row['late_epoch'] = bool(epochs and max(epochs) > LATE_EPOCH * result['max_epochs'])
  if 'hybrid' in result['arms'] and 'hybrid_random_bert' in result['arms']:
    table['hybrid']['vs_random_bert'] = {
        m: _paired(result['arms']['hybrid'][m], result['arms']['hybrid_random_bert'][m], n_train, n_val)
        for m in metrics_lib.METRICS}
  for arm, twin in FRESH_BEIT_TWINS.items():
    if arm in result['arms'] and twin in result['arms']:
      table[arm]['vs_fresh_beit'] = {m: _paired(result['arms'][arm][m], result['arms'][twin][m], n_train, n_val)
                                     for m in metrics_lib.METRICS}
      table[arm]['fresh_beit_twin'] = twin
  if 'hybrid' in result['arms'] and baseline in result['arms']:
    base, hybrid = table[baseline]['accuracy']['mean'], table['hybrid']['accuracy']['mean']
    table['hybrid']['accuracy_change'] = {
        'absolute': hybrid - base, 'relative': (hybrid - base) / base if base else math.nan,
        'paper': PAPER_ACCURACY_GAIN}
  return table


def verdict(a: str, b: str, comparison: dict, folds: int, what: str = '') -> str:
  """One sentence on a paired accuracy comparison of arm `a` against `b`: what it shows and what it does not.
  `what` says what the difference isolates (e.g. 'transferred text knowledge, capacity held equal')."""
  d, (low, high), p = comparison['mean'], comparison['ci95'], comparison['p']
  numbers = f'{d:+.4f} accuracy (95 % interval [{low:+.4f}, {high:+.4f}], corrected t-test p = {p:.3g}, {folds} folds)'
  if not (math.isfinite(low) and math.isfinite(high)):
    return f'`{a}` vs `{b}`: no comparison (a fold diverged).'
  if low > 0 or high < 0:
    direction = 'higher' if d > 0 else 'lower'
    return (f'`{a}` scores {direction} than `{b}` by {numbers}. The interval excludes zero: on this dataset and '
            f'training-set size, with each arm tuned on its own, the difference is larger than the fold-to-fold '
            f'variation{f" ({what})" if what else ""}. It does not show the same at other sizes, on other data, '
            f'or with other backbones.')
  return (f'`{a}` vs `{b}`: {numbers}. The interval includes zero: these folds show no difference between the '
          f'two arms{f" ({what})" if what else ""}, and they do not show that the arms are equal either.')


def _caveat(table: dict, arms: Sequence[str]) -> str:
  """' But ...' when an arm of a comparison is flagged: a difference against an arm that did not reach the pixel
  logistic regression, or that chose an epoch at the end of the budget, measures its training, not the transfer."""
  below = [a for a in arms if table[a].get('below_logistic_regression')]
  late = [a for a in arms if table[a].get('late_epoch') and a not in below]
  notes = [f'`{a}` ends below the pixel logistic regression' for a in below]
  notes += [f'`{a}` chose an epoch near the maximum' for a in late]
  if not notes:
    return ''
  return (f' But {" and ".join(notes)}: the comparison measures how far training got, not what the arms can learn '
          f'(a longer maximum, --config.num_epochs, is the next run).')


def conclusions(table: dict, folds: int, baseline: str = BASELINE) -> list:
  """The report's sentences, one per comparison that ran, each with a caveat when one of its arms is flagged."""
  lines = []
  for arm, row in table.items():
    if 'vs_baseline' in row:
      what = {'hybrid': 'the pretrained BERT layers added to BEiT',
              'hybrid_random_bert': 'the same layers without text pretraining: capacity alone',
              'hybrid_frozen_bert': 'pretrained BERT layers that do not train'}.get(arm, '')
      lines.append(verdict(arm, baseline, row['vs_baseline']['accuracy'], folds, what) +
                   _caveat(table, (arm, baseline)))
  if 'vs_random_bert' in table.get('hybrid', {}):
    lines.append(verdict('hybrid', 'hybrid_random_bert', table['hybrid']['vs_random_bert']['accuracy'], folds,
                         'transferred text knowledge, capacity held equal') +
                 _caveat(table, ('hybrid', 'hybrid_random_bert')))
  for arm, twin in FRESH_BEIT_TWINS.items():
    if 'vs_fresh_beit' in table.get(arm, {}):
      lines.append(verdict(arm, twin, table[arm]['vs_fresh_beit']['accuracy'], folds,
                           'the pretrained BEiT against the same BEiT fresh') + _caveat(table, (arm, twin)))
  return lines


# ---------------------------------------------------------------------------------------------------------------
# The whole ablation.

def plan(config) -> dict:
  """Every size's `plan_point`: the table's (`train_per_class`, 0 = the whole pool) and each learning-curve size,
  all checked before anything trains."""
  points = {}
  table_size = config.train_per_class
  points[table_size] = plan_point(config, table_size, f'--config.train_per_class={table_size}' if table_size
                                  else 'the training pool')
  for size in config.curve_sizes:
    if size not in points:
      points[size] = plan_point(config, size, f'curve_sizes entry {size}')
  return points


def run(config, workdir: str = '', log: Optional[Callable] = print) -> dict:
  """The ablation a config describes: `config.arms` at `train_per_class`, and `config.curve_arms` at every
  `curve_sizes` entry, by nested CV. A size shared by both runs once. Finished searches are checkpointed under
  `workdir` (`n<size>/<arm>/...`) and resumed on a rerun.

  Returns `{'points': {size: run_point result + 'table': compare(...)}, 'table_size': size, 'curve_sizes': [...]}`
  (sizes as strings, for JSON).
  """
  validate_arms(config.arms, 'arms', config.beit_path)
  if config.curve_sizes:
    validate_arms(config.curve_arms, 'curve_arms', config.beit_path)
  search_space(config)
  points = plan(config)  # Every size is checked before any arm trains.
  wanted = {config.train_per_class: list(config.arms)}
  for size in config.curve_sizes:
    wanted.setdefault(size, [])
    wanted[size] += [a for a in config.curve_arms if a not in wanted[size]]
  out = {}
  for size, arms in wanted.items():
    result = run_point(config, [a for a in ARMS if a in arms], points[size],
                       os.path.join(workdir, f'n{size}') if workdir else '', log)
    result['table'] = compare(result)
    out[str(size)] = result
  return {'points': out, 'table_size': str(config.train_per_class),
          'curve_sizes': [str(s) for s in config.curve_sizes]}
