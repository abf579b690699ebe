"""The ablation's reference rows on the same outer folds: a logistic regression on the pixels as the models see
them, and the most-frequent-class rule."""

import functools
import time

import jax
import numpy as np
from sklearn import dummy
from sklearn import linear_model
from sklearn import metrics as sk_metrics

from cmtl_jax import data
from cmtl_jax import metrics as metrics_lib

REFERENCES = ('logistic_regression', 'chance')


@functools.partial(jax.jit, static_argnums=(1, 2))
def _flat_pixels(images, image_size: int, num_channels: int):
  return data.preprocess(images, image_size, num_channels).reshape(images.shape[0], -1)


def pixel_features(dataset: data.Dataset, idx: np.ndarray, image_size: int, num_channels: int,
                   batch: int = 256) -> np.ndarray:
  """float32 `[len(idx), image_size * image_size * num_channels]`: the images as the models see them
  (`data.preprocess`: resized, in [-1, 1]), flattened; in padded batches, so one program serves every fold."""
  return data.map_batches(lambda x: _flat_pixels(x, image_size, num_channels), dataset.images[idx], batch)


def _sk_scores(labels, predictions) -> dict:
  return {'accuracy': float(sk_metrics.accuracy_score(labels, predictions)),
          **{m: float(fn(labels, predictions, average='macro', zero_division=0))
             for m, fn in (('f1', sk_metrics.f1_score), ('precision', sk_metrics.precision_score),
                           ('recall', sk_metrics.recall_score))}}


def logistic_regression(**kwargs):
  """The pixel reference: scikit-learn's `LogisticRegression` at its defaults (L2, C = 1, lbfgs), enough
  iterations to converge on pixels."""
  return linear_model.LogisticRegression(max_iter=2000, **kwargs)


def reference_scores(dataset: data.Dataset, outer: list, beit) -> dict:
  """Per-fold scores of the reference rows on the outer folds: `logistic_regression` (fitted on each outer
  training set's pixel features at the BEiT's input size and channels, `beit` a `BeitConfig`) and `chance` (the
  most frequent class of the outer training set)."""
  out = {name: {m: [] for m in metrics_lib.METRICS} for name in REFERENCES}
  seconds = {name: 0.0 for name in REFERENCES}
  for train_idx, val_idx in outer:
    x_train = pixel_features(dataset, train_idx, beit.image_size, beit.num_channels)
    x_val = pixel_features(dataset, val_idx, beit.image_size, beit.num_channels)
    y_train, y_val = dataset.labels[train_idx], dataset.labels[val_idx]
    for name, estimator in (('logistic_regression', logistic_regression()),
                            ('chance', dummy.DummyClassifier(strategy='most_frequent'))):
      began = time.perf_counter()
      predictions = estimator.fit(x_train, y_train).predict(x_val)
      seconds[name] += time.perf_counter() - began
      for m, v in _sk_scores(y_val, predictions).items():
        out[name][m].append(v)
  for name in REFERENCES:
    out[name]['fit_seconds'] = seconds[name]
  return out
