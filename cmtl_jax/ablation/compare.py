"""The ablation's comparison: per-fold scores -> mean and std, paired differences with their corrected 95 % interval
and t-test (Nadeau & Bengio 2003, `stats.py`), flags, and one sentence per comparison."""

import math
from typing import Sequence

import numpy as np

from cmtl_jax import metrics as metrics_lib
from cmtl_jax import stats
from cmtl_jax.ablation.arms import BASELINE, FRESH_BEIT_TWINS

PAPER_ACCURACY_GAIN = 0.128  # The paper's "+12.8 % accuracy" of the hybrid over BEiT alone.
LATE_EPOCH = 0.9  # A chosen epoch past this share of the maximum is flagged: the maximum may be too short.


def _paired(a, b, n_train: float, n_val: float) -> dict:
  diffs = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  t, p = stats.corrected_resampled_ttest(diffs, n_train, n_val)
  low, high = stats.corrected_interval(diffs, n_train, n_val)
  return {'differences': diffs.tolist(), 'mean': float(diffs.mean()), 't': t, 'p': p, 'ci95': [low, high]}


def compare(result: dict, baseline: str = BASELINE) -> dict:
  """Per arm and reference row: mean and std of every metric over the outer folds. Per arm against `baseline`
  (when it ran; the baseline's fresh-BEiT twin is its `vs_fresh_beit` instead), `hybrid` against
  `hybrid_random_bert` (`vs_random_bert`) and each pretrained-BEiT arm against its fresh-BEiT twin
  (`vs_fresh_beit`, the twin's name in `fresh_beit_twin`): paired differences, their mean, corrected 95 % interval
  and t-test (t, p) for every metric; `below_logistic_regression` and `late_epoch` flags; for `hybrid`, the
  accuracy change beside the paper's +12.8 %. Arms with a NaN fold (diverged) get NaN comparisons."""
  n_train, n_val = np.mean(result['folds']['train']), np.mean(result['folds']['val'])
  rows = {**result['arms'], **result.get('references', {})}
  table = {}
  for name, scores in rows.items():
    table[name] = {m: {'mean': float(np.mean(scores[m])), 'std': float(np.std(scores[m]))}
                   for m in metrics_lib.METRICS}
  reference = table.get('logistic_regression', {}).get('accuracy', {}).get('mean', -math.inf)
  for arm, scores in result['arms'].items():
    row = table[arm]
    if baseline in result['arms'] and arm not in (baseline, FRESH_BEIT_TWINS.get(baseline)):
      row['vs_baseline'] = {m: _paired(scores[m], result['arms'][baseline][m], n_train, n_val)
                            for m in metrics_lib.METRICS}
    row['below_logistic_regression'] = bool(row['accuracy']['mean'] < reference)
    epochs = [c['optim.num_epochs'] for c in scores['chosen_params'] if c]
    row['late_epoch'] = bool(epochs and max(epochs) > LATE_EPOCH * result['max_epochs'])
  if 'hybrid' in result['arms'] and 'hybrid_random_bert' in result['arms']:
    table['hybrid']['vs_random_bert'] = {
        m: _paired(result['arms']['hybrid'][m], result['arms']['hybrid_random_bert'][m], n_train, n_val)
        for m in metrics_lib.METRICS}
  for arm, twin in FRESH_BEIT_TWINS.items():
    if arm in result['arms'] and twin in result['arms']:
      table[arm]['vs_fresh_beit'] = {m: _paired(result['arms'][arm][m], result['arms'][twin][m], n_train, n_val)
                                     for m in metrics_lib.METRICS}
      table[arm]['fresh_beit_twin'] = twin
  if 'hybrid' in result['arms'] and baseline in result['arms']:
    base, hybrid = table[baseline]['accuracy']['mean'], table['hybrid']['accuracy']['mean']
    table['hybrid']['accuracy_change'] = {
        'absolute': hybrid - base, 'relative': (hybrid - base) / base if base else math.nan,
        'paper': PAPER_ACCURACY_GAIN}
  return table


def verdict(a: str, b: str, comparison: dict, folds: int, what: str = '') -> str:
  """One sentence on a paired accuracy comparison of arm `a` against `b`: what it shows and what it does not.
  `what` says what the difference isolates (e.g. 'transferred text knowledge, capacity held equal')."""
  d, (low, high), p = comparison['mean'], comparison['ci95'], comparison['p']
  numbers = f'{d:+.4f} accuracy (95 % interval [{low:+.4f}, {high:+.4f}], corrected t-test p = {p:.3g}, {folds} folds)'
  if not (math.isfinite(low) and math.isfinite(high)):
    return f'`{a}` vs `{b}`: no comparison (a fold diverged).'
  if low > 0 or high < 0:
    direction = 'higher' if d > 0 else 'lower'
    return (f'`{a}` scores {direction} than `{b}` by {numbers}. The interval excludes zero: on this dataset and '
            f'training-set size, with each arm tuned on its own, the difference is larger than the fold-to-fold '
            f'variation{f" ({what})" if what else ""}. It does not show the same at other sizes, on other data, '
            f'or with other backbones.')
  return (f'`{a}` vs `{b}`: {numbers}. The interval includes zero: these folds show no difference between the '
          f'two arms{f" ({what})" if what else ""}, and they do not show that the arms are equal either.')


def _caveat(table: dict, arms: Sequence[str]) -> str:
  """' But ...' when an arm of a comparison is flagged: a difference against an arm that did not reach the pixel
  logistic regression, or that chose an epoch at the end of the budget, measures its training, not the transfer."""
  below = [a for a in arms if table[a].get('below_logistic_regression')]
  late = [a for a in arms if table[a].get('late_epoch') and a not in below]
  notes = [f'`{a}` ends below the pixel logistic regression' for a in below]
  notes += [f'`{a}` chose an epoch near the maximum' for a in late]
  if not notes:
    return ''
  return (f' But {" and ".join(notes)}: the comparison measures how far training got, not what the arms can learn '
          f'(a longer maximum, --config.optim.num_epochs, is the next run).')


def conclusions(table: dict, folds: int, baseline: str = BASELINE) -> list:
  """The report's sentences, one per comparison that ran, each with a caveat when one of its arms is flagged."""
  lines = []
  for arm, row in table.items():
    if 'vs_baseline' in row:
      what = {'hybrid': 'the pretrained BERT layers added to BEiT',
              'hybrid_random_bert': 'the same layers without text pretraining: capacity alone',
              'hybrid_frozen_bert': 'pretrained BERT layers that do not train'}.get(arm, '')
      lines.append(verdict(arm, baseline, row['vs_baseline']['accuracy'], folds, what) +
                   _caveat(table, (arm, baseline)))
  if 'vs_random_bert' in table.get('hybrid', {}):
    lines.append(verdict('hybrid', 'hybrid_random_bert', table['hybrid']['vs_random_bert']['accuracy'], folds,
                         'transferred text knowledge, capacity held equal') +
                 _caveat(table, ('hybrid', 'hybrid_random_bert')))
  for arm, twin in FRESH_BEIT_TWINS.items():
    if 'vs_fresh_beit' in table.get(arm, {}):
      lines.append(verdict(arm, twin, table[arm]['vs_fresh_beit']['accuracy'], folds,
                           'the pretrained BEiT against the same BEiT fresh') + _caveat(table, (arm, twin)))
  return lines
