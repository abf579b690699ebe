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
import os
import time
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from cmtl_jax import config as config_lib
from cmtl_jax import data
from cmtl_jax import folds as folds_lib
from cmtl_jax import metrics as metrics_lib
from cmtl_jax import model as model_lib
from cmtl_jax import optim
from cmtl_jax import train
from cmtl_jax.errors import ConfigError

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
# The stacked program.

def device_memory_bytes() -> int:
  """Memory of the first device: the accelerator's limit, or the host's RAM on CPU."""
  device = jax.devices()[0]
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and 'bytes_limit' in stats:
    return int(stats['bytes_limit'])
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def activation_bytes(model, batch_size: int) -> int:
  """A rough upper estimate of one model's training activations for one batch (float32, kept for the backward
  pass): per layer and token ~12 hidden-wide vectors and 2 intermediate-wide ones, plus 2 attention maps."""
  beit = model.beit_config
  tokens = (beit.image_size // beit.patch_size) ** 2 + 1
  layers = [(beit.hidden_size, beit.intermediate_size, beit.num_attention_heads)] * beit.num_hidden_layers
  if model.bert_config is not None:
    bert = model.bert_config
    layers += [(bert.hidden_size, bert.intermediate_size, bert.num_attention_heads)] * bert.num_hidden_layers
  per_example = sum(tokens * (12 * h + 2 * i) + 2 * heads * tokens ** 2 for h, i, heads in layers)
  return 4 * batch_size * per_example


def auto_models_per_program(per_model_bytes: int, activation: int, vectorised: bool,
                            total_bytes: Optional[int] = None, fraction: float = 0.5) -> int:
  """How many models one program may hold within `fraction` of device memory. Every model's state lives
  throughout (params, optimiser state, gradients and update: ~4x the params+optimiser bytes); activations exist
  for every model at once when they are vectorised, else for one model at a time."""
  budget = fraction * (total_bytes or device_memory_bytes())
  if vectorised:
    return max(1, int(budget // (4 * per_model_bytes + activation)))
  return max(1, int((budget - activation) // (4 * per_model_bytes)))


def resolve_vmap_width(vmap_width: int) -> int:
  """-1 (auto): vectorise all models on GPU/TPU (0), loop over single models on CPU (1)."""
  if vmap_width >= 0:
    return vmap_width
  return 1 if jax.default_backend() == 'cpu' else 0


def fit_stacked(model, tx, params, learning_rates, images, labels, train_idx, val_idx, rngs, *,
                num_epochs: int, batch_size: int, num_classes: int, eval_batch_size: int = 256,
                label_smoothing: float = 0.0, vmap_width: int = 0, on_epoch: Optional[Callable] = None):
  """Trains M models at once in one compiled program; the stacked twin of `train.fit`.

  Args:
    params: stacked parameters, leaves `[M, ...]`.
    learning_rates: float32 `[M]` peak learning rates (injected into each model's optimiser state).
    images, labels: the whole dataset on the device (`[N, H, W, C]` uint8, `[N]` int32), shared by all models.
    train_idx, val_idx: int32 `[M, n]`, `[M, v]` per-model indices, -1 = padding.
    rngs: `[M]` PRNG keys, one stream per model (epoch e uses `fold_in(rng, e)`, as `train.fit` does).
    vmap_width: models vectorised together with `jax.vmap` (0 = all M); with 0 < k < M the stacked models are
      run in chunks of k by one compiled program, dispatched once per chunk and epoch; with 1, the single-model
      program of `train.fit` (compiled once) runs model after model. Accelerators want 0; a compute-bound CPU
      gains nothing from vectorising models and loses ~20 % (BUILD_NOTES.md, "Stacked vs loop").
    on_epoch: called with the epoch number after each epoch.

  Returns:
    (params, history): final stacked params, and `{'loss': [M, E], '<metric>': [M, E], 'seconds': [M, E]}`:
    training loss, validation scores, and wall seconds since the start at the end of each epoch (the first
    epoch includes compilation). A model whose loss or update turns NaN/inf stops updating (see
    `train.init_state`); its scores are NaN from that epoch on, and the other models are unaffected.
  """
  steps = train.steps_per_epoch(int(np.min(np.sum(np.asarray(train_idx) >= 0, axis=1))), batch_size)
  one_epoch = train.make_train_epoch(model, tx, batch_size=batch_size, steps=steps, label_smoothing=label_smoothing)
  evaluate = train.make_evaluate(model, num_classes=num_classes, batch_size=eval_batch_size)
  one_score = lambda p, idx, im, lb: metrics_lib.scores(evaluate(p, im, lb, idx))
  num_models = len(learning_rates)
  width = vmap_width or num_models
  if width == 1:
    # A vmap over one model only adds overhead: run the single-model program (the one `train.fit` compiles)
    # model after model. Chunks are integers, so indexing drops the model axis.
    train_epoch = jax.jit(one_epoch, donate_argnums=0)
    score = jax.jit(one_score)
    chunks = list(range(num_models))
  else:
    train_epoch = jax.jit(jax.vmap(one_epoch, in_axes=(0, 0, None, None, 0)), donate_argnums=0)
    score = jax.jit(jax.vmap(one_score, in_axes=(0, 0, None, None)))
    chunks = [slice(i, min(i + width, num_models)) for i in range(0, num_models, width)]
  state = jax.vmap(lambda p: train.init_state(p, tx))(params)
  state['opt'] = state['opt']._replace(
      hyperparams={**state['opt'].hyperparams, 'learning_rate': jnp.asarray(learning_rates, jnp.float32)})
  states = [jax.tree.map(lambda x, c=c: x[c], state) for c in chunks]
  del state
  train_idx, val_idx = jnp.asarray(train_idx), jnp.asarray(val_idx)
  train_parts, val_parts = [train_idx[c] for c in chunks], [val_idx[c] for c in chunks]
  history = {k: [] for k in ('loss', 'seconds', *metrics_lib.METRICS)}
  start = time.perf_counter()
  for epoch in range(1, num_epochs + 1):
    epoch_rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(rngs, epoch)
    losses, scores = [], []
    for i, c in enumerate(chunks):  # One compiled program per chunk shape.
      states[i], loss = train_epoch(states[i], epoch_rngs[c], images, labels, train_parts[i])
      # Wait for each chunk: chunks queued at once would run concurrently and fight over the CPU's threads.
      losses.append(np.atleast_1d(np.asarray(loss)))
      finite = np.atleast_1d(np.asarray(states[i]['finite']))
      scores.append({k: np.where(finite, np.atleast_1d(np.asarray(v)), np.nan)  # Diverged: no score.
                     for k, v in score(states[i]['params'], val_parts[i], images, labels).items()})
    history['loss'].append(np.concatenate(losses))
    for k in metrics_lib.METRICS:
      history[k].append(np.concatenate([s[k] for s in scores]))
    history['seconds'].append(np.full(num_models, time.perf_counter() - start))
    if on_epoch:
      on_epoch(epoch)
  join = jnp.stack if width == 1 else jnp.concatenate
  params = jax.tree.map(lambda *xs: join(xs), *[s['params'] for s in states])
  return params, {k: np.stack(v, axis=1) for k, v in history.items()}


# ---------------------------------------------------------------------------------------------------------------
# Results in scikit-learn's shape.

def rank(scores: np.ndarray) -> np.ndarray:
  """sklearn's ranking: 1 = best, ties share the lowest rank ('min'), NaN (diverged) ranks last."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  scores = np.asarray(scores, np.float64)
  if np.all(np.isnan(scores)):
    return np.ones(len(scores), np.int32)
  scores = np.nan_to_num(scores, nan=np.nanmin(scores) - 1)
  return stats.rankdata(-scores, method='min').astype(np.int32)


def cv_results(cells: list, fold_scores: dict, fit_times: np.ndarray, score_times: np.ndarray, cv: int) -> dict:
  """`cv_results_` with sklearn's keys from per-cell, per-fold scores (`fold_scores[metric]`: `[cells, cv]`)."""
  keys = sorted({k for cell in cells for k in cell})
  results = {'mean_fit_time': fit_times.mean(1), 'std_fit_time': fit_times.std(1),
             'mean_score_time': score_times.mean(1), 'std_score_time': score_times.std(1)}
  for key in keys:
    results[f'param_{key}'] = np.ma.MaskedArray([cell.get(key) for cell in cells], [key not in c for c in cells],
                                                dtype=object)
  results['params'] = [dict(cell) for cell in cells]
  for metric in metrics_lib.METRICS:
    scores = fold_scores[metric]
    for k in range(cv):
      results[f'split{k}_test_{metric}'] = scores[:, k]
    results[f'mean_test_{metric}'] = scores.mean(1)
    results[f'std_test_{metric}'] = scores.std(1)
    results[f'rank_test_{metric}'] = rank(results[f'mean_test_{metric}'])
  return results


def _pick_epoch(history: dict, score_epoch: str, refit: str) -> dict:
  """Per-model scores at the last epoch, or at each model's best epoch of the `refit` metric."""
  if score_epoch == 'last':
    at = np.full(history[refit].shape[0], history[refit].shape[1] - 1)
  else:
    at = np.argmax(np.nan_to_num(history[refit], nan=-np.inf), axis=1)
  rows = np.arange(len(at))
  return {**{k: history[k][rows, at] for k in metrics_lib.METRICS}, 'epoch': at + 1}


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
  """

  def __init__(self, config, param_grid, *, cv: int = 5, refit: Optional[str] = 'accuracy',
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
    self.cv = cv
    self.refit = refit
    self.score_epoch_ = score_epoch
    self.models_per_program = models_per_program
    self.log = log
    self._models = {}  # Built (and pretrained-weight-loaded) models, by the config fields that shape them.
    self.cells = expand_grid(param_grid)
    self.groups = make_groups(self.cells)

  # -- one group ---------------------------------------------------------------------------------------------

  def _train_group(self, group: Group, dataset, fold_pairs, staged, progress) -> dict:
    config = apply_params(self.config, group.params)
    cells = [self.cells[i] for i in group.cells]
    lrs = [float(c.get('learning_rate', config.learning_rate)) for c in cells]
    train_idx = folds_lib.pad_stack([t for t, _ in fold_pairs])
    val_idx = folds_lib.pad_stack([v for _, v in fold_pairs])
    steps = train.steps_per_epoch(min(len(t) for t, _ in fold_pairs), config.batch_size)
    model, _, pretrained, _ = self._model(config, dataset.num_classes)
    tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
    # Models of the group: every (cell, fold), cell-major.
    members = [(c, k) for c in range(len(cells)) for k in range(self.cv)]
    width = resolve_vmap_width(config.vmap_width)
    chunk = self.models_per_program or auto_models_per_program(
        self._per_model_bytes(model, tx), activation_bytes(model, config.batch_size), vectorised=width != 1)
    histories, seconds = [], 0.0
    for start in range(0, len(members), chunk):
      part = members[start:start + chunk]
      began = time.perf_counter()
      init_rngs, rngs = (jnp.stack(r) for r in zip(*(train.model_rngs(config.seed, k) for _, k in part)))
      params = self._init(model, config, init_rngs)
      _, history = fit_stacked(
          model, tx, params, np.array([lrs[c] for c, _ in part], np.float32), *staged,
          train_idx[[k for _, k in part]], val_idx[[k for _, k in part]], rngs,
          num_epochs=config.num_epochs, batch_size=config.batch_size, num_classes=dataset.num_classes,
          eval_batch_size=config.eval_batch_size, label_smoothing=config.label_smoothing,
          vmap_width=width, on_epoch=lambda e: progress(group, len(part)))
      seconds += time.perf_counter() - began
      histories.append(history)
    history = {k: np.concatenate([h[k] for h in histories]) for k in histories[0]}
    return {'cells': group.cells, 'history': {k: v.tolist() for k, v in history.items()},
            'seconds': seconds, 'models_per_program': min(chunk, len(members)), 'num_models': len(members)}

  def _model(self, config, num_classes):
    key = (config.variant, config.bert_path, config.bert_layers, config.bert_pretrained, config.beit_path,
           json.dumps(config.beit.to_dict(), sort_keys=True), config.pooling, config.bridge_norm, num_classes)
    if key not in self._models:
      self._models[key] = model_lib.from_config(config, num_classes, jax.random.key(0))
    return self._models[key]

  def _init(self, model, config, init_rngs):
    """Stacked initial params: random leaves from each model's own stream, the pretrained weights placed in all."""
    _, loaded, pretrained, _ = self._model(config, model.num_classes)
    return model_lib.with_pretrained(model_lib.init_stacked(model, init_rngs), loaded, pretrained)

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
    dataset = dataset or data.from_config(self.config)
    pool = np.sort(np.concatenate([dataset.train, dataset.val]))
    self.folds_ = folds_lib.fold_indices(dataset.labels, pool, self.cv, self.config.seed)
    store = _GroupStore(workdir, self._fingerprint(dataset)) if workdir else None
    done = store.finished() if store else {}
    todo = [g for g in self.groups if g.index not in done]
    smallest = min(len(t) for t, _ in self.folds_)
    for group in todo:  # Refused before anything trains, not when the group's turn comes.
      batch_size = apply_params(self.config, group.params).batch_size
      if batch_size > smallest:
        raise ConfigError(f'batch_size {batch_size} is larger than a CV training fold ({smallest} examples): '
                          f'lower it or use fewer folds.')
    self.trained_groups_ = [g.index for g in todo]
    staged = data.stage(dataset)
    epochs_total = sum(apply_params(self.config, g.params).num_epochs * len(g.cells) * self.cv for g in todo)
    bar = _progress(epochs_total, self.log)
    for group in todo:
      bar.set_description(group.name)
      result = self._train_group(group, dataset, self.folds_, staged,
                                 lambda g, n: bar.update(n))
      done[group.index] = result
      if store:
        store.save(group.index, result)
      if on_group_done:
        on_group_done(group.index)
    bar.close()
    self._collect(done)
    if self.refit:
      self._refit(dataset)
    return self

  def _fingerprint(self, dataset) -> dict:
    return {'config': self.config.to_dict(), 'param_grid': _jsonable(self.param_grid), 'cv': self.cv,
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
      picked = _pick_epoch(history, self.score_epoch_, self.refit or 'accuracy')
      # A fit that diverged at any epoch scores NaN whichever epoch is picked (sklearn's error_score=nan).
      diverged = ~np.all(np.isfinite(history['loss']) & np.isfinite(history['accuracy']), axis=1)
      for j, cell in enumerate(result['cells']):
        rows = slice(j * self.cv, (j + 1) * self.cv)
        for m in metrics_lib.METRICS:
          fold_scores[m][cell] = np.where(diverged[rows], np.nan, picked[m][rows])
        self.diverged_[cell] = diverged[rows]
        epochs[cell] = picked['epoch'][rows]
        fit_times[cell] = result['seconds'] / result['num_models']
        self.histories_[cell] = {k: v[rows] for k, v in history.items()}
    score_times = np.zeros_like(fit_times)  # Validation scoring runs inside the fit program; its time is in fit.
    self.cv_results_ = cv_results(self.cells, fold_scores, fit_times, score_times, self.cv)
    self.score_epochs_ = epochs
    metric = self.refit or 'accuracy'
    self.best_index_ = int(np.argmin(self.cv_results_[f'rank_test_{metric}']))
    self.best_params_ = dict(self.cells[self.best_index_])
    self.best_score_ = float(self.cv_results_[f'mean_test_{metric}'][self.best_index_])

  def _refit(self, dataset) -> None:
    """Trains the best cell on the whole CV pool (train + val) and scores the held-out test split."""
    config = apply_params(self.config, self.best_params_)
    pool = np.sort(np.concatenate([dataset.train, dataset.val]))
    model, params, pretrained, _ = model_lib.from_config(config, dataset.num_classes, train.model_rngs(config.seed)[0])
    steps = train.steps_per_epoch(len(pool), config.batch_size)
    tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
    self.best_params_tree_, _ = train.fit(
        model, tx, params, *data.stage(dataset), pool, None, num_epochs=config.num_epochs,
        batch_size=config.batch_size, num_classes=dataset.num_classes, rng=train.model_rngs(config.seed)[1],
        eval_batch_size=config.eval_batch_size, label_smoothing=config.label_smoothing, log=None)
    self.best_model_ = model
    self.test_scores_ = train.evaluate_split(model, self.best_params_tree_, dataset, 'test',
                                             config.eval_batch_size)


def _jsonable(value):
  return json.loads(json.dumps(value, default=list))


class _GroupStore:
  """Finished groups' results as orbax checkpoints (one step per group) under `<workdir>/groups`, plus the
  fingerprint of the run that made them; a workdir made by a different config is refused."""

  def __init__(self, workdir: str, fingerprint: dict):
    os.makedirs(workdir, exist_ok=True)
    self.directory = os.path.join(os.path.abspath(workdir), 'groups')
    path = os.path.join(workdir, 'grid_config.json')
    fingerprint = _jsonable(fingerprint)
    if os.path.exists(path):
      try:
        with open(path) as f:
          existing = json.load(f)
      except (OSError, ValueError):
        raise ConfigError(f'{path} is unreadable: this workdir is not a grid run of cmtl_jax; use a new '
                          f'--workdir.') from None
      if existing != fingerprint:
        differ = sorted(_differences(existing, fingerprint))
        raise ConfigError(f'workdir {workdir!r} holds a grid run with a different config ({", ".join(differ)} '
                          f'differ): rerun with the same config to resume, or use a new --workdir.')
    else:
      tmp = path + '.tmp'
      with open(tmp, 'w') as f:
        json.dump(fingerprint, f, indent=2, sort_keys=True)
      os.replace(tmp, path)
    # A save interrupted by a kill leaves only an orbax temporary directory; it is removed here, and the group
    # counts as unfinished.
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True, cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, item_names=('results',), options=options)

  def finished(self) -> dict:
    return {step: self.manager.restore(step, args=ocp.args.Composite(results=ocp.args.JsonRestore())).results
            for step in self.manager.all_steps()}

  def save(self, index: int, result: dict) -> None:
    self.manager.save(index, args=ocp.args.Composite(results=ocp.args.JsonSave(result)), force=True)
    self.manager.wait_until_finished()


def _differences(a, b, prefix=''):
  if isinstance(a, dict) and isinstance(b, dict):
    for key in set(a) | set(b):
      yield from _differences(a.get(key), b.get(key), f'{prefix}{key}.')
  elif a != b:
    yield prefix.rstrip('.')


def _progress(total: int, log):
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, unit='model-epoch', disable=log is None, dynamic_ncols=True)
