"""GridSearchCV over any config keys with stratified K-fold CV, folds x learning rates trained at once.

Cells (one per parameter combination) are grouped by everything but the learning rate; one jit-compiled program
per group trains every fold x learning rate of the group as stacked parameters under `jax.vmap`, each model with
its own fold, its own PRNG stream and its own injected learning rate. Finished groups are checkpointed with orbax,
so a rerun of the same command skips them.
"""

import dataclasses
import itertools
import json
import math
import time
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cmtl_jax import config as config_lib
from cmtl_jax import data
from cmtl_jax import metrics as metrics_lib
from cmtl_jax.models import build as model_lib
from cmtl_jax import optim
from cmtl_jax import report
from cmtl_jax import train
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.search import results as results_lib
from cmtl_jax.search import stacked
from cmtl_jax.search import store as store_lib
from cmtl_jax.errors import AllCellsDivergedError, ConfigError

SCORE_EPOCHS = ('last', 'best')


# ---------------------------------------------------------------------------------------------------------------
# Cells and groups.

def expand_grid(param_grid: Union[dict, Sequence[dict]]) -> list:
  """sklearn's ParameterGrid order: a list of dicts, one per cell (keys sorted, last key varying fastest)."""
  grids = [param_grid] if isinstance(param_grid, dict) else list(param_grid)
  cells = []
  for grid in grids:
    keys = sorted(grid)
    cells += [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
  return cells


def validate_grid(config, param_grid) -> None:
  grids = [param_grid] if isinstance(param_grid, dict) else list(param_grid)
  if not grids or not all(grids):
    raise ConfigError('the parameter grid is empty: give at least one key with at least one value.')
  for grid in grids:
    for key, values in grid.items():
      if not _has_key(config, key):
        raise ConfigError(f'grid key {key!r} is not a config key (see cmtl_jax/config.py).')
      if isinstance(values, (str, bytes)) or not len(values):
        raise ConfigError(f'grid values for {key!r} must be a non-empty list, got {values!r}.')
      if len(set(values)) != len(values):
        raise ConfigError(f'grid values for {key!r} repeat a value: {list(values)}.')
  for cell in expand_grid(param_grid):
    config_lib.validate(apply_params(config, cell))


def _has_key(config, dotted: str) -> bool:
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def apply_params(config, params: dict):
  """A copy of `config` with the (possibly dotted) keys of `params` set."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in params.items():
    *parents, last = key.split('.')
    node = config
    for part in parents:
      node = node[part]
    node[last] = type(node[last])(value) if isinstance(node[last], float) else value
  return config


def _group_key(cell: dict) -> tuple:
  return tuple(sorted((k, v) for k, v in cell.items() if k != 'learning_rate'))


@dataclasses.dataclass
class Group:
  """Cells that differ only in learning rate; trained as one stacked program (maybe in chunks of models)."""
  index: int
  params: dict            # The group's shared parameters (every grid key but learning_rate).
  cells: list             # Indices into the cell list.

  @property
  def name(self) -> str:
    return ' '.join(f'{k}={v}' for k, v in sorted(self.params.items())) or 'all'


def make_groups(cells: list) -> list:
  order = {}
  for i, cell in enumerate(cells):
    order.setdefault(_group_key(cell), []).append(i)
  return [Group(g, dict(key), members) for g, (key, members) in enumerate(order.items())]


# ---------------------------------------------------------------------------------------------------------------
# Compiled programs, shared by groups of equal shape.

# Config keys that never shape the compiled program: they reach it as arrays (learning_rate, seed) or are the
# search's own settings. Every other key is part of a program's identity.
_NOT_IN_PROGRAM = ('learning_rate', 'seed', 'grid', 'cv', 'refit', 'score_epoch', 'models_per_program', 'arms',
                   'curve_sizes', 'curve_arms', 'inner_cv', 'min_steps', 'search', 'halving_factor',
                   'halving_min_epochs', 'num_devices', 'num_epochs', 'schedule_epochs', 'pretrain')
_PROGRAMS = {}
_PROGRAMS_KEPT = 16


def programs_for(config, model, pretrained, *, steps: int, num_classes: int, width: int,
                 mesh) -> stacked.Programs:
  """The compiled programs for a group, shared by every group (of any search in this process) that would build
  the same program: jax compiles once per function object and input shape, so equal groups must share objects.
  The `_PROGRAMS_KEPT` most recent are kept."""
  program_config = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_PROGRAM}
  program_config['schedule'] = optim.schedule_epochs(config)  # How long training runs is no part of the program.
  key = (json.dumps(program_config, sort_keys=True, default=str), steps, num_classes, width,
         tuple(d.id for d in mesh.devices.flat) if mesh is not None else None)
  if key not in _PROGRAMS:
    tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
    _PROGRAMS[key] = stacked.make_programs(
        model, tx, batch_size=config.batch_size, steps=steps, num_classes=num_classes,
        eval_batch_size=config.eval_batch_size, label_smoothing=config.label_smoothing, width=width, mesh=mesh)
    while len(_PROGRAMS) > _PROGRAMS_KEPT:
      del _PROGRAMS[next(iter(_PROGRAMS))]
  return _PROGRAMS[key]


@dataclasses.dataclass
class _Plan:
  config: ml_collections.ConfigDict
  model: object
  programs: stacked.Programs
  members: list            # (cell, fold) of every model of the group, cell-major.
  learning_rates: dict     # Peak LR per cell.
  train_idx: np.ndarray    # [cv, n] and [cv, v] fold indices, -1 = padding.
  val_idx: np.ndarray
  chunk: int               # Models per program (memory).


# ---------------------------------------------------------------------------------------------------------------
# The search.

class GridSearchCV:
  """Exhaustive search over `param_grid` with stratified K-fold CV, shaped like sklearn's `GridSearchCV`.

  Attributes after `fit`:
    cv_results_: dict of arrays with sklearn's keys (`params`, `param_<k>`, `split{k}_test_<m>`, `mean_test_<m>`,
      `std_test_<m>`, `rank_test_<m>`, `mean_fit_time`, ...); `pandas.DataFrame(cv_results_)` works.
    best_index_, best_params_, best_score_: by the `refit` metric.
    test_scores_: the refit model's scores on the held-out test split (when `refit`).
    score_epoch_: 'last' or 'best': which epoch of each fit its scores come from; score_epochs_ `[cells, cv]`
      the epoch (1-based) each score was taken at.
    histories_: per cell, `{'loss' | metric: [cv, epochs]}` validation curves.
    diverged_: `[cells, cv]` True where a fit's loss or update became NaN/inf; such a fit scores NaN (sklearn's
      `error_score=nan`), so its cell's mean is NaN and ranks last.
    trained_groups_: indices of the groups this `fit` trained (the others were resumed from the workdir).
    models_per_program_: per group index, how many models each of its compiled programs held (chunking).
    folds_: the `(train_idx, val_idx)` dataset indices of every split.

  Args:
    cv: the number of stratified folds cut from the dataset's training pool (train + val), or the splits
      themselves as `(train_idx, val_idx)` pairs of dataset indices (scikit-learn's iterable of splits; nested CV
      passes inner folds of an outer training set this way). Splits never touch the held-out test split.

  Raises:
    ConfigError for a bad grid or config, before anything trains; `AllCellsDivergedError` (a ConfigError) from
    `fit` when no cell has a finite mean score, after `cv_results_` is set and before any refit (scikit-learn
    raises when all fits fail).
  """

  def __init__(self, config, param_grid, *, cv: Union[int, Sequence] = 5, refit: Optional[str] = 'accuracy',
               score_epoch: str = 'last', models_per_program: int = 0, log: Optional[Callable] = print):
    if refit is not None and refit not in metrics_lib.METRICS:
      raise ConfigError(f'unknown refit metric {refit!r}: choose one of {", ".join(metrics_lib.METRICS)}.')
    if score_epoch not in SCORE_EPOCHS:
      raise ConfigError(f'unknown score_epoch {score_epoch!r}: choose one of {", ".join(SCORE_EPOCHS)}.')
    if models_per_program < 0:
      raise ConfigError(f'models_per_program must be >= 0 (0 = automatic), got {models_per_program}.')
    config_lib.validate(config)
    validate_grid(config, param_grid)
    self.config = config
    self.param_grid = param_grid
    self._splits = None if isinstance(cv, int) else folds_lib.explicit_splits(cv)
    self.cv = cv if self._splits is None else len(self._splits)
    self.refit = refit
    self.score_epoch_ = score_epoch
    self.models_per_program = models_per_program
    self.log = log
    self._models = {}  # Built (and pretrained-weight-loaded) models, by the config fields that shape them.
    self.cells = expand_grid(param_grid)
    self.groups = make_groups(self.cells)

  # -- one group ---------------------------------------------------------------------------------------------

  def plan_group(self, group: Group, dataset, fold_pairs) -> '_Plan':
    """What training a group takes: its config, compiled programs, models and their data."""
    config = apply_params(self.config, group.params)
    cells = [self.cells[i] for i in group.cells]
    steps = train.steps_per_epoch(min(len(t) for t, _ in fold_pairs), config.batch_size)
    model, _, pretrained, _ = self._model(config, dataset.num_classes)
    width = stacked.resolve_vmap_width(config.vmap_width, self.mesh_)
    mesh = self.mesh_ if width != 1 else None
    programs = programs_for(config, model, pretrained, steps=steps, num_classes=dataset.num_classes, width=width,
                            mesh=mesh)
    # Models of the group: every (cell, fold), cell-major; `cell` indexes the search's cell list.
    members = [(c, k) for c in group.cells for k in range(self.cv)]
    chunk = self.models_per_program or stacked.auto_models_per_program(
        self._per_model_bytes(model, programs.tx), stacked.activation_bytes(model, config.batch_size),
        vectorised=width != 1, devices=mesh.size if mesh else 1)
    return _Plan(config, model, programs, members, {c: float(cell.get('learning_rate', config.learning_rate))
                                                    for c, cell in zip(group.cells, cells)},
                 folds_lib.pad_stack([t for t, _ in fold_pairs]), folds_lib.pad_stack([v for _, v in fold_pairs]),
                 min(chunk, len(members)))

  def group_stacks(self, plan: '_Plan'):
    """Yields `(members, Stack)` for each program-sized part of a group, each built when its turn comes."""
    for start in range(0, len(plan.members), plan.chunk):
      part = plan.members[start:start + plan.chunk]
      init_rngs, rngs = (jnp.stack(r) for r in zip(*(train.model_rngs(plan.config.seed, k) for _, k in part)))
      folds = [k for _, k in part]
      yield part, stacked.Stack(plan.programs, self._init(plan.model, plan.config, init_rngs),
                                np.array([plan.learning_rates[c] for c, _ in part], np.float32),
                                plan.train_idx[folds], plan.val_idx[folds], rngs)

  def _train_group(self, group: Group, dataset, fold_pairs, staged, progress) -> dict:
    plan = self.plan_group(group, dataset, fold_pairs)
    histories, seconds = [], 0.0
    for part, stack in self.group_stacks(plan):
      began = time.perf_counter()
      histories.append(stack.train(plan.config.num_epochs, *staged, on_epoch=lambda e, n=len(part): progress(n)))
      seconds += time.perf_counter() - began
      del stack
    history = {k: np.concatenate([h[k] for h in histories]) for k in histories[0]}
    return {'cells': group.cells, 'history': {k: v.tolist() for k, v in history.items()},
            'seconds': seconds, 'models_per_program': plan.chunk, 'num_models': len(plan.members)}

  def _model(self, config, num_classes):
    key = (config.variant, config.bert_path, config.bert_layers, config.bert_pretrained, config.beit_path,
           json.dumps(config.beit.to_dict(), sort_keys=True), config.pooling, config.bridge_norm, config.dtype,
           num_classes)
    if key not in self._models:
      self._models[key] = model_lib.build_model(config, num_classes, jax.random.key(0))
    return self._models[key]

  def _init(self, model, config, init_rngs):
    """Stacked initial params: random leaves from each model's own stream, the pretrained weights placed in all."""
    _, loaded, pretrained, _ = self._model(config, model.num_classes)
    return model_lib.init_stacked(model, init_rngs, loaded, pretrained)

  @staticmethod
  def _per_model_bytes(model, tx) -> int:
    shapes = jax.eval_shape(lambda: train.init_state(model_lib.init_params(model, jax.random.key(0)), tx))
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(shapes))

  # -- the whole search --------------------------------------------------------------------------------------

  def fit(self, dataset: Optional[data.Dataset] = None, workdir: str = '',
          on_group_done: Optional[Callable[[int], None]] = None) -> 'GridSearchCV':
    """Runs every group not already finished in `workdir`, then scores, ranks and (optionally) refits.

    Args:
      dataset: the data (default: the config's dataset). CV runs on train + val; test is only for the refit.
      workdir: where finished groups are checkpointed and outputs written; '' keeps everything in memory.
      on_group_done: called with a group's index after its results are saved (a hook for progress or tests).
    """
    dataset = self.prepare(dataset)
    store = store_lib.Store(workdir, self.fingerprint(dataset)) if workdir else None
    done = store.finished() if store else {}
    todo = [g for g in self.groups if g.index not in done]
    self.check_batch_sizes(todo)
    self.trained_groups_ = [g.index for g in todo]
    staged = self.stage(dataset)
    epochs_total = sum(apply_params(self.config, g.params).num_epochs * len(g.cells) * self.cv for g in todo)
    bar = progress_bar(epochs_total, self.log)
    for group in todo:
      bar.set_description(group.name)
      result = self._train_group(group, dataset, self.folds_, staged, bar.update)
      done[group.index] = result
      if store:
        store.save(group.index, result)
      if on_group_done:
        on_group_done(group.index)
    bar.close()
    self._collect(done)
    self.check_some_cell_finite()
    if self.refit:
      self.refit_best(dataset)
    return self

  def check_some_cell_finite(self) -> None:
    """Raises `AllCellsDivergedError` when every cell's mean score is NaN: there is no best cell to refit."""
    metric = self.refit or 'accuracy'
    if np.all(np.isnan(np.asarray(self.cv_results_[f'mean_test_{metric}'], np.float64))):
      rates = sorted({float(c.get('learning_rate', self.config.learning_rate)) for c in self.cells})
      raise AllCellsDivergedError(
          f'every cell of the grid diverged (its loss or update became NaN/inf in at least one fold): there is no '
          f'best cell and nothing was refit. Lower the learning rates (tried {", ".join(f"{r:g}" for r in rates)}).')

  def prepare(self, dataset: Optional[data.Dataset]) -> data.Dataset:
    """Loads the data, cuts the CV folds and lays out the devices."""
    dataset = dataset or data.load_dataset(self.config, validation=False)
    if self._splits is not None:
      folds_lib.check_splits(self._splits, dataset.test)
      self.folds_ = self._splits
    else:
      pool = np.sort(np.concatenate([dataset.train, dataset.val]))
      self.folds_ = folds_lib.fold_indices(dataset.labels, pool, self.cv, self.config.seed)
    self.mesh_ = stacked.make_mesh(self.config.num_devices)
    return dataset

  def check_batch_sizes(self, groups) -> None:
    """Refused before anything trains, not when the group's turn comes."""
    smallest = min(len(t) for t, _ in self.folds_)
    for group in groups:
      batch_size = apply_params(self.config, group.params).batch_size
      if batch_size > smallest:
        raise ConfigError(f'batch_size {batch_size} is larger than a CV training fold ({smallest} examples): '
                          f'lower it or use fewer folds.')

  def stage(self, dataset):
    """The data on the device(s), once: replicated over the mesh when there is one."""
    staged = data.stage(dataset)
    if self.mesh_ is not None:
      staged = stacked.put(staged, jax.sharding.NamedSharding(self.mesh_, jax.sharding.PartitionSpec()))
    return staged

  def fingerprint(self, dataset) -> dict:
    cv = self.cv if self._splits is None else folds_lib.fingerprint(self._splits)
    return {'config': self.config.to_dict(), 'param_grid': report.jsonable(self.param_grid), 'cv': cv,
            'score_epoch': self.score_epoch_, 'dataset': dataset.name, 'pool': len(dataset.train) + len(dataset.val)}

  def _collect(self, done: dict) -> None:
    n = len(self.cells)
    fold_scores = {m: np.full((n, self.cv), np.nan) for m in metrics_lib.METRICS}
    fit_times = np.zeros((n, self.cv))
    epochs = np.zeros((n, self.cv), np.int32)
    self.diverged_ = np.zeros((n, self.cv), bool)
    self.models_per_program_ = {g.index: done[g.index]['models_per_program'] for g in self.groups}
    self.histories_ = {}
    for group in self.groups:
      result = done[group.index]
      history = {k: np.asarray(v, np.float64) for k, v in result['history'].items()}
      picked = results_lib.pick_epoch(history, self.score_epoch_, self.refit or 'accuracy')
      for j, cell in enumerate(result['cells']):
        rows = slice(j * self.cv, (j + 1) * self.cv)
        for m in metrics_lib.METRICS:
          fold_scores[m][cell] = picked[m][rows]
        self.diverged_[cell] = picked['diverged'][rows]
        epochs[cell] = picked['epoch'][rows]
        fit_times[cell] = result['seconds'] / result['num_models']
        self.histories_[cell] = {k: v[rows] for k, v in history.items()}
    score_times = np.zeros_like(fit_times)  # Validation scoring runs inside the fit program; its time is in fit.
    self.cv_results_ = results_lib.cv_results(self.cells, fold_scores, fit_times, score_times, self.cv)
    self.score_epochs_ = epochs
    metric = self.refit or 'accuracy'
    self.best_index_ = int(np.argmin(self.cv_results_[f'rank_test_{metric}']))
    self.best_params_ = dict(self.cells[self.best_index_])
    self.best_score_ = float(self.cv_results_[f'mean_test_{metric}'][self.best_index_])

  def refit_best(self, dataset) -> None:
    """Trains the best cell on the whole CV pool (train + val) and scores the held-out test split."""
    config = apply_params(self.config, self.best_params_)
    pool = np.sort(np.concatenate([dataset.train, dataset.val]))
    model, params, pretrained, _ = model_lib.build_model(config, dataset.num_classes, train.model_rngs(config.seed)[0])
    steps = train.steps_per_epoch(len(pool), config.batch_size)
    tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
    self.best_params_tree_, _ = train.fit(
        model, tx, params, *data.stage(dataset), pool, None, num_epochs=config.num_epochs,
        batch_size=config.batch_size, num_classes=dataset.num_classes, rng=train.model_rngs(config.seed)[1],
        eval_batch_size=config.eval_batch_size, label_smoothing=config.label_smoothing, log=None)
    self.best_model_ = model
    self.test_scores_ = train.evaluate(model, self.best_params_tree_, dataset, 'test',
                                             config.eval_batch_size)


def progress_bar(total: int, log):
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, unit='model-epoch', disable=log is None, dynamic_ncols=True)
