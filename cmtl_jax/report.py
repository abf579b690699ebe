"""Files a finished search leaves in its workdir: cv_results.json / .csv, heatmaps, a markdown summary."""

import csv
import json
import os

import numpy as np

from cmtl_jax import metrics as metrics_lib


def _plain(value):
  if isinstance(value, np.ma.MaskedArray):
    return [None if m else _plain(v) for v, m in zip(value.data, np.ma.getmaskarray(value))]
  if isinstance(value, np.ndarray):
    return [_plain(v) for v in value.tolist()]
  if isinstance(value, (np.floating, float)):
    return None if np.isnan(value) else float(value)
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, list):
    return [_plain(v) for v in value]
  return value


def write_cv_results(workdir: str, cv_results: dict) -> None:
  """cv_results.json (column -> list) and cv_results.csv (one row per cell)."""
  columns = {k: _plain(v) for k, v in cv_results.items()}
  with open(os.path.join(workdir, 'cv_results.json'), 'w') as f:
    json.dump(columns, f, indent=1)
  keys = list(columns)
  with open(os.path.join(workdir, 'cv_results.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(keys)
    for row in range(len(columns['params'])):
      writer.writerow([json.dumps(columns[k][row], sort_keys=True) if k == 'params' else columns[k][row]
                       for k in keys])


def heatmap(path: str, cv_results: dict, optimizer, metric: str = 'accuracy') -> None:
  """Batch size (rows) x learning rate (columns) for one optimiser; colour = mean validation `metric`,
  cells annotated with mean +- std. Cells that differ in other grid keys show their best mean."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  params = cv_results['params']
  rows = [i for i, p in enumerate(params) if p.get('optimizer', optimizer) == optimizer]
  batch_sizes = sorted({params[i].get('batch_size') for i in rows}, key=lambda v: (v is None, v))
  lrs = sorted({params[i].get('learning_rate') for i in rows}, key=lambda v: (v is None, v))
  mean = np.full((len(batch_sizes), len(lrs)), np.nan)
  std = np.full_like(mean, np.nan)
  for i in rows:
    r, c = batch_sizes.index(params[i].get('batch_size')), lrs.index(params[i].get('learning_rate'))
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
  ax.set_title(f'{optimizer}: mean CV {metric} (± std over folds)')
  fig.colorbar(image, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_summary(path: str, search, machine: str, seconds: float, command: str = '') -> None:
  """A short markdown summary: best cell per optimiser, the chosen cell, and the refit model's test scores."""
  results = search.cv_results_
  lines = ['# Grid search summary', '']
  if command:
    lines += ['```', command, '```', '']
  lines += [f'- machine: {machine}', f'- wall time: {seconds:.0f} s for {len(search.cells)} cells x {search.cv} '
            f'folds ({len(search.trained_groups_)} of {len(search.groups)} groups trained in this run)',
            f'- scores: epoch "{search.score_epoch_}" of each fit; refit metric: {search.refit}', '',
            '| optimizer | best cell | ' + ' | '.join(f'mean {m}' for m in metrics_lib.METRICS) + ' |',
            '| --- | --- | ' + ' | '.join('---' for _ in metrics_lib.METRICS) + ' |']
  metric = search.refit or 'accuracy'
  optimizers = sorted({p.get('optimizer', search.config.optimizer) for p in results['params']})
  for optimizer in optimizers:
    rows = [i for i, p in enumerate(results['params']) if p.get('optimizer', search.config.optimizer) == optimizer]
    best = min(rows, key=lambda i: results[f'rank_test_{metric}'][i])
    scores = ' | '.join(f'{results[f"mean_test_{m}"][best]:.4f} ± {results[f"std_test_{m}"][best]:.4f}'
                        for m in metrics_lib.METRICS)
    lines.append(f'| {optimizer} | `{json.dumps(results["params"][best], sort_keys=True)}` | {scores} |')
  lines += ['', f'Best cell overall: `{json.dumps(search.best_params_, sort_keys=True)}` '
            f'(mean CV {metric} {search.best_score_:.4f}).']
  if getattr(search, 'test_scores_', None):
    test = search.test_scores_
    lines += ['', 'Refit on the whole training pool, scored on the held-out test split: ' +
              ', '.join(f'{m} {test[m]:.4f}' for m in metrics_lib.METRICS) + '.']
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
