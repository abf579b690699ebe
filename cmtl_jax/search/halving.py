"""Successive halving with epochs as the resource: scikit-learn's `HalvingGridSearchCV`, for models that continue.

Every cell starts with a few epochs; after each round only the best 1/factor of the cells (by mean CV score of
the `refit` metric) train on, `factor` times longer, until the last round reaches `num_epochs`. Unlike
scikit-learn, which refits each round from scratch with more resources, survivors continue from where they
stopped: every model trains on the learning-rate schedule of the full `num_epochs` from its first step, so a cell
that reaches the last round has trained exactly as in the exhaustive search, and its scores there are the
exhaustive search's (with `vmap_width=1`, bit for bit).

With a workdir, every finished round is checkpointed (the scores so far and the train states of the models that go
on), and a rerun of the same search resumes after the last finished round, training on as if never stopped.
"""

import math
import time
from typing import Callable, Optional

import numpy as np

from cmtl_jax import data
from cmtl_jax import metrics as metrics_lib
from cmtl_jax.search import grid
from cmtl_jax.search import results as results_lib
from cmtl_jax.search import store as store_lib
from cmtl_jax.errors import ConfigError


def schedule(num_cells: int, max_epochs: int, factor: int, min_epochs: int = 0) -> list:
  """The rounds as `(candidates, epochs)` pairs: ceil(n / factor^i) cells trained until epoch r_i.

  With `min_epochs=0`, the number of rounds is 1 + floor(log_factor(n)) (as many as the cells allow) and the
  first round's epochs are `max_epochs / factor^(rounds - 1)` (at least 1); the last round always ends at
  `max_epochs`, and rounds whose epochs would not grow are dropped.
  """
  rounds = 1 + int(math.floor(math.log(num_cells, factor) + 1e-9)) if num_cells > 1 else 1
  if min_epochs:
    rounds = min(rounds, 1 + max(0, math.ceil(math.log(max_epochs / min_epochs, factor) - 1e-9)))
  else:
    min_epochs = max(1, round(max_epochs / factor ** (rounds - 1)))
  epochs = [min(max_epochs, min_epochs * factor ** i) for i in range(rounds)]
  epochs[-1] = max_epochs
  plan = []
  for i, r in enumerate(epochs):
    if plan and r <= plan[-1][1]:
      continue
    plan.append((math.ceil(num_cells / factor ** i), r))
  return plan


class HalvingGridSearchCV(grid.GridSearchCV):
  """Successive halving over `param_grid` with stratified K-fold CV (see the module docstring).

  Attributes after `fit`, besides `GridSearchCV`'s (`best_*` from the last round):
    cv_results_: one row per (cell, round) the cell took part in, with scikit-learn's keys plus `iter` (the
      round) and `n_resources` (epochs trained by the end of that round). Ranks put rows of later rounds first,
      then order by mean score, as scikit-learn's halving search does.
    n_candidates_, n_resources_: cells and epochs per round; n_iterations_: rounds.
    epochs_trained_: model-epochs trained in all (each of `cv` fits of a cell counts; rounds resumed from a
      workdir included); exhaustive_epochs_: what the exhaustive search trains (cells x cv x num_epochs);
      epoch_fraction_: their ratio.
    rounds_trained_: the rounds this `fit` trained (the earlier ones were resumed from the workdir).
  """

  def __init__(self, config, param_grid, *, factor: int = 3, min_epochs: int = 0, **kwargs):
    super().__init__(config, param_grid, **kwargs)
    if any('num_epochs' in g for g in ([param_grid] if isinstance(param_grid, dict) else param_grid)):
      raise ConfigError('halving trains every cell up to num_epochs: num_epochs cannot be a grid key.')
    if factor < 2 or not 0 <= min_epochs <= config.num_epochs:
      raise ConfigError(f'halving needs factor >= 2 and 0 <= min_epochs <= num_epochs, got {factor} and '
                        f'{min_epochs}.')
    self.factor = factor
    self.min_epochs = min_epochs

  def fit(self, dataset: Optional[data.Dataset] = None, workdir: str = '', on_group_done=None,
          on_round_done: Optional[Callable[[int], None]] = None):
    """Runs the rounds (resuming after the last round finished in `workdir`), then refits the best cell.

    Args:
      dataset: the data (default: the config's dataset). CV runs on train + val; test is only for the refit.
      workdir: where each finished round is checkpointed: the scores so far and the train states of the models
        that go on (only the latest round is kept); a rerun of the same search resumes after it. '' keeps
        everything in memory.
      on_group_done: unused: a halving search's unit of progress is the round.
      on_round_done: called with a round's index after it is saved (a hook for progress or tests).
    """
    del on_group_done
    dataset = self.prepare(dataset)
    self.check_batch_sizes(self.groups)
    store = store_lib.Store(workdir, self.fingerprint(dataset), 'rounds', arrays=True, max_to_keep=1) \
        if workdir else None
    staged = self.stage(dataset)
    max_epochs = self.config.num_epochs
    plan = schedule(len(self.cells), max_epochs, self.factor, self.min_epochs)
    self.n_candidates_ = [n for n, _ in plan]
    self.n_resources_ = [r for _, r in plan]
    self.n_iterations_ = len(plan)
    self.trained_groups_ = [g.index for g in self.groups]
    self.models_per_program_ = {}
    stacks = {}  # Every model of every group: {stack number: [(cell, fold) of the stack's models, Stack]}.
    for group in self.groups:
      group_plan = self.plan_group(group, dataset, self.folds_)
      self.models_per_program_[group.index] = group_plan.chunk
      for part, stack in self.group_stacks(group_plan):
        stacks[len(stacks)] = [part, stack]
    history = {}  # (cell, fold) -> {key: [per-epoch values]}
    candidates = list(range(len(self.cells)))
    rows, self.epochs_trained_, first = [], 0, 0
    saved = store.latest() if store else None
    if saved:
      first, candidates, rows, history = self._resume(store, *saved, stacks)
    self.rounds_trained_ = list(range(first, len(plan)))
    resources = [0] + self.n_resources_
    bar = grid.progress_bar(sum(n * (resources[i + 1] - resources[i]) for i, (n, _) in enumerate(plan)
                                if i >= first) * self.cv, self.log)
    for iteration in range(first, len(plan)):
      epochs = plan[iteration][1]
      seconds = {}
      for part, stack in stacks.values():
        members = [part[m] for m in stack.models]
        bar.set_description(f'round {iteration + 1}/{len(plan)}: {len(candidates)} cells to epoch {epochs}')
        before, began = stack.epoch, time.perf_counter()
        trained = stack.train(epochs, *staged, on_epoch=lambda e, n=len(members): bar.update(n))
        self.epochs_trained_ += len(members) * (epochs - before)
        for j, member in enumerate(members):
          seconds[member] = (time.perf_counter() - began) / len(members)
          record = history.setdefault(member, {k: [] for k in trained})
          for key, values in trained.items():
            record[key] += values[j].tolist()
      for cell in candidates:
        rows.append((cell, iteration, epochs, self._scores(history, cell),
                     np.array([seconds[(cell, k)] for k in range(self.cv)])))
      if iteration + 1 < len(plan):
        means = np.array([np.mean(row[3][self.refit or 'accuracy']) for row in rows[-len(candidates):]])
        order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind='stable')  # NaN (diverged) last.
        candidates = [candidates[i] for i in order[:plan[iteration + 1][0]]]
      else:
        candidates = []  # Nothing trains on: no state to keep.
      _keep_only(stacks, set(candidates))  # Only the models that go on stay (and are saved).
      if store:
        store.save(iteration, self._progress(iteration, candidates, rows, history, stacks),
                   {str(i): stack.host_state() for i, (_, stack) in stacks.items()})
      if on_round_done:
        on_round_done(iteration)
    bar.close()
    self.exhaustive_epochs_ = len(self.cells) * self.cv * max_epochs
    self.epoch_fraction_ = self.epochs_trained_ / self.exhaustive_epochs_
    self._collect_rounds(rows, history)
    self.check_some_cell_finite()
    if self.refit:
      self.refit_best(dataset)
    return self

  def fingerprint(self, dataset) -> dict:
    return {**super().fingerprint(dataset), 'halving': {'factor': self.factor, 'min_epochs': self.min_epochs}}

  def _progress(self, iteration: int, candidates: list, rows: list, history: dict, stacks: dict) -> dict:
    """A finished round as JSON: what `_resume` needs besides the models' train states."""
    return {'round': iteration, 'candidates': candidates, 'epochs_trained': self.epochs_trained_,
            'rows': [[cell, it, epochs, {k: np.asarray(v).tolist() for k, v in scores.items()}, seconds.tolist()]
                     for cell, it, epochs, scores, seconds in rows],
            'history': [[cell, fold, record] for (cell, fold), record in history.items()],
            'stacks': [[i, stack.models.tolist(), stack.epoch] for i, (_, stack) in stacks.items()]}

  def _resume(self, store, step: int, progress: dict, stacks: dict):
    """Brings the freshly built `stacks` to the state saved after round `step`; returns what the loop needs."""
    saved = {i: (models, epoch) for i, models, epoch in progress['stacks']}
    for i in [i for i in stacks if i not in saved]:
      del stacks[i]
    for i, (models, _) in saved.items():
      stack = stacks[i][1]
      stack.keep([stack.models.tolist().index(m) for m in models])
    leaves = store.arrays(step, {str(i): stack.state_like() for i, (_, stack) in stacks.items()})
    for i, (_, epoch) in saved.items():
      stacks[i][1].restore(leaves[str(i)], epoch)
    self.epochs_trained_ = progress['epochs_trained']
    rows = [(cell, it, epochs, {k: np.asarray(v) for k, v in scores.items()}, np.asarray(seconds))
            for cell, it, epochs, scores, seconds in progress['rows']]
    history = {(cell, fold): record for cell, fold, record in progress['history']}
    return step + 1, progress['candidates'], rows, history

  def _scores(self, history: dict, cell: int) -> dict:
    """Per-fold scores of a cell at the end of its latest round (NaN for folds that diverged)."""
    fold_history = {k: np.array([history[(cell, f)][k] for f in range(self.cv)], np.float64)
                    for k in history[(cell, 0)]}
    return results_lib.pick_epoch(fold_history, self.score_epoch_, self.refit or 'accuracy')

  def _collect_rounds(self, rows: list, history: dict) -> None:
    cells = [self.cells[cell] for cell, *_ in rows]
    fold_scores = {m: np.stack([row[3][m] for row in rows]) for m in metrics_lib.METRICS}
    fit_times = np.stack([row[4] for row in rows])
    results = results_lib.cv_results(cells, fold_scores, fit_times, np.zeros_like(fit_times), self.cv)
    iters = np.array([row[1] for row in rows])
    results['iter'] = iters
    results['n_resources'] = np.array([row[2] for row in rows])
    for metric in metrics_lib.METRICS:  # Later rounds first, then by score within a round.
      ranks = np.zeros(len(rows), np.int32)
      ahead = 0
      for iteration in sorted(set(iters.tolist()), reverse=True):
        at = iters == iteration
        ranks[at] = results_lib.rank(results[f'mean_test_{metric}'][at]) + ahead
        ahead += int(at.sum())
      results[f'rank_test_{metric}'] = ranks
    self.cv_results_ = results
    self.diverged_ = np.stack([row[3]['diverged'] for row in rows])
    self.score_epochs_ = np.stack([row[3]['epoch'] for row in rows])
    self.histories_ = {}
    for (cell, fold), record in history.items():
      for key, values in record.items():
        self.histories_.setdefault(cell, {}).setdefault(key, [None] * self.cv)[fold] = values
    self.histories_ = {c: {k: np.array(v) for k, v in h.items()} for c, h in self.histories_.items()}
    metric = self.refit or 'accuracy'
    self.best_index_ = int(np.argmin(results[f'rank_test_{metric}']))
    self.best_params_ = dict(cells[self.best_index_])
    self.best_score_ = float(results[f'mean_test_{metric}'][self.best_index_])


def _keep_only(stacks: dict, cells: set) -> None:
  """Drops from `stacks` ({number: [members, Stack]}) every model whose cell is not in `cells`."""
  for i, (part, stack) in list(stacks.items()):
    keep = [j for j, m in enumerate(stack.models) if part[m][0] in cells]
    if not keep:
      del stacks[i]
    elif len(keep) < len(stack.models):
      stack.keep(keep)
