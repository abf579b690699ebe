"""Classification on the training core: the cross-entropy loss of a task, its epoch, prediction and scoring.

Index arrays may be padded with -1: padded entries are never trained on or scored. A task is anything with the
interface `cmtl_jax/task.py` describes (`apply` takes uint8 images and preprocesses them itself).
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cmtl_jax import augment as augment_lib
from cmtl_jax import metrics as metrics_lib
from cmtl_jax.train import core


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Mean softmax cross-entropy; logits `[batch, classes]`, integer labels `[batch]`."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def make_train_epoch(task, tx, *, batch_size: int, steps: int, augment=None, impl=None,
                     ema_decay: float = 0.0) -> Callable:
  """Returns `epoch_fn(state, raw_rng, epoch, images, labels, train_idx) -> (state, {'loss'})`: one epoch of
  `core.make_epoch` on the cross-entropy of `task`, batches drawn from `train_idx` in a new order each epoch.

  Args:
    augment: a `resolve.AugmentSpec` (or None: none). When it augments (`cmtl_jax.augment.is_on`), each step splits
      its key into the augmentation's and the model's (dropout, drop path) and trains on the augmented batch's soft
      targets; otherwise the step is the plain one, with `augment.smoothing` label smoothing.
    ema_decay: the EMA's decay, for states made with `core.init_state(..., ema=True)`.

  Args of the returned function:
    state: `core.init_state`'s (donate it when jitting); raw_rng: key data (`impl`'s layout); epoch: int32.
    images: uint8 `[N, H, W, C]`, all images on the device; labels: int32 `[N]`.
    train_idx: int32 `[n]` indices of the training examples, -1 = padding; n >= steps * batch_size valid ones.
  """
  augment_fn = augment_lib.make_augment(augment, task.num_classes) if augment is not None else None
  smoothing = augment.smoothing if augment is not None else 0.0

  def loss_fn(params, idx, rng, shared):
    images, labels = shared
    if augment_fn is None:
      logits = task.apply(params, images[idx], train=True, rng=rng)
      return cross_entropy(logits, labels[idx], smoothing), {}
    augment_rng, rng = jax.random.split(rng)
    batch, targets = augment_fn(augment_rng, images[idx], labels[idx])
    logits = task.apply(params, batch, train=True, rng=rng)
    return optax.softmax_cross_entropy(logits, targets).mean(), {}

  batches = lambda rng, shared, train_idx: core.epoch_order(rng, train_idx, steps, batch_size)
  epoch = core.make_epoch(loss_fn, tx, steps=steps, batches=batches, impl=impl, ema_decay=ema_decay)

  def train_epoch(state, raw_rng, e, images, labels, train_idx):
    return epoch(state, raw_rng, e, (images, labels), train_idx)

  return train_epoch


def make_predict(task, *, batch_size: int) -> Callable:
  """Returns `predict(params, images, idx) -> (predictions [n], valid [n])` for entries of `idx` (-1 = padding)."""

  def predict(params, images, idx):
    pad = -idx.shape[0] % batch_size
    batches = jnp.pad(idx, (0, pad), constant_values=-1).reshape(-1, batch_size)

    def one_batch(batch):
      return jnp.argmax(task.apply(params, images[jnp.maximum(batch, 0)], train=False), axis=-1)

    predictions = jax.lax.map(one_batch, batches).reshape(-1)[:idx.shape[0]]
    return predictions, idx >= 0

  return predict


def make_confusion(task, *, batch_size: int) -> Callable:
  """Returns `confusion(params, images, labels, idx) -> confusion matrix [classes, classes]` over valid `idx`."""
  predict = make_predict(task, batch_size=batch_size)

  def confusion(params, images, labels, idx):
    predictions, valid = predict(params, images, idx)
    return metrics_lib.confusion_matrix(labels[jnp.maximum(idx, 0)], predictions, task.num_classes, valid)

  return confusion


def make_score(task, *, batch_size: int) -> Callable:
  """Returns `score_fn(params, idx, images, labels) -> {metric: scalar}`: accuracy and macro f1, precision and
  recall over the valid entries of `idx` (the validation program of every stack the engine trains)."""
  confusion = make_confusion(task, batch_size=batch_size)

  def score_fn(params, idx, images, labels):
    return metrics_lib.scores(confusion(params, images, labels, idx))

  return score_fn


def evaluate(task, params, images, labels, idx, batch_size: int = 256) -> dict:
  """Scores of `params` on the examples `idx` of the staged `images` / `labels`: accuracy, macro
  f1/precision/recall, and per-class numbers (`per_class`: lists by class index)."""
  confusion = jax.jit(make_confusion(task, batch_size=batch_size))
  cm = confusion(params, images, labels, jnp.asarray(idx))
  result = {k: float(v) for k, v in metrics_lib.scores(cm).items()}
  result['per_class'] = {k: np.asarray(v).tolist() for k, v in metrics_lib.per_class(cm).items()}
  return result
