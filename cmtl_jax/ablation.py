"""The ablation: does text pretraining help the image model?

Each arm is a setting of three config keys, and all arms of a run are cells of one `GridSearchCV` with the same
stratified folds, so every comparison is paired fold by fold:

- `beit`: BEiT alone (the paper's baseline);
- `hybrid`: BEiT -> pretrained BERT layers (the paper's model);
- `hybrid_random_bert`: the same architecture with the BERT layers freshly initialised (extra capacity without
  transferred knowledge);
- `hybrid_frozen_bert`: pretrained BERT layers frozen except their LayerNorms; BEiT, adapter and head train.

`compare` turns the per-fold scores into the report's numbers: mean +- std per arm, paired differences against the
baseline and the Nadeau-Bengio corrected resampled t-test. `learning_curve` repeats the arms at a few training-set
sizes (images per class).
"""

import json
import math
import os
from typing import Callable, Optional, Sequence

import ml_collections
import numpy as np

from cmtl_jax import config as config_lib
from cmtl_jax import data
from cmtl_jax import grid as grid_lib
from cmtl_jax import metrics as metrics_lib
from cmtl_jax import stats
from cmtl_jax import train
from cmtl_jax.errors import ConfigError, MissingPathError

ARMS = {
    'beit': dict(variant='beit', bert_pretrained=True, freeze_bert=False),
    'hybrid': dict(variant='hybrid', bert_pretrained=True, freeze_bert=False),
    'hybrid_random_bert': dict(variant='hybrid', bert_pretrained=False, freeze_bert=False),
    'hybrid_frozen_bert': dict(variant='hybrid', bert_pretrained=True, freeze_bert=True),
}
BASELINE = 'beit'
PAPER_ACCURACY_GAIN = 0.128  # The paper's "+12.8 % accuracy" of the hybrid over BEiT alone.


def validate_arms(arms: Sequence[str], key: str = 'arms') -> None:
  unknown = [a for a in arms if a not in ARMS]
  if not arms or unknown:
    raise ConfigError(f'{key} must name at least one of {", ".join(ARMS)}; got {list(arms)!r}.')
  if len(set(arms)) != len(arms):
    raise ConfigError(f'{key} repeats an arm: {list(arms)!r}.')


def arm_grid(arms: Sequence[str]) -> list:
  """The arms as a `GridSearchCV` parameter grid (one single-cell grid per arm, in the given order)."""
  validate_arms(arms)
  return [{k: [v] for k, v in ARMS[arm].items()} for arm in arms]


def pretrained_sides(config, arm: str) -> dict:
  """Which sides of `arm` start from checkpoints, as the config loads them."""
  settings = ARMS[arm]
  beit = f'pretrained ({config.beit_path})' if config.beit_path else 'fresh (not pretrained)'
  if settings['variant'] == 'beit':
    bert = 'none'
  elif not settings['bert_pretrained']:
    bert = 'fresh (random init, same architecture)'
  else:
    bert = f'pretrained ({config.bert_path or "packaged all-MiniLM-L6-v2"})'
    if settings['freeze_bert']:
      bert += ', frozen except LayerNorms'
  return {'beit': beit, 'bert': bert}


def run_arms(config, arms: Sequence[str], dataset: Optional[data.Dataset] = None, workdir: str = '',
             log: Optional[Callable] = print) -> dict:
  """Stratified `config.cv`-fold CV of each arm at the config's hyperparameters, on the same folds.

  Args:
    config: the hyperparameters (batch size, learning rate, optimiser, model, epochs, ...) shared by all arms.
    arms: names from `ARMS`.
    dataset: default `data.from_config(config)`; CV runs on its train + val pool, the test split is not used.
    workdir: finished arms are checkpointed here and skipped on a rerun ('' = in memory).

  Returns:
    `{'arms': {arm: {metric: [cv], 'fit_seconds': s, 'pretrained': {...}}}, 'folds': {'train': [cv],
    'val': [cv]} (sizes), 'image_shape': [H, W, C] of the dataset, 'fold_indices': [[train, val] per fold]}`.
  """
  dataset = dataset or data.from_config(config)
  search = grid_lib.GridSearchCV(config, arm_grid(arms), cv=config.cv, refit=None, score_epoch=config.score_epoch,
                                 models_per_program=config.models_per_program, log=log)
  search.fit(dataset, workdir)
  results = search.cv_results_
  out = {}
  for i, arm in enumerate(arms):
    out[arm] = {m: [float(results[f'split{k}_test_{m}'][i]) for k in range(config.cv)]
                for m in metrics_lib.METRICS}
    out[arm]['fit_seconds'] = float(results['mean_fit_time'][i]) * config.cv
    out[arm]['pretrained'] = pretrained_sides(config, arm)
  return {'arms': out,
          'folds': {'train': [len(t) for t, _ in search.folds_], 'val': [len(v) for _, v in search.folds_]},
          'image_shape': list(dataset.images.shape[1:]),
          'fold_indices': [[t.tolist(), v.tolist()] for t, v in search.folds_]}


