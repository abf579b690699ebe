"""GridSearchCV over any config keys with stratified K-fold CV, on the engine.

`BaseSearchCV.fit` is every search's: it loads the data, cuts the folds, and calls `_run_search` with
`evaluate_candidates(cells, until_epoch)`, which trains those cells' fits (cell x fold) on the engine
(`search.engine`) and records one `cv_results_` row per cell and call. `GridSearchCV` evaluates every cell once;
`HalvingGridSearchCV` (`search.halving`) evaluates shrinking sets of cells for growing numbers of epochs. As in
scikit-learn, the searches differ only there.
"""

import itertools
from typing import Callable, ClassVar, Optional, Sequence, Union

import numpy as np

from cmtl_jax import data
from cmtl_jax import metrics as metrics_lib
from cmtl_jax import resolve
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.errors import AllCellsDivergedError, ConfigError
from cmtl_jax.search import engine as engine_lib
from cmtl_jax.search import results as results_lib
from cmtl_jax.task import ClassifierTask
from cmtl_jax.train import classification

SCORE_EPOCHS = ('last', 'best')
# Groups a grid may not search: a search reads its data once, and these are the search's own or other runs' keys.
NOT_SEARCHABLE = ('data', 'search', 'ablation', 'pretrain', 'devices')


def expand_grid(param_grid: Union[dict, Sequence[dict]]) -> list:
  """sklearn's ParameterGrid order: a list of dicts, one per cell (keys sorted, last key varying fastest)."""
  grids = [param_grid] if isinstance(param_grid, dict) else list(param_grid)
  cells = []
  for grid in grids:
    keys = sorted(grid)
    cells += [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
  return cells


def validate_grid(param_grid) -> None:
  """Raises ConfigError for an empty grid, a key outside the searchable groups, or an empty or repeated list."""
  grids = [param_grid] if isinstance(param_grid, dict) else list(param_grid)
  if not grids or not all(grids):
    raise ConfigError('the parameter grid is empty: give at least one key with at least one value.')
  for grid in grids:
    for key, values in grid.items():
      if key.split('.')[0] in NOT_SEARCHABLE:
        raise ConfigError(f'grid key {key!r}: a search cannot vary the {key.split(".")[0]} group (its data are read '
                          f'once); search model.*, optim.*, augment.* or seed.')
      if isinstance(values, (str, bytes)) or not hasattr(values, '__len__') or not len(values):
        raise ConfigError(f'grid values for {key!r} must be a non-empty list, got {values!r}.')
      if len(set(values)) != len(values):
        raise ConfigError(f'grid values for {key!r} repeat a value: {list(values)}.')


def progress_bar(total: int, log):
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, unit='model-epoch', disable=log is None, dynamic_ncols=True)


