"""Tables and text a run leaves in its workdir: cv_results.json / .csv, a search's summary.md, the ablation's
report.md. Plots are `plots.py`'s; workdir plumbing is `workdir.py`'s."""

import csv
import json
import os
from typing import Callable, Sequence

import numpy as np

from cmtl_jax import metrics as metrics_lib
from cmtl_jax.workdir import atomic

REFERENCE_NAMES = {'logistic_regression': 'logistic regression (pixels)', 'chance': 'chance (most frequent class)'}


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


def write_summary(path: str, search, machine: str, seconds: float, command: str = '') -> None:
  """A short markdown summary: best cell per optimiser, the chosen cell, and the refit model's test scores."""
  results = search.cv_results_
  lines = ['# Grid search summary', '']
  if command:
    lines += ['```', command, '```', '']
  lines += [f'- machine: {machine}', f'- wall time: {seconds:.0f} s for {len(search.cells)} cells x {search.cv} '
            f'folds ({search.kind} search; units of work: {len(search.units_trained_)} trained in this run, '
            f'{len(search.units_resumed_)} read back from the workdir)',
            f'- scores: epoch "{search.score_epoch_}" of each fit; refit metric: {search.refit}', '',
            '| optimizer | best cell | ' + ' | '.join(f'mean {m}' for m in metrics_lib.METRICS) + ' |',
            '| --- | --- | ' + ' | '.join('---' for _ in metrics_lib.METRICS) + ' |']
  metric = search.refit or 'accuracy'
  optimizer_of = lambda p: p.get('optim.optimizer', search.run.optim.optimizer)
  for optimizer in sorted({optimizer_of(p) for p in results['params']}):
    rows = [i for i, p in enumerate(results['params']) if optimizer_of(p) == optimizer]
    best = min(rows, key=lambda i: results[f'rank_test_{metric}'][i])
    scores = ' | '.join(f'{results[f"mean_test_{m}"][best]:.4f} ± {results[f"std_test_{m}"][best]:.4f}'
                        for m in metrics_lib.METRICS)
    lines.append(f'| {optimizer} | `{json.dumps(results["params"][best], sort_keys=True)}` | {scores} |')
  if search.kind == 'halving':
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


def write_ablation_report(path: str, *, summary: dict, run, commands: Sequence[str], baseline: str,
                          conclusions: Callable) -> None:
  """report.md: the result table with reference rows and flags, what it shows (one sentence per comparison),
  the learning curve with its comparisons at every size, each arm's choices and cost, the training curves, the
  protocol, per-fold scores, the setup and the commands. `conclusions(table, folds)` gives the sentences."""
  points, size = summary['points'], summary['table_size']
  beit = run.model.beit
  point = points[size]
  folds = len(point['folds']['train'])
  where = f'{size} images per class' if size != '0' else 'the whole training pool'
  lines = ['# Ablation: does text pretraining help the image model?', '',
           f'{run.data.dataset}, {where} ({point["pool"]} images), nested cross-validation: {folds} outer folds; every '
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
  inner = (f'{run.ablation.inner_cv} stratified inner folds' if run.ablation.inner_cv > 1 else
           f'one stratified inner split holding out {run.data.val_fraction:g} of the outer training set')
  lines += ['## Protocol', '',
            f'- outer: {folds} stratified folds of the training pool, the same for every arm and reference row '
            f'({int(np.mean(point["folds"]["train"]))} train / {int(np.mean(point["folds"]["val"]))} scored per '
            f'fold); the held-out test split is not used',
            f'- inner: {inner}, cut from the outer training indices only',
            f'- search space, the same for every arm: {space}; training length: the best epoch up to the maximum '
            f'(' + ', '.join(f'{s if s != "0" else "all"} per class: {points[s]["max_epochs"]} epochs'
                             for s in points) + f'), chosen by mean inner validation {run.search.refit}',
            f'- final fit: the chosen cell on the whole outer training set, on the selection\'s schedule '
            f'({run.optim.warmup_fraction:g} warmup + {run.optim.decay} decay over the maximum), stopped at the chosen '
            f'epoch; then the outer fold is scored',
            f'- fixed for every arm: optimizer {run.optim.optimizer} unless searched, batch size {run.optim.batch_size} '
            f'unless searched, fresh weights at x{run.optim.fresh_lr_multiplier:g} the learning rate, weight decay '
            f'{run.optim.weight_decay:g}, clip {run.optim.grad_clip:g}, seed {run.seed}',
            '- reference rows on the same outer folds: scikit-learn `LogisticRegression` (defaults, max_iter 2000) on '
            'the pixels resized as the models see them; `DummyClassifier(most_frequent)`', '',
            '### Per-fold accuracy', '', '| row | ' + ' | '.join(f'fold {k}' for k in range(folds)) + ' |',
            '| --- |' + ' --- |' * folds]
  rows = {**point['arms'], **point['references']}
  lines += [f'| {REFERENCE_NAMES.get(n, n)} | ' + ' | '.join(f'{v:.4f}' for v in r['accuracy']) + ' |'
            for n, r in rows.items()]
  lines += ['', '## Setup', '', f'- machine: {summary["machine"]}; wall time {summary["seconds"]:.0f} s',
            f'- model: BEiT {beit.num_hidden_layers} layer(s), width {beit.hidden_size}, {beit.image_size} px, '
            f'patch {beit.patch_size}, {beit.num_channels} channel(s); BERT layers kept: '
            f'{run.model.bert.num_hidden_layers if run.model.bert else 0}; the {point["image_shape"][0]} x '
            f'{point["image_shape"][1]} px images are resized to {beit.image_size} x {beit.image_size} on the device',
            '',
            '| arm | BEiT | BERT |', '| --- | --- | --- |']
  lines += [f'| {arm} | {r["pretrained"]["beit"]} | {r["pretrained"]["bert"]} |' for arm, r in point['arms'].items()]
  lines += ['', '## Commands', '', '```', *commands, '```']
  with atomic(path) as tmp, open(tmp, 'w') as f:
    f.write('\n'.join(lines) + '\n')
