"""Files a run leaves in its workdir: the fingerprint of its config (a rerun of another config is refused), and
what a finished search or ablation writes: cv_results.json / .csv, heatmaps, summaries, report.md."""

import contextlib
import csv
import json
import os
import signal
import threading
from typing import Callable, Sequence

import numpy as np

from cmtl_jax import metrics as metrics_lib
from cmtl_jax.errors import ConfigError


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


@contextlib.contextmanager
def interrupts_held():
  """Holds Ctrl-C (SIGINT) until the block ends, then raises `KeyboardInterrupt`: a checkpoint save inside is never
  cut in half (orbax's writer threads would otherwise fail at exit with tracebacks). Only in the main thread and
  while SIGINT has Python's default handler; elsewhere the block runs as it is."""
  if (threading.current_thread() is not threading.main_thread() or
      signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
    yield
    return
  caught = []
  signal.signal(signal.SIGINT, lambda *_: caught.append(True))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)
  if caught:
    raise KeyboardInterrupt


def jsonable(value):
  """`value` as JSON would give it back (tuples become lists)."""
  return json.loads(json.dumps(value, default=list))


def _differences(a, b, prefix=''):
  if isinstance(a, dict) and isinstance(b, dict):
    for key in set(a) | set(b):
      yield from _differences(a.get(key), b.get(key), f'{prefix}{key}.')
  elif a != b:
    yield prefix.rstrip('.')


def check_workdir_config(workdir: str, file_name: str, fingerprint: dict, what: str) -> None:
  """Refuses a `workdir` whose `file_name` holds another config than `fingerprint` (the config of the run it holds);
  nothing when it holds none yet. A run records its own with `write_workdir_config` once its checks have passed,
  so a refused config leaves nothing that would refuse its correction.

  Raises:
    ConfigError: the file is unreadable, or holds another config (the message names the keys that differ).
  """
  path = os.path.join(workdir, file_name)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      existing = json.load(f)
  except (OSError, ValueError):
    raise ConfigError(f'{path} is unreadable: this workdir is not {what} of cmtl_jax; use a new '
                      f'--workdir.') from None
  if existing != jsonable(fingerprint):
    differ = sorted(_differences(existing, jsonable(fingerprint)))
    raise ConfigError(f'workdir {workdir!r} holds {what} of another config (different config keys: '
                      f'{", ".join(differ)}): rerun with the same config to resume, or use a new --workdir.')


def write_workdir_config(workdir: str, file_name: str, fingerprint: dict) -> None:
  """Writes `fingerprint` to `workdir/file_name` (atomically) for `check_workdir_config` to compare with."""
  with atomic(os.path.join(workdir, file_name)) as tmp, open(tmp, 'w') as f:
    json.dump(jsonable(fingerprint), f, indent=2, sort_keys=True)


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

