"""The comparison's sentences and flags: what an interval shows, and the caveat a flagged arm brings."""

import pytest

from cmtl_jax.ablation import compare


def test_an_interval_that_includes_zero_shows_no_difference():
  words = compare.verdict('a', 'b', {'mean': 0.01, 'ci95': [-0.02, 0.04], 'p': 0.4}, 5)
  assert 'includes zero' in words and 'no difference' in words
  words = compare.verdict('a', 'b', {'mean': 0.06, 'ci95': [0.03, 0.09], 'p': 0.01}, 5)
  assert 'excludes zero' in words and 'scores higher' in words
  assert 'no comparison' in compare.verdict('a', 'b', {'mean': float('nan'), 'ci95': [float('nan')] * 2,
                                                       'p': float('nan')}, 5)


def test_a_difference_against_a_flagged_arm_says_so():
  comparison = {'mean': 0.06, 'ci95': [0.03, 0.09], 'p': 0.01}
  hybrid = {'vs_baseline': {'accuracy': comparison}}
  flagged = compare.conclusions({'beit': {'below_logistic_regression': True}, 'hybrid': hybrid}, 3)
  assert len(flagged) == 1 and 'excludes zero' in flagged[0]
  assert 'But `beit` ends below the pixel logistic regression' in flagged[0]
  assert 'But' not in compare.conclusions({'beit': {}, 'hybrid': hybrid}, 3)[0]


def test_compare_pairs_each_arm_with_the_baseline_and_twins_once():
  folds = {'train': [80, 80, 80], 'val': [40, 40, 40]}
  scores = lambda *acc: {m: list(acc) for m in ('accuracy', 'f1', 'precision', 'recall')}
  arm = lambda *acc: {**scores(*acc), 'chosen_params': [{'optim.num_epochs': 2}] * 3}
  result = {'folds': folds, 'max_epochs': 10,
            'arms': {'beit': arm(0.5, 0.6, 0.7), 'hybrid': arm(0.6, 0.6, 0.8), 'fresh_beit': arm(0.4, 0.5, 0.6)},
            'references': {'logistic_regression': scores(0.55, 0.55, 0.55), 'chance': scores(0.1, 0.1, 0.1)}}
  table = compare.compare(result)
  assert table['hybrid']['vs_baseline']['accuracy']['differences'] == pytest.approx([0.1, 0.0, 0.1])
  assert 'vs_baseline' not in table['fresh_beit'] and table['beit']['fresh_beit_twin'] == 'fresh_beit'
  assert table['beit']['vs_fresh_beit']['accuracy']['mean'] == pytest.approx(0.1)
  assert not table['hybrid']['below_logistic_regression'] and table['fresh_beit']['below_logistic_regression']
  assert not table['beit']['late_epoch']
  assert table['hybrid']['accuracy_change']['paper'] == compare.PAPER_ACCURACY_GAIN