class BaseSearchCV:
  """A search over `param_grid` with stratified K-fold CV, shaped like scikit-learn's `BaseSearchCV`.

  Args:
    config: the base config (every key a cell does not set).
    param_grid: `{dotted config key: [values]}` (or a list of such dicts), e.g. `{'optim.learning_rate': [1e-4,
      1e-3], 'optim.batch_size': [32, 64]}`.
    cv: the number of stratified folds cut from the dataset's training pool, or the splits themselves as
      `(train_idx, val_idx)` pairs of dataset indices (nested CV passes inner folds this way); never the test split.
    refit: the metric that ranks cells and picks the one refit on the whole pool (None: no refit).
    score_epoch: a fit's score is its 'last' epoch's, or its 'best' epoch's of the `refit` metric.
    build_task: `(model spec, num_classes) -> task` (default: the classifier `cmtl_jax.task.ClassifierTask`).
    log: None silences progress.

  Attributes after `fit`:
    kind: 'exhaustive' or 'halving'.
    cv_results_: dict of arrays with sklearn's keys (`params`, `param_<k>`, `split{k}_test_<m>`, `mean_test_<m>`,
      `std_test_<m>`, `rank_test_<m>`, `mean_fit_time`, ...); `pandas.DataFrame(cv_results_)` works.
    best_index_, best_params_, best_score_: by the `refit` metric.
    test_scores_: the refit model's scores on the held-out test split (when `refit`); best_task_ and
      best_params_tree_: the refit model.
    score_epochs_: `[rows, cv]` the epoch (1-based) each score was taken at; diverged_: `[rows, cv]` True where a
      fit's loss or update became NaN/inf (it scores NaN, sklearn's `error_score=nan`, and ranks last).
    histories_: per cell, `{'loss' | metric: [cv, epochs]}` validation curves (to the last epoch it trained).
    folds_: the `(train_idx, val_idx)` dataset indices of every split.
    units_trained_, units_resumed_, models_per_program_: the engine's (what this `fit` trained and read back).

  Raises:
    ConfigError for a bad grid or config, before anything trains; `AllCellsDivergedError` (a ConfigError) from
    `fit` when no cell has a finite mean score, after `cv_results_` is set and before any refit.
  """
  kind: ClassVar[str] = ''

  def __init__(self, config, param_grid, *, cv: Union[int, Sequence] = 5, refit: Optional[str] = 'accuracy',
               score_epoch: str = 'last', build_task: Callable = ClassifierTask, log: Optional[Callable] = print):
    if refit is not None and refit not in metrics_lib.METRICS:
      raise ConfigError(f'unknown refit metric {refit!r}: choose one of {", ".join(metrics_lib.METRICS)}.')
    if score_epoch not in SCORE_EPOCHS:
      raise ConfigError(f'unknown score_epoch {score_epoch!r}: choose one of {", ".join(SCORE_EPOCHS)}.')
    validate_grid(param_grid)
    self.run = resolve.resolve(config, 'search')  # Its data, model, optimisation and devices; the rest are args.
    self.param_grid = param_grid
    self.cells = expand_grid(param_grid)
    self.cell_runs = [resolve.resolve(resolve.with_keys(config, cell), 'train') for cell in self.cells]
    self._splits = None if isinstance(cv, int) else folds_lib.explicit_splits(cv)
    self.cv = cv if self._splits is None else len(self._splits)
    self.refit = refit
    self.score_epoch_ = score_epoch
    self.build_task = build_task
    self.log = log
    self._tasks = {}

  def task(self, model_spec, num_classes: int):
    """The task of a model spec, built once per search (its checkpoint weights read once)."""
    key = (model_spec, num_classes)
    if key not in self._tasks:
      self._tasks[key] = self.build_task(model_spec, num_classes)
    return self._tasks[key]

  # -- what a subclass defines -------------------------------------------------------------------------------

  def _run_search(self, evaluate_candidates: Callable) -> None:
    raise NotImplementedError

  def fingerprint(self, dataset) -> dict:
    cv = self.cv if self._splits is None else folds_lib.fingerprint(self._splits)
    run = {k: v for k, v in self.run.fingerprint().items() if k != 'search'}
    return {'kind': self.kind, 'run': run, 'param_grid': self.param_grid, 'cv': cv,
            'score_epoch': self.score_epoch_, 'refit': self.refit, 'dataset': dataset.name,
            'pool': int(len(dataset.pool))}

  # -- the search --------------------------------------------------------------------------------------------

  def prepare(self, dataset: Optional[data.Dataset]) -> data.Dataset:
    """Loads the data and cuts the CV folds."""
    dataset = dataset or data.load_dataset(self.run.data, validation=False,
                                           min_per_class=self.cv if self._splits is None else 0)
    if self._splits is not None:
      folds_lib.check_splits(self._splits, dataset.test)
      self.folds_ = self._splits
    else:
      self.folds_ = folds_lib.fold_indices(dataset.labels, dataset.pool, self.cv, self.run.seed)
    smallest = min(len(t) for t, _ in self.folds_)
    for run in self.cell_runs:
      if run.optim.batch_size > smallest:
        raise ConfigError(f'optim.batch_size {run.optim.batch_size} is larger than a CV training fold ({smallest} '
                          f'examples): lower it or use fewer folds.')
    return dataset

  def fits(self, cells: Sequence[int], num_classes: int) -> list:
    """The engine's fits of `cells`: every cell x fold, cell-major; fold k draws from PRNG stream k whatever the
    cell (common random numbers)."""
    fits = []
    for c in cells:
      run = self.cell_runs[c]
      task = self.task(run.model, num_classes)
      for k, (train_idx, val_idx) in enumerate(self.folds_):
        fits.append(engine_lib.Fit(f'cell{c}/fold{k}', task, run.optim, run.augment, train_idx, val_idx,
                                   run.seed, k))
    return fits

  def fit(self, dataset: Optional[data.Dataset] = None, workdir: str = '') -> 'BaseSearchCV':
    """Runs the search (resuming what `workdir` holds), then scores, ranks and (with `refit`) refits.

    Args:
      dataset: the data (default: the config's dataset). CV runs on the pool (train + val); test only scores the
        refit.
      workdir: where finished units of work are saved ('' keeps everything in memory).
    """
    dataset = self.prepare(dataset)
    images, labels = data.stage(dataset)
    engine = engine_lib.Engine(images, labels, self.run.devices, workdir=workdir,
                               fingerprint=self.fingerprint(dataset) if workdir else None)
    rows, spent = [], {}
    bar = progress_bar(0, self.log)

    def evaluate_candidates(cells: Sequence[int], until_epoch: Optional[int] = None,
                            more_results: Optional[dict] = None) -> np.ndarray:
      """Trains `cells` (indices into `self.cells`) x folds to `until_epoch` (default: each cell's num_epochs);
      returns each cell's mean score of the refit metric at its scored epoch, and records their rows."""
      fits = self.fits(cells, dataset.num_classes)
      bar.total += sum((until_epoch or f.optim.num_epochs) - engine.epochs_trained(f.name) for f in fits)
      bar.refresh()
      histories = engine.train(fits, until_epoch, on_epoch=lambda names, epoch, row: bar.update(len(names)))
      bar.total = bar.n  # Units read back from the workdir trained nothing here.
      bar.refresh()
      metric = self.refit or 'accuracy'
      means = []
      for c in cells:
        names = [f'cell{c}/fold{k}' for k in range(self.cv)]
        history = {k: np.array([histories[n][k] for n in names], np.float64) for k in histories[names[0]]
                   if k != 'fit_seconds'}
        seconds = np.array([histories[n]['fit_seconds'] - spent.get(n, 0.0) for n in names])
        for n in names:
          spent[n] = histories[n]['fit_seconds']
        scores = results_lib.pick_epoch(history, self.score_epoch_, metric)
        rows.append({'cell': c, 'scores': scores, 'fit_time': seconds, 'history': history,
                     **(more_results or {})})
        means.append(np.mean(scores[metric]))
      return np.asarray(means)

    self._run_search(evaluate_candidates)
    bar.close()
    self.engine_ = engine
    self.units_trained_, self.units_resumed_ = engine.units_trained_, engine.units_resumed_
    self.models_per_program_ = engine.models_per_program_
    self._collect(rows)
    self.check_some_cell_finite()
    if self.refit:
      self.refit_best(dataset, images, labels)
    return self

  def _collect(self, rows: list) -> None:
    """`cv_results_` and the best cell from every row; rows of later calls rank ahead of earlier ones (for one
    call: plain ranks)."""
    cells = [self.cells[r['cell']] for r in rows]
    fold_scores = {m: np.stack([r['scores'][m] for r in rows]) for m in metrics_lib.METRICS}
    fit_times = np.stack([r['fit_time'] for r in rows])
    results = results_lib.cv_results(cells, fold_scores, fit_times, np.zeros_like(fit_times), self.cv)
    extra = sorted({k for r in rows for k in r if k not in ('cell', 'scores', 'fit_time', 'history')})
    for key in extra:
      results[key] = np.array([r[key] for r in rows])
    if 'iter' in extra:
      iters = results['iter']
      for metric in metrics_lib.METRICS:  # Later rounds first, then by score within a round.
        ranks, ahead = np.zeros(len(rows), np.int32), 0
        for iteration in sorted(set(iters.tolist()), reverse=True):
          at = iters == iteration
          ranks[at] = results_lib.rank(results[f'mean_test_{metric}'][at]) + ahead
          ahead += int(at.sum())
        results[f'rank_test_{metric}'] = ranks
    self.cv_results_ = results
    self.diverged_ = np.stack([r['scores']['diverged'] for r in rows])
    self.score_epochs_ = np.stack([r['scores']['epoch'] for r in rows])
    self.histories_ = {r['cell']: r['history'] for r in rows}  # A cell's latest row holds its longest history.
    metric = self.refit or 'accuracy'
    self.best_index_ = int(np.argmin(results[f'rank_test_{metric}']))
    self.best_params_ = dict(cells[self.best_index_])
    self.best_score_ = float(results[f'mean_test_{metric}'][self.best_index_])

  def check_some_cell_finite(self) -> None:
    """Raises `AllCellsDivergedError` when every cell's mean score is NaN: there is no best cell to refit."""
    metric = self.refit or 'accuracy'
    if np.all(np.isnan(np.asarray(self.cv_results_[f'mean_test_{metric}'], np.float64))):
      rates = sorted({run.optim.learning_rate for run in self.cell_runs})
      raise AllCellsDivergedError(
          f'every cell of the grid diverged (its loss or update became NaN/inf in at least one fold): there is no '
          f'best cell and nothing was refit. Lower the learning rates (tried {", ".join(f"{r:g}" for r in rates)}).')

  def refit_best(self, dataset, images, labels) -> None:
    """Trains the best cell on the whole CV pool (train + val) and scores the held-out test split."""
    run = self.cell_runs[self.cells.index(self.best_params_)]
    task = self.task(run.model, dataset.num_classes)
    fit = engine_lib.Fit('refit', task, run.optim, run.augment, dataset.pool, np.zeros(0, np.int32), run.seed, 0)
    engine = engine_lib.Engine(images, labels, self.run.devices)
    engine.train([fit])
    self.best_task_ = task
    self.best_params_tree_ = engine.params('refit')
    self.test_scores_ = classification.evaluate(task, self.best_params_tree_, images, labels, dataset.test,
                                                run.optim.eval_batch_size)


class GridSearchCV(BaseSearchCV):
  """Exhaustive search: every cell of `param_grid` x every fold, trained to its `optim.num_epochs` (see
  `BaseSearchCV`). Cells that differ only in learning rate train as one stack of models (one compiled program)."""
  kind = 'exhaustive'

  def _run_search(self, evaluate_candidates: Callable) -> None:
    evaluate_candidates(list(range(len(self.cells))))
