"""Nested cross-validation of the ablation's arms on the engine: every arm tuned on its own.

The protocol (selection sits inside the loop that scores, so the scores carry no selection bias; Varma & Simon 2006,
Cawley & Talbot 2010):

- outer: stratified `search.cv` folds of the training pool, the same for every arm (paired comparisons);
- inner: inside each outer training set, `ablation.inner_cv` stratified folds (or, with inner_cv = 1, one stratified
  split holding out `data.val_fraction`), cut from that outer training set's indices only;
- selection: every arm searches the same space (`search.grid`; the config's learning rate when empty) with the same
  maximum training length (`max_epochs`); an arm's choice for an outer fold is the cell and epoch with the best mean
  inner validation score (`search.refit`) over that fold's inner splits;
- final fit: the chosen cell trains on the whole outer training set on the schedule the selection ran (it spans the
  maximum) and stops at the chosen epoch; only then is the outer fold scored. The outer fold influences nothing.

Each arm at each size is one engine (`search.engine`) with its own workdir: the selection's fits (cell x inner
split) and then the final fits, resumable.
"""

import math
import os
from typing import Callable, Optional, Sequence

import numpy as np

from cmtl_jax import data
from cmtl_jax import metrics as metrics_lib
from cmtl_jax import resolve
from cmtl_jax import task as task_lib
from cmtl_jax.ablation import arms as arms_lib
from cmtl_jax.ablation import references
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.errors import ConfigError
from cmtl_jax.search import engine as engine_lib
from cmtl_jax.search import grid as grid_lib
from cmtl_jax.train import core


def search_space(run: resolve.Run) -> dict:
  """What every arm searches: `search.grid` as lists, or the config's learning rate alone when it is empty."""
  space = run.search.param_grid
  if 'optim.num_epochs' in space:
    raise ConfigError('the ablation chooses the training length itself (the best epoch up to optim.num_epochs): '
                      'optim.num_epochs cannot be a grid key; set --config.optim.num_epochs to the maximum.')
  grid_lib.validate_grid(space or {'optim.learning_rate': [run.optim.learning_rate]})
  return space or {'optim.learning_rate': [run.optim.learning_rate]}


def _largest_batch(run: resolve.Run) -> int:
  return max(search_space(run).get('optim.batch_size', [run.optim.batch_size]))


def max_epochs(run: resolve.Run, inner_train_size: int) -> int:
  """The maximum training length of every fit at one size: `optim.num_epochs`, or enough epochs for
  `ablation.min_steps` optimiser steps on the smallest inner training set at the largest batch size searched, when
  that is longer."""
  if not run.ablation.min_steps:
    return run.optim.num_epochs
  steps = core.steps_per_epoch(inner_train_size, _largest_batch(run))
  return max(run.optim.num_epochs, math.ceil(run.ablation.min_steps / steps))


def plan_point(config, run: resolve.Run, size: int, where: str, dataset: Optional[data.Dataset] = None) -> dict:
  """The dataset, outer and inner splits and maximum epochs of one training-set size (`size` images per class;
  0 = the whole pool). Raises ConfigError naming `where` (the key that set the size) when the size cannot be
  split as the config asks or is smaller than a batch."""
  point_config = resolve.with_keys(config, {'data.train_per_class': int(size)})
  point_run = run.replace(data=run.data.replace(train_per_class=int(size)))
  dataset = dataset or data.load_dataset(point_run.data, validation=False)
  counts = np.bincount(dataset.labels[dataset.pool])
  smallest = int(counts[counts > 0].min())
  cv, inner_cv = run.search.cv, run.ablation.inner_cv
  fix = f'raise {where} or lower --config.search.cv / --config.ablation.inner_cv'
  if smallest < cv:
    raise ConfigError(f'{where}: the smallest class has {smallest} images in the pool, too few for search.cv={cv} '
                      f'outer folds: {fix}.')
  outer_train = folds_lib.smallest_train_count(smallest, cv)
  if outer_train < max(2, inner_cv):
    raise ConfigError(f'{where}: an outer training set can hold only {outer_train} images of the smallest class, '
                      f'too few for ablation.inner_cv={inner_cv} inner split(s): {fix}.')
  outer = folds_lib.fold_indices(dataset.labels, dataset.pool, cv, run.seed)
  try:
    inner = [folds_lib.inner_splits(dataset.labels, t, inner_cv, run.data.val_fraction, run.seed) for t, _ in outer]
  except ConfigError as e:
    raise ConfigError(f'{where}: {e}') from None
  smallest_inner = min(len(t) for splits in inner for t, _ in splits)
  batch = _largest_batch(run)
  if batch > smallest_inner:
    raise ConfigError(f'{where}: an inner training set holds {smallest_inner} images, fewer than optim.batch_size '
                      f'{batch}: lower --config.optim.batch_size or raise {where}.')
  return {'size': int(size), 'config': point_config, 'run': point_run, 'dataset': dataset, 'outer': outer,
          'inner': inner, 'max_epochs': max_epochs(run, smallest_inner)}


