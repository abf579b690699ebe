"""The JAX scores equal scikit-learn's on random predictions (macro averages, zero_division=0)."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from cmtl_jax import metrics


def _sklearn(y, p):
  return {
      'accuracy': skm.accuracy_score(y, p),
      'precision': skm.precision_score(y, p, average='macro', zero_division=0),
      'recall': skm.recall_score(y, p, average='macro', zero_division=0),
      'f1': skm.f1_score(y, p, average='macro', zero_division=0),
  }


@pytest.mark.parametrize('seed', range(5))
def test_scores_match_sklearn(seed):
  rng = np.random.default_rng(seed)
  num_classes = 7
  y = rng.integers(0, num_classes, 200)
  p = np.where(rng.random(200) < 0.5, y, rng.integers(0, num_classes, 200))
  if seed % 2:  # Class 6 never predicted, class 5 absent from both: the zero_division and averaging corner cases.
    p[p == 6] = 0
    y[y == 5] = 1
    p[p == 5] = 2
  cm = metrics.confusion_matrix(jnp.asarray(y), jnp.asarray(p), num_classes)
  ours = {k: float(v) for k, v in metrics.scores(cm).items()}
  want = _sklearn(y, p)
  for key in metrics.METRICS:
    assert ours[key] == pytest.approx(want[key], abs=1e-6), key
  per_class = metrics.per_class(cm)
  precision, recall, f1, support = skm.precision_recall_fscore_support(
      y, p, labels=range(num_classes), zero_division=0)
  np.testing.assert_allclose(per_class['precision'], precision, atol=1e-6)
  np.testing.assert_allclose(per_class['recall'], recall, atol=1e-6)
  np.testing.assert_allclose(per_class['f1'], f1, atol=1e-6)
  np.testing.assert_array_equal(per_class['support'], support)


def test_padding_weights_are_ignored():
  y = jnp.array([0, 1, 1, 2])
  p = jnp.array([0, 1, 0, 0])
  cm = metrics.confusion_matrix(y, p, 3, weights=jnp.array([1, 1, 1, 0]))
  assert float(metrics.scores(cm)['accuracy']) == pytest.approx(2 / 3)
  assert float(cm.sum()) == 3
