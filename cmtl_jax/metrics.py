"""Classification scores computed in JAX from a confusion matrix.

Macro averages follow scikit-learn's defaults with `zero_division=0`: a class's precision (recall, F1) is 0 when
its denominator is 0, and the average runs over the classes that occur in the labels or the predictions.
"""

import jax.numpy as jnp

from cmtl_jax import config as config_lib

METRICS = config_lib.METRICS  # The scorer names, defined once with the config keys that name them (refit).


def confusion_matrix(labels, predictions, num_classes: int, weights=None):
  """`[num_classes, num_classes]` float32 counts, rows = true class, columns = predicted class.

  `weights` (`[batch]`, 0 or 1) masks out padding examples.
  """
  if weights is None:
    weights = jnp.ones(labels.shape, jnp.float32)
  cm = jnp.zeros((num_classes, num_classes), jnp.float32)
  return cm.at[labels, predictions].add(weights.astype(jnp.float32))


def _safe_div(num, den):
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def per_class(cm):
  """Per-class precision, recall, F1 and support, each `[num_classes]`."""
  tp = jnp.diagonal(cm)
  predicted = cm.sum(axis=0)
  actual = cm.sum(axis=1)
  return {
      'precision': _safe_div(tp, predicted),
      'recall': _safe_div(tp, actual),
      'f1': _safe_div(2 * tp, predicted + actual),
      'support': actual,
  }


def scores(cm):
  """Accuracy and macro precision / recall / F1 (scalars) from a confusion matrix `[C, C]`."""
  classes = per_class(cm)
  present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
  n_present = jnp.maximum(present.sum(), 1)
  macro = {k: jnp.where(present, classes[k], 0.0).sum() / n_present for k in ('precision', 'recall', 'f1')}
  return {'accuracy': _safe_div(jnp.trace(cm), cm.sum()), **macro}
