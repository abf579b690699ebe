"""Files a finished search or ablation leaves in its workdir: cv_results.json / .csv, heatmaps, summaries, report.md."""

import contextlib
import csv
import json
import os
from typing import Sequence

import numpy as np

from cmtl_jax import metrics as metrics_lib


@contextlib.contextmanager
def atomic(path: str):
  """Yields a temporary path beside `path` to write to; renames it onto `path` only when the block finishes, so a
  killed process leaves the old file or the new one, never half of one."""
  root, ext = os.path.splitext(path)
  tmp = f'{root}.tmp{ext}'  # One fixed name: a rerun after a kill overwrites a stale one.
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


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
  with atomic(os.path.join(workdir, 'cv_results.json')) as tmp, open(tmp, 'w') as f:
    json.dump(columns, f, indent=1)
  keys = list(columns)
  with atomic(os.path.join(workdir, 'cv_results.csv')) as tmp, open(tmp, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(keys)
    for row in range(len(columns['params'])):
      writer.writerow([json.dumps(columns[k][row], sort_keys=True) if k == 'params' else columns[k][row]
                       for k in keys])


def rows(cv_results: dict, mask) -> dict:
  """The rows of `cv_results` where `mask` is True (every per-row key; other keys as they are)."""
  mask = np.asarray(mask)
  picked = {}
  for key, value in cv_results.items():
    if key == 'params':
      picked[key] = [p for p, keep in zip(value, mask) if keep]
    elif isinstance(value, np.ndarray) and value.shape[:1] == mask.shape:
      picked[key] = value[mask]
    else:
      picked[key] = value
  return picked


def heatmap(path: str, cv_results: dict, optimizer, metric: str = 'accuracy') -> None:
  """Batch size (rows) x learning rate (columns) for one optimiser; colour = mean validation `metric`,
  cells annotated with mean +- std. Cells that differ in other grid keys show their best mean."""
  plt = _pyplot()
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
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def write_summary(path: str, search, machine: str, seconds: float, command: str = '') -> None:
  """A short markdown summary: best cell per optimiser, the chosen cell, and the refit model's test scores."""
  results = search.cv_results_
  lines = ['# Grid search summary', '']
  if command:
    lines += ['```', command, '```', '']
  done = (f'{len(search.rounds_trained_)} of {search.n_iterations_} halving rounds'
          if hasattr(search, 'rounds_trained_') else f'{len(search.trained_groups_)} of {len(search.groups)} groups')
  lines += [f'- machine: {machine}', f'- wall time: {seconds:.0f} s for {len(search.cells)} cells x {search.cv} '
            f'folds ({done} trained in this run)',
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
  if hasattr(search, 'epoch_fraction_'):
    lines += ['', f'Successive halving (factor {search.factor}): rounds of {search.n_candidates_} cells trained to '
              f'epochs {search.n_resources_}; {search.epochs_trained_} of the exhaustive search\'s '
              f'{search.exhaustive_epochs_} model-epochs ({search.epoch_fraction_:.3f}). Best cells per optimiser '
              f'are those of the latest round each reached.']
  lines += ['', f'Best cell overall: `{json.dumps(search.best_params_, sort_keys=True)}` '
            f'(mean CV {metric} {search.best_score_:.4f}).']
  if getattr(search, 'test_scores_', None):
    test = search.test_scores_
    lines += ['', 'Refit on the whole training pool, scored on the held-out test split: ' +
              ', '.join(f'{m} {test[m]:.4f}' for m in metrics_lib.METRICS) + '.']
  with atomic(path) as tmp, open(tmp, 'w') as f:
    f.write('\n'.join(lines) + '\n')


# ---------------------------------------------------------------------------------------------------------------
# The ablation report.

def ablation_bars(path: str, table: dict) -> None:
  """Mean +- std over folds of every metric, one bar group per metric, one bar per arm."""
  plt = _pyplot()
  arms = list(table)
  width = 0.8 / len(arms)
  fig, ax = plt.subplots(figsize=(2.2 * len(metrics_lib.METRICS) + 1.5, 3.8))
  for j, arm in enumerate(arms):
    x = np.arange(len(metrics_lib.METRICS)) + (j - (len(arms) - 1) / 2) * width
    ax.bar(x, [table[arm][m]['mean'] for m in metrics_lib.METRICS], width,
           yerr=[table[arm][m]['std'] for m in metrics_lib.METRICS], capsize=3, label=arm)
  ax.set_xticks(range(len(metrics_lib.METRICS)), metrics_lib.METRICS)
  lows = [table[a][m]['mean'] - table[a][m]['std'] for a in arms for m in metrics_lib.METRICS]
  ax.set_ylim(max(0.0, min(lows) - 0.05), 1.0)
  ax.set_ylabel('mean over CV folds (± std)')
  ax.legend(fontsize=8, loc='lower right')
  fig.tight_layout()
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def learning_curve_plot(path: str, curve: dict, metric: str = 'accuracy') -> None:
  """Mean CV `metric` +- std against training images per class (log axis), one line per arm."""
  plt = _pyplot()
  sizes = sorted(curve, key=int)
  arms = list(curve[sizes[0]]['arms'])
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for arm in arms:
    means = [np.mean(curve[s]['arms'][arm][metric]) for s in sizes]
    stds = [np.std(curve[s]['arms'][arm][metric]) for s in sizes]
    ax.errorbar([int(s) for s in sizes], means, yerr=stds, marker='o', capsize=3, label=arm)
  ax.set_xscale('log')
  ax.set_xticks([int(s) for s in sizes], sizes)
  ax.set_xlabel('training images per class (CV pool)')
  ax.set_ylabel(f'mean CV {metric} (± std)')
  ax.legend(fontsize=8)
  fig.tight_layout()
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def _mean_std(row, metric):
  return f'{row[metric]["mean"]:.4f} ± {row[metric]["std"]:.4f}'


def ablation_table(table: dict, baseline: str) -> list:
  """Markdown lines: one row per arm, mean ± std of each metric, then the paired accuracy and F1 comparison."""
  lines = ['| arm | ' + ' | '.join(metrics_lib.METRICS) + ' | Δ accuracy vs ' + baseline + ' (p) | Δ F1 (p) |',
           '| --- |' + ' --- |' * (len(metrics_lib.METRICS) + 2)]
  for arm, row in table.items():
    cells = [_mean_std(row, m) for m in metrics_lib.METRICS]
    for m in ('accuracy', 'f1'):
      versus = row.get('vs_baseline', {}).get(m)
      cells.append(f'{versus["mean"]:+.4f} (p = {versus["p"]:.3g})' if versus else '—')
    lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
  return lines


def write_ablation_report(path: str, *, result: dict, table: dict, curve: dict, curve_tables: dict, config,
                          machine: str, seconds: float, commands: Sequence[str], baseline: str,
                          heatmaps: Sequence[str] = (), grid_workdir: str = '') -> None:
  """report.md: setup, the ablation table, per-fold differences, the bar chart, the learning curve, the grid
  heatmaps (when a grid workdir was given), the machine and the commands."""
  folds = result['folds']
  lines = ['# Ablation: does text pretraining help the image model?', '',
           '## Commands', '', '```', *commands, '```', '',
           '## Setup', '',
           f'- machine: {machine}; wall time {seconds:.0f} s',
           f'- dataset: {config.dataset}, stratified {config.cv}-fold CV on the training pool (the same folds for '
           f'every arm; {int(np.mean(folds["train"]))} train / {int(np.mean(folds["val"]))} validation images per '
           f'fold); the held-out test split is not used',
           f'- hyperparameters: optimizer {config.optimizer}, batch size {config.batch_size}, peak learning rate '
           f'{config.learning_rate:g} (fresh weights x{config.fresh_lr_multiplier:g}), {config.num_epochs} epochs, '
           f'{config.warmup_fraction:g} warmup + {config.decay} decay' +
           (f'; the best cell of the grid in `{grid_workdir}`' if grid_workdir else ''),
           f'- model: BEiT {config.beit.num_hidden_layers} layer(s), width {config.beit.hidden_size}, '
           f'{config.beit.image_size} px, patch {config.beit.patch_size}; BERT layers kept: '
           f'{config.bert_layers or "all"}; the {result["image_shape"][0]} x {result["image_shape"][1]} px images '
           f'are resized to {config.beit.image_size} x {config.beit.image_size} on the device' +
           (f'; training pool capped at {config.train_per_class} images per class' if config.train_per_class else ''),
           '',
           '| arm | BEiT | BERT |', '| --- | --- | --- |']
  lines += [f'| {arm} | {r["pretrained"]["beit"]} | {r["pretrained"]["bert"]} |'
            for arm, r in result['arms'].items()]
  lines += ['', '## Results', '', f'Mean ± std over the {config.cv} folds; Δ = mean paired difference against '
            f'`{baseline}`, p = Nadeau–Bengio corrected resampled t-test (two-sided, {config.cv - 1} df).', '']
  lines += ablation_table(table, baseline)
  change = table.get('hybrid', {}).get('accuracy_change')
  if change:
    lines += ['', f'`hybrid` vs `{baseline}`: accuracy {change["absolute"]:+.4f} absolute '
              f'({change["relative"]:+.1%} relative). The paper reports +{change["paper"]:.1%}.']
  versus = table.get('hybrid', {}).get('vs_random_bert')
  if versus:
    lines += ['', f'`hybrid` vs `hybrid_random_bert` (the same layers without the text pretraining): accuracy '
              f'{versus["mean"]:+.4f} (p = {versus["p"]:.3g}).']
  lines += ['', '### Per-fold accuracy', '', '| arm | ' + ' | '.join(f'fold {k}' for k in range(config.cv)) + ' |',
            '| --- |' + ' --- |' * config.cv]
  lines += [f'| {arm} | ' + ' | '.join(f'{v:.4f}' for v in r['accuracy']) + ' |' for arm, r in result['arms'].items()]
  lines += ['', '![mean ± std per arm](ablation_bars.png)', '']
  if curve:
    sizes = sorted(curve, key=int)
    lines += ['## Learning curve', '',
              f'Each point: {config.cv}-fold CV on a pool of n images per class. Epochs per point: ' +
              ', '.join(f'n={s}: {curve[s]["epochs"]}' for s in sizes) +
              (f' (about {config.curve_steps} optimiser steps each).' if config.curve_steps else '.'), '',
              '| images per class | ' + ' | '.join(curve[sizes[0]]['arms']) + ' |',
              '| --- |' + ' --- |' * len(curve[sizes[0]]['arms'])]
    for s in sizes:
      row = []
      for arm in curve[s]['arms']:
        versus = curve_tables[s][arm].get('vs_baseline', {}).get('accuracy')
        row.append(_mean_std(curve_tables[s][arm], 'accuracy') +
                   (f' (Δ {versus["mean"]:+.3f}, p = {versus["p"]:.2g})' if versus else ''))
      lines.append(f'| {s} | ' + ' | '.join(row) + ' |')
    lines += ['', '![learning curve](learning_curve.png)', '']
  if heatmaps:
    lines += ['## Grid search heatmaps', ''] + [f'![{h}]({h})' for h in heatmaps] + ['']
  with atomic(path) as tmp, open(tmp, 'w') as f:
    f.write('\n'.join(lines) + '\n')