def plan(config, run: resolve.Run) -> dict:
  """Every size's `plan_point`: the table's (`data.train_per_class`, 0 = the whole pool) and each learning-curve
  size, all checked before anything trains."""
  table_size = run.data.train_per_class
  points = {table_size: plan_point(config, run, table_size, f'--config.data.train_per_class={table_size}'
                                   if table_size else 'the training pool')}
  for size in run.ablation.curve_sizes:
    if size not in points:
      points[size] = plan_point(config, run, size, f'ablation.curve_sizes entry {size}')
  return points


def _per_outer_fold(items: Sequence, inner_counts: Sequence[int]) -> list:
  """`items` listed inner split by inner split over every outer fold, cut into one list per outer fold."""
  bounds = np.cumsum([0, *inner_counts])
  return [list(items[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def choose(histories: dict, cells: list, inner_counts: Sequence[int], metric: str) -> list:
  """Per outer fold, the cell and epoch with the best mean inner validation `metric`.

  Args:
    histories: `{cell index: {metric: [splits, epochs]}}`, its splits the inner splits of every outer fold in order.
    cells: the search space's cells; inner_counts: inner splits per outer fold.

  Returns:
    One dict per outer fold: `cell` (index), `params` (the cell plus `optim.num_epochs`, the chosen epoch),
    `inner_score` and `curve` (the chosen cell's mean inner curve), or None when every cell diverged in that fold's
    inner fits (a cell with a diverged inner fit is never chosen, as scikit-learn scores a failed fit NaN).
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
        best = {'cell': c, 'params': {**cell, 'optim.num_epochs': epoch + 1}, 'inner_score': float(curve[epoch]),
                'curve': curve.tolist()}
    choices.append(best)
  return choices


def run_arm(config, arm: str, point: dict, workdir: str = '', log: Optional[Callable] = print,
            build_task: Callable = task_lib.ClassifierTask) -> dict:
  """Nested CV of one arm at one size (`plan_point`'s `point`), on one engine.

  Returns `{metric: [cv] outer scores, 'chosen_params': [cv], 'inner_scores': [cv], 'inner_curves': [cv][epochs],
  'inner_indices': [cv][inner][2] (the splits the selection trained on), 'fit_seconds', 'train_steps',
  'train_flops', 'params_*', 'pretrained'}`; a fold whose every inner cell diverged scores NaN, its choice None.
  """
  dataset, outer, inner, epochs = point['dataset'], point['outer'], point['inner'], point['max_epochs']
  arm_config = resolve.with_keys(point['config'], {**arms_lib.ARMS[arm], 'optim.num_epochs': epochs})
  run = point['run']
  metric = run.search.refit
  space = search_space(run)
  cells = grid_lib.expand_grid(space)
  cell_runs = [resolve.resolve(resolve.with_keys(arm_config, cell), 'train') for cell in cells]
  tasks = {}

  def task(r):
    if r.model not in tasks:
      tasks[r.model] = build_task(r.model, dataset.num_classes)
    return tasks[r.model]

  splits = [s for fold in inner for s in fold]
  engine = engine_lib.Engine(*data.stage(dataset), run.devices, workdir=workdir, what='an ablation arm',
                             fingerprint={'arm': arm, 'run': cell_runs[0].fingerprint(), 'space': space,
                                          'splits': folds_lib.fingerprint(splits), 'outer': folds_lib.fingerprint(
                                              outer), 'dataset': dataset.name} if workdir else None)
  selection = [engine_lib.Fit(f'cell{c}/split{j}', task(r), r.optim, r.augment, t, v, r.seed, j)
               for c, r in enumerate(cell_runs) for j, (t, v) in enumerate(splits)]
  trained = engine.train(selection)
  histories = {c: {k: np.array([trained[f'cell{c}/split{j}'][k] for j in range(len(splits))], np.float64)
                   for k in ('loss', metric)} for c in range(len(cells))}
  choices = choose(histories, cells, [len(f) for f in inner], metric)
  example = task(cell_runs[0])
  smallest_inner = min(len(t) for t, _ in splits)
  steps = flops = 0  # Model FLOPs of every training step (selection and final fits); scoring passes left out.
  for r in cell_runs:
    cell_steps = len(splits) * epochs * core.steps_per_epoch(smallest_inner, r.optim.batch_size)
    steps, flops = steps + cell_steps, flops + cell_steps * task(r).train_step_flops(r.optim.batch_size)
  seconds = sum(h['fit_seconds'] for h in trained.values())
  scores = {m: [math.nan] * len(outer) for m in metrics_lib.METRICS}
  by_cell = {}
  for k, choice in enumerate(choices):
    if choice is not None:
      by_cell.setdefault(choice['cell'], []).append(k)
  for c, folds in by_cell.items():
    r = cell_runs[c]
    # The selection's schedule; training stops at the latest epoch these folds chose.
    optim = r.optim.replace(schedule_epochs=epochs, num_epochs=max(choices[k]['params']['optim.num_epochs']
                                                                   for k in folds))
    finals = [engine_lib.Fit(f'final/cell{c}/outer{k}', task(r), optim, r.augment, *outer[k], r.seed, j)
              for j, k in enumerate(folds)]
    trained = engine.train(finals)
    for fit, k in zip(finals, folds):
      at = choices[k]['params']['optim.num_epochs'] - 1
      history = trained[fit.name]
      finite = np.all(np.isfinite(history['loss'][:at + 1]))
      for m in metrics_lib.METRICS:
        scores[m][k] = float(history[m][at]) if finite else math.nan
      seconds += history['fit_seconds']
    fold_steps = len(folds) * optim.num_epochs * core.steps_per_epoch(min(len(outer[k][0]) for k in folds),
                                                                     optim.batch_size)
    steps, flops = steps + fold_steps, flops + fold_steps * task(r).train_step_flops(optim.batch_size)
  return {**scores,
          'chosen_params': [c and c['params'] for c in choices],
          'inner_scores': [c and c['inner_score'] for c in choices],
          'inner_curves': [c and c['curve'] for c in choices],
          'inner_indices': _per_outer_fold([[t.tolist(), v.tolist()] for t, v in splits], [len(f) for f in inner]),
          'fit_seconds': float(seconds), 'train_steps': int(steps), 'train_flops': float(flops),
          **task_lib.param_count(example), 'pretrained': arms_lib.pretrained_sides(cell_runs[0].model, arm)}


def run_point(config, arms: Sequence[str], point: dict, workdir: str = '', log: Optional[Callable] = print,
              build_task: Callable = task_lib.ClassifierTask) -> dict:
  """Every arm of `arms` and the reference rows at one size, on the same outer folds.

  Returns `{'arms': {arm: run_arm(...)}, 'references': references.reference_scores(...), 'folds': {'train': [cv],
  'val': [cv]} (sizes), 'fold_indices': [[train, val] per outer fold], 'image_shape': [H, W, C], 'max_epochs': E,
  'pool': n, 'size': images per class (0 = all), 'search_space': {...}}`.
  """
  result = {'arms': {}}
  for arm in arms:
    if log:
      log(f'{arm}: {point["size"] or "all"} images per class, {len(point["outer"])} outer folds x '
          f'{len(point["inner"][0])} inner split(s), up to {point["max_epochs"]} epochs')
    result['arms'][arm] = run_arm(config, arm, point, os.path.join(workdir, arm) if workdir else '', log,
                                  build_task)
  outer, dataset = point['outer'], point['dataset']
  result['references'] = references.reference_scores(dataset, outer, point['run'].model.beit)
  result.update(folds={'train': [len(t) for t, _ in outer], 'val': [len(v) for _, v in outer]},
                fold_indices=[[t.tolist(), v.tolist()] for t, v in outer],
                image_shape=list(dataset.images.shape[1:]), max_epochs=point['max_epochs'],
                pool=int(sum(len(v) for _, v in outer)), size=point['size'], search_space=search_space(point['run']))
  return result