def compare(result: dict, baseline: str = BASELINE) -> dict:
  """Per arm: mean and std of every metric over folds; against `baseline` (when it ran): per-fold paired
  differences, their mean, and the corrected resampled t-test (t, p) for each metric; for `hybrid`, the absolute
  and relative accuracy change beside the paper's +12.8 %, and its accuracy against `hybrid_random_bert` (the
  pretrained text weights against the same layers fresh)."""
  n_train, n_val = np.mean(result['folds']['train']), np.mean(result['folds']['val'])
  table = {}
  for arm, scores in result['arms'].items():
    row = {m: {'mean': float(np.mean(scores[m])), 'std': float(np.std(scores[m]))} for m in metrics_lib.METRICS}
    if baseline in result['arms'] and arm != baseline:
      row['vs_baseline'] = {}
      for m in metrics_lib.METRICS:
        diffs = np.asarray(scores[m]) - np.asarray(result['arms'][baseline][m])
        t, p = stats.corrected_resampled_ttest(diffs, n_train, n_val)
        row['vs_baseline'][m] = {'differences': diffs.tolist(), 'mean': float(diffs.mean()), 't': t, 'p': p}
    table[arm] = row
  if 'hybrid' in table and 'hybrid_random_bert' in table:  # Transferred knowledge, capacity held equal.
    diffs = np.asarray(result['arms']['hybrid']['accuracy']) - np.asarray(
        result['arms']['hybrid_random_bert']['accuracy'])
    t, p = stats.corrected_resampled_ttest(diffs, n_train, n_val)
    table['hybrid']['vs_random_bert'] = {'differences': diffs.tolist(), 'mean': float(diffs.mean()), 't': t, 'p': p}
  if 'hybrid' in table and baseline in table:
    base, hybrid = table[baseline]['accuracy']['mean'], table['hybrid']['accuracy']['mean']
    table['hybrid']['accuracy_change'] = {
        'absolute': hybrid - base, 'relative': (hybrid - base) / base if base else math.nan,
        'paper': PAPER_ACCURACY_GAIN}
  return table


def curve_epochs(config, fold_train: int) -> int:
  """Epochs for one learning-curve point: enough for `config.curve_steps` optimiser steps (at least 1), or
  `config.num_epochs` when curve_steps is 0."""
  if not config.curve_steps:
    return config.num_epochs
  return max(1, math.ceil(config.curve_steps / train.steps_per_epoch(fold_train, config.batch_size)))


def learning_curve(config, sizes: Sequence[int], arms: Sequence[str], workdir: str = '',
                   log: Optional[Callable] = print) -> dict:
  """`run_arms` at each training-set size (`train_per_class` images per class in the CV pool).

  Returns `{size: run_arms result + {'epochs': E, 'pool': n}}` (sizes as strings, for JSON).
  """
  validate_arms(arms, 'curve_arms')
  curve = {}
  for size in sizes:
    point = grid_lib.apply_params(config, {'train_per_class': int(size)})
    dataset = data.from_config(point)
    pool = len(dataset.train) + len(dataset.val)
    point.num_epochs = curve_epochs(point, pool - math.ceil(pool / point.cv))
    if log:
      log(f'learning curve: {size} images per class ({pool} in the pool), {point.num_epochs} epochs')
    result = run_arms(point, arms, dataset, os.path.join(workdir, f'curve_{size}') if workdir else '', log)
    result.update(epochs=point.num_epochs, pool=pool)
    curve[str(size)] = result
  return curve


def config_from_grid(grid_workdir: str, config) -> ml_collections.ConfigDict:
  """The config of a finished grid run in `grid_workdir` at its best cell (rank 1 of the refit metric), with the
  ablation keys (arms, learning curve, cv) taken from `config`."""
  paths = [os.path.join(grid_workdir, f) for f in ('grid_config.json', 'cv_results.json')]
  for path in paths:
    if not os.path.exists(path):
      raise MissingPathError(f'{path} not found: --grid_workdir must be the workdir of a finished '
                             f'`python -m experiments.grid_search` run.')
  try:
    with open(paths[0]) as f:
      grid_config = config_lib.base_config()
      grid_config.update(_tuples(json.load(f)['config']))
    with open(paths[1]) as f:
      results = json.load(f)
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(f'{grid_workdir!r} is not a readable grid workdir ({e.__class__.__name__}).') from None
  metric = grid_config.refit or 'accuracy'
  best = int(np.argmin(results[f'rank_test_{metric}']))
  merged = grid_lib.apply_params(grid_config, results['params'][best])
  merged.grid = ml_collections.ConfigDict()
  for key in ('arms', 'curve_sizes', 'curve_arms', 'curve_steps', 'cv'):
    merged[key] = config[key]
  config_lib.validate(merged)
  return merged


def _tuples(tree):
  """JSON lists back to the tuples the config holds."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree
