"""Successive halving with epochs as the resource: scikit-learn's `HalvingGridSearchCV`, for models that continue.

Every cell starts with a few epochs; after each round only the best 1/factor of the cells (by mean CV score of
the `refit` metric) train on, `factor` times longer, until the last round reaches `num_epochs`. Unlike
scikit-learn, which refits each round from scratch with more resources, survivors continue from where they
stopped: every model trains on the learning-rate schedule of the full `num_epochs` from its first step, so a cell
that reaches the last round has trained exactly as in the exhaustive search, and its scores there are the
exhaustive search's (with `vmap_width=1`, bit for bit).

With a workdir, every group of every round is saved by the engine when it finishes (the scores so far and the train
states of the models that may go on), and a rerun of the same search resumes there, training on as if never
stopped.
"""

import math
from typing import Callable

import numpy as np

from cmtl_jax.errors import ConfigError
from cmtl_jax.search import grid


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


class HalvingGridSearchCV(grid.BaseSearchCV):
  """Successive halving over `param_grid` with stratified K-fold CV (see the module docstring and
  `grid.BaseSearchCV`).

  Attributes after `fit`, besides `BaseSearchCV`'s (`best_*` from the last round):
    cv_results_: one row per (cell, round) the cell took part in, with scikit-learn's keys plus `iter` (the
      round) and `n_resources` (epochs trained by the end of that round). Ranks put rows of later rounds first,
      then order by mean score, as scikit-learn's halving search does.
    n_candidates_, n_resources_: cells and epochs per round; n_iterations_: rounds.
    epochs_trained_: model-epochs trained in all (each of `cv` fits of a cell counts; rounds resumed from a
      workdir included); exhaustive_epochs_: what the exhaustive search trains (cells x cv x num_epochs);
      epoch_fraction_: their ratio.
  """
  kind = 'halving'

  def __init__(self, config, param_grid, *, factor: int = 3, min_epochs: int = 0, **kwargs):
    super().__init__(config, param_grid, **kwargs)
    if any('optim.num_epochs' in g for g in ([param_grid] if isinstance(param_grid, dict) else param_grid)):
      raise ConfigError('halving trains every cell up to optim.num_epochs: it cannot be a grid key.')
    num_epochs = self.run.optim.num_epochs
    if factor < 2 or not 0 <= min_epochs <= num_epochs:
      raise ConfigError(f'halving needs factor >= 2 and 0 <= min_epochs <= num_epochs, got {factor} and '
                        f'{min_epochs}.')
    self.factor = factor
    self.min_epochs = min_epochs

  def fingerprint(self, dataset) -> dict:
    return {**super().fingerprint(dataset), 'halving': {'factor': self.factor, 'min_epochs': self.min_epochs}}

  def _run_search(self, evaluate_candidates: Callable) -> None:
    max_epochs = self.run.optim.num_epochs
    plan = schedule(len(self.cells), max_epochs, self.factor, self.min_epochs)
    self.n_candidates_ = [n for n, _ in plan]
    self.n_resources_ = [r for _, r in plan]
    self.n_iterations_ = len(plan)
    candidates, before, self.epochs_trained_ = list(range(len(self.cells))), 0, 0
    for iteration, (_, epochs) in enumerate(plan):
      means = evaluate_candidates(candidates, epochs, {'iter': iteration, 'n_resources': epochs})
      self.epochs_trained_ += len(candidates) * self.cv * (epochs - before)
      before = epochs
      if iteration + 1 < len(plan):
        order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind='stable')  # NaN (diverged) last.
        candidates = [candidates[i] for i in order[:plan[iteration + 1][0]]]
    self.exhaustive_epochs_ = len(self.cells) * self.cv * max_epochs
    self.epoch_fraction_ = self.epochs_trained_ / self.exhaustive_epochs_