REFERENCE_NAMES = {'logistic_regression': 'logistic regression (pixels)', 'chance': 'chance (most frequent class)'}


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
        ax.plot(params['num_epochs'], score, 'o', color=line.get_color(), markersize=4)
  ax.axvline(point['max_epochs'], color='grey', linewidth=0.8, linestyle=':')
  ax.set_xlabel(f'epoch (maximum {point["max_epochs"]})')
  ax.set_ylabel(f'inner validation {metric}')
  ax.set_title('chosen cells; dots: chosen epochs', fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  with atomic(path) as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def _mean_std(row, metric):
  return f'{row[metric]["mean"]:.4f} ± {row[metric]["std"]:.4f}'


def _difference(comparison: dict) -> str:
  low, high = comparison['ci95']
  return f'{comparison["mean"]:+.4f} [{low:+.4f}, {high:+.4f}] (p = {comparison["p"]:.2g})'


def _flags(row: dict) -> str:
  flags = []
  if row.get('below_logistic_regression'):
    flags.append('below the pixel logistic regression: under-trained or over-regularised, not evidence')
  if row.get('late_epoch'):
    flags.append('a chosen epoch near the maximum: a longer maximum might change it')
  return '; '.join(flags) or '—'


def ablation_table(table: dict, baseline: str) -> list:
  """Markdown lines: one row per arm and reference row, mean ± std of each metric, the paired accuracy
  difference against `baseline` with its 95 % interval and p, and the row's flags."""
  lines = ['| row | ' + ' | '.join(metrics_lib.METRICS) + f' | Δ accuracy vs {baseline} [95 % CI] (p) | flags |',
           '| --- |' + ' --- |' * (len(metrics_lib.METRICS) + 2)]
  for name, row in table.items():
    cells = [_mean_std(row, m) for m in metrics_lib.METRICS]
    versus = row.get('vs_baseline', {}).get('accuracy')
    cells += [_difference(versus) if versus else '—', _flags(row)]
    lines.append(f'| {REFERENCE_NAMES.get(name, name)} | ' + ' | '.join(cells) + ' |')
  return lines


def _chosen(params: dict) -> str:
  if not params:
    return 'none (every cell diverged)'
  return ', '.join(f'{k} {v:g}' if isinstance(v, float) else f'{k} {v}' for k, v in sorted(params.items()))


def _cost_table(point: dict) -> list:
  lines = ['| arm | chosen per outer fold | params trained | params transferred | training steps | training '
           'FLOPs | wall time |', '| --- | --- | --- | --- | --- | --- | --- |']
  for arm, r in point['arms'].items():
    chosen = '<br>'.join(f'fold {k}: {_chosen(p)}' for k, p in enumerate(r['chosen_params']))
    lines.append(f'| {arm} | {chosen} | {r["params_trained"]:,} | {r["params_transferred"]:,} | '
                 f'{r["train_steps"]:,} | {r["train_flops"]:.3g} | {r["fit_seconds"]:.0f} s |')
  return lines


def write_ablation_report(path: str, *, summary: dict, config, commands: Sequence[str], baseline: str,
                          conclusions: Callable) -> None:
  """report.md: the result table with reference rows and flags, what it shows (one sentence per comparison),
  the learning curve with its comparisons at every size, each arm's choices and cost, the training curves, the
  protocol, per-fold scores, the setup and the commands. `conclusions(table, folds)` gives the sentences."""
  points, size = summary['points'], summary['table_size']
  point = points[size]
  folds = len(point['folds']['train'])
  where = f'{size} images per class' if size != '0' else 'the whole training pool'
  lines = ['# Ablation: does text pretraining help the image model?', '',
           f'{config.dataset}, {where} ({point["pool"]} images), nested cross-validation: {folds} outer folds; every '
           f'arm chooses its own hyperparameters and training length inside each outer training set.', '',
           f'## Results at {where}', '',
           f'Mean ± std over the {folds} outer folds. Δ = mean paired difference against `{baseline}` with its '
           f'Nadeau–Bengio corrected 95 % interval and two-sided corrected t-test ({folds - 1} df).', '']
  lines += ablation_table(point['table'], baseline)
  lines += ['', '![mean ± std per row](ablation_bars.png)', '', '## What this shows', '']
  lines += [f'- {sentence}' for sentence in conclusions(point['table'], folds)]
  change = point['table'].get('hybrid', {}).get('accuracy_change')
  if change:
    lines += [f'- The paper reports +{change["paper"]:.1%} accuracy for the hybrid over BEiT alone; here the change '
              f'is {change["absolute"]:+.4f} absolute ({change["relative"]:+.1%} relative), with the interval above.']
  flagged = [a for a, r in point['table'].items() if r.get('below_logistic_regression')]
  if flagged:
    lines += [f'- Flagged below the pixel logistic regression: {", ".join(flagged)}. Their scores say the arm was '
              f'not trained to what the data allow, not what it can learn.']
  sizes = summary['curve_sizes']
  if sizes:
    lines += ['', '## Learning curve', '',
              'Every size runs the same nested protocol (own choices per arm and outer fold; the maximum training '
              'length per size is in the protocol below). Mean outer-fold accuracy ± std; differences with their '
              '95 % interval and p.', '']
    arms = [a for a in points[sizes[0]]['arms']]
    # (column, arm, comparison key): the differences each size reports, when both of their arms ran.
    differences = [(f'hybrid − {other}', 'hybrid', key) for other, key in ((baseline, 'vs_baseline'),
                                                                          ('hybrid_random_bert', 'vs_random_bert'))
                   if 'hybrid' in arms and other in arms]
    first = points[sizes[0]]['table']
    differences += [(f'{arm} − {first[arm]["fresh_beit_twin"]}', arm, 'vs_fresh_beit') for arm in arms
                    if 'fresh_beit_twin' in first[arm]]
    head = ['images per class', *arms, 'logistic regression (pixels)', *(d[0] for d in differences)]
    lines += ['| ' + ' | '.join(head) + ' |', '| --- |' + ' --- |' * (len(head) - 1)]
    for s in sizes:
      table = points[s]['table']
      row = [s] + [_mean_std(table[a], 'accuracy') if a in table else '—' for a in arms]
      row.append(_mean_std(table['logistic_regression'], 'accuracy'))
      for _, arm, key in differences:
        versus = table.get(arm, {}).get(key, {}).get('accuracy')
        row.append(_difference(versus) if versus else '—')
      lines.append('| ' + ' | '.join(row) + ' |')
    lines += ['', '![learning curve](learning_curve.png)', '']
    for s in sizes:
      lines += [f'At {s} images per class:', '']
      lines += [f'- {sentence}' for sentence in conclusions(points[s]['table'], len(points[s]['folds']['train']))]
      flagged = [a for a, r in points[s]['table'].items() if r.get('below_logistic_regression')]
      if flagged:
        lines += [f'- Below the pixel logistic regression (not evidence): {", ".join(flagged)}.']
      lines.append('')
  lines += ['## Choices and cost per arm', '',
            f'At {where}. Parameters trained exclude frozen ones; transferred ones come from a checkpoint. Training '
            f'steps and model FLOPs (forward + backward, 3x the forward matmuls) count every fit: the inner '
            f'selection and the final fits. Wall time as measured (compilation included).', '']
  lines += _cost_table(point)
  if sizes:
    lines += ['', 'Chosen per outer fold at the learning-curve sizes:', '', '| images per class | arm | chosen |',
              '| --- | --- | --- |']
    for s in sizes:
      for arm, r in points[s]['arms'].items():
        lines.append(f'| {s} | {arm} | ' + '; '.join(_chosen(p) for p in r['chosen_params']) + ' |')
  lines += ['', '## Training curves', '',
            f'Inner validation accuracy of each arm\'s chosen cell, mean over the outer folds, up to the maximum of '
            f'{point["max_epochs"]} epochs; dots mark the chosen epochs. A chosen epoch past {0.9:.0%} of the '
            f'maximum is flagged in the table above.', '', '![training curves](training_curves.png)', '']
  space = ', '.join(f'{k} ∈ {{{", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vs)}}}'
                    for k, vs in point['search_space'].items())
  inner = (f'{config.inner_cv} stratified inner folds' if config.inner_cv > 1 else
           f'one stratified inner split holding out {config.val_fraction:g} of the outer training set')
  lines += ['## Protocol', '',
            f'- outer: {folds} stratified folds of the training pool, the same for every arm and reference row '
            f'({int(np.mean(point["folds"]["train"]))} train / {int(np.mean(point["folds"]["val"]))} scored per '
            f'fold); the held-out test split is not used',
            f'- inner: {inner}, cut from the outer training indices only',
            f'- search space, the same for every arm: {space}; training length: the best epoch up to the maximum '
            f'(' + ', '.join(f'{s if s != "0" else "all"} per class: {points[s]["max_epochs"]} epochs'
                             for s in points) + f'), chosen by mean inner validation {config.refit or "accuracy"}',
            f'- final fit: the chosen cell on the whole outer training set, on the selection\'s schedule '
            f'({config.warmup_fraction:g} warmup + {config.decay} decay over the maximum), stopped at the chosen '
            f'epoch; then the outer fold is scored',
            f'- fixed for every arm: optimizer {config.optimizer} unless searched, batch size {config.batch_size} '
            f'unless searched, fresh weights at x{config.fresh_lr_multiplier:g} the learning rate, weight decay '
            f'{config.weight_decay:g}, clip {config.grad_clip:g}, seed {config.seed}',
            '- reference rows on the same outer folds: scikit-learn `LogisticRegression` (defaults, max_iter 2000) on '
            'the pixels resized as the models see them; `DummyClassifier(most_frequent)`', '',
            '### Per-fold accuracy', '', '| row | ' + ' | '.join(f'fold {k}' for k in range(folds)) + ' |',
            '| --- |' + ' --- |' * folds]
  rows = {**point['arms'], **point['references']}
  lines += [f'| {REFERENCE_NAMES.get(n, n)} | ' + ' | '.join(f'{v:.4f}' for v in r['accuracy']) + ' |'
            for n, r in rows.items()]
  lines += ['', '## Setup', '', f'- machine: {summary["machine"]}; wall time {summary["seconds"]:.0f} s',
            f'- model: BEiT {config.beit.num_hidden_layers} layer(s), width {config.beit.hidden_size}, '
            f'{config.beit.image_size} px, patch {config.beit.patch_size}; BERT layers kept: '
            f'{config.bert_layers or "all"}; the {point["image_shape"][0]} x {point["image_shape"][1]} px images '
            f'are resized to {config.beit.image_size} x {config.beit.image_size} on the device', '',
            '| arm | BEiT | BERT |', '| --- | --- | --- |']
  lines += [f'| {arm} | {r["pretrained"]["beit"]} | {r["pretrained"]["bert"]} |' for arm, r in point['arms'].items()]
  lines += ['', '## Commands', '', '```', *commands, '```']
  with atomic(path) as tmp, open(tmp, 'w') as f:
    f.write('\n'.join(lines) + '\n')


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
