"""Plots a run leaves in its workdir: grid heatmaps, the ablation's bars, learning and training curves, the
pretraining loss. Each is written atomically as a PNG (matplotlib's Agg backend)."""

from typing import Sequence

import numpy as np

from cmtl_jax import metrics as metrics_lib
from cmtl_jax.workdir import atomic


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


AXES = ('optim.optimizer', 'optim.batch_size', 'optim.learning_rate')


def folded_keys(params: Sequence[dict]) -> list:
  """The grid keys besides the heatmap's axes (`AXES`) that take more than one value: a heatmap cell shows the best
  of the cells that differ only in them, and its title names them."""
  keys = sorted({k for p in params for k in p} - set(AXES))
  return [k for k in keys if len({repr(p.get(k)) for p in params}) > 1]


def heatmap(path: str, cv_results: dict, optimizer, metric: str = 'accuracy') -> None:
  """Batch size (rows) x learning rate (columns) for one optimiser; colour = mean validation `metric`,
  cells annotated with mean +- std. Cells that differ in other grid keys show their best mean, and the title says
  over which keys (`folded_keys`)."""
  plt = _pyplot()
  params = cv_results['params']
  rows = [i for i, p in enumerate(params) if p.get('optim.optimizer', optimizer) == optimizer]
  folded = folded_keys([params[i] for i in rows])
  batch_sizes = sorted({params[i].get('optim.batch_size') for i in rows}, key=lambda v: (v is None, v))
  lrs = sorted({params[i].get('optim.learning_rate') for i in rows}, key=lambda v: (v is None, v))
  mean = np.full((len(batch_sizes), len(lrs)), np.nan)
  std = np.full_like(mean, np.nan)
  for i in rows:
    r, c = batch_sizes.index(params[i].get('optim.batch_size')), lrs.index(params[i].get('optim.learning_rate'))
    m = cv_results[f'mean_test_{metric}'][i]
    if np.isnan(mean[r, c]) or m > mean[r, c]:
      mean[r, c], std[r, c] = m, cv_results[f'std_test_{metric}'][i]
  fig, ax = plt.subplots(figsize=(1.3 * len(lrs) + 2.5, 0.7 * len(batch_sizes) + 1.8))
  image = ax.imshow(mean, cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto')
  for r in range(len(batch_sizes)):
    for c in range(len(lrs)):
      text = 'diverged' if np.isnan(mean[r, c]) else f'{mean[r, c]:.3f}\n±{std[r, c]:.3f}'
      ax.text(c, r, text, ha='center', va='center', fontsize=8,
              color='black' if not np.isnan(mean[r, c]) and mean[r, c] > 0.6 else 'white')
  ax.set_xticks(range(len(lrs)), [f'{v:g}' if v is not None else 'default' for v in lrs])
  ax.set_yticks(range(len(batch_sizes)), [str(v) if v is not None else 'default' for v in batch_sizes])
  ax.set_xlabel('learning rate')
  ax.set_ylabel('batch size')
  title = f'{optimizer}: mean CV {metric} (± std over folds)'
  if folded:
    title += f'\nthe best over {", ".join(folded)}'
  ax.set_title(title, fontsize=9 if folded else None)
  fig.colorbar(image, ax=ax)
  fig.tight_layout()
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def ablation_bars(path: str, table: dict) -> None:
  """Mean +- std over folds of every metric, one bar group per metric, one bar per arm and reference row."""
  plt = _pyplot()
  names = list(table)
  width = 0.8 / len(names)
  fig, ax = plt.subplots(figsize=(2.2 * len(metrics_lib.METRICS) + 1.5, 3.8))
  for j, name in enumerate(names):
    x = np.arange(len(metrics_lib.METRICS)) + (j - (len(names) - 1) / 2) * width
    ax.bar(x, [table[name][m]['mean'] for m in metrics_lib.METRICS], width,
           yerr=[table[name][m]['std'] for m in metrics_lib.METRICS], capsize=3, label=name)
  ax.set_xticks(range(len(metrics_lib.METRICS)), metrics_lib.METRICS)
  ax.set_ylim(0.0, 1.0)
  ax.set_ylabel('mean over outer folds (± std)')
  ax.legend(fontsize=7, loc='lower right')
  fig.tight_layout()
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def learning_curve_plot(path: str, points: dict, sizes: Sequence[str], metric: str = 'accuracy') -> None:
  """Mean outer-fold `metric` +- std against training images per class (log axis), one line per arm and one for
  the pixel logistic regression."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.8, 4.0))
  names = []
  for s in sizes:
    names += [n for n in points[s]['table'] if n not in names and n != 'chance']
  for name in names:
    at = [s for s in sizes if name in points[s]['table']]
    ax.errorbar([int(s) for s in at], [points[s]['table'][name][metric]['mean'] for s in at],
                yerr=[points[s]['table'][name][metric]['std'] for s in at], marker='o', capsize=3, label=name,
                linestyle='--' if name == 'logistic_regression' else '-')
  ax.set_xscale('log')
  ax.set_xticks([int(s) for s in sizes], sizes)
  ax.set_xlabel('training images per class (outer CV pool)')
  ax.set_ylabel(f'mean outer-fold {metric} (± std)')
  ax.legend(fontsize=8)
  fig.tight_layout()
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def training_curves_plot(path: str, point: dict, metric: str = 'accuracy') -> None:
  """Each arm's inner validation `metric` against epochs at its chosen cell (mean over the outer folds' choices),
  with the chosen epochs marked: where the curves flatten within the maximum training length."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.8, 4.0))
  for arm, result in point['arms'].items():
    curves = [c for c in result['inner_curves'] if c]
    if not curves:
      continue
    line, = ax.plot(np.arange(1, len(curves[0]) + 1), np.mean(curves, axis=0), label=arm)
    for params, score in zip(result['chosen_params'], result['inner_scores']):
      if params:
        ax.plot(params['optim.num_epochs'], score, 'o', color=line.get_color(), markersize=4)
  ax.axvline(point['max_epochs'], color='grey', linewidth=0.8, linestyle=':')
  ax.set_xlabel(f'epoch (maximum {point["max_epochs"]})')
  ax.set_ylabel(f'inner validation {metric}')
  ax.set_title('chosen cells; dots: chosen epochs', fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def loss_curve_plot(path: str, history: Sequence[dict]) -> None:
  """A pretraining run's masked-token loss (and masked-token accuracy on a second axis) against epochs."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.8, 4.0))
  epochs = [h['epoch'] for h in history]
  ax.plot(epochs, [h['loss'] for h in history], 'o-', label='loss', markersize=3)
  ax.set_xlabel('epoch')
  ax.set_ylabel('masked-token cross-entropy')
  accuracy = ax.twinx()
  accuracy.plot(epochs, [h['masked_accuracy'] for h in history], 's--', color='tab:orange', markersize=3)
  accuracy.set_ylabel('masked-token accuracy (dashed)')
  ax.set_title('BEiT masked image modelling', fontsize=9)
  fig.tight_layout()
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)
