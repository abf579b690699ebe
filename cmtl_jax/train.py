"""Pure training and evaluation steps, and `fit`, the loop that trains one model.

The step factories close over only static things (the module, the optimiser, shapes); everything that changes is an
argument, so the same functions are `jax.vmap`-ed over stacked models by the grid engine. Index arrays may be
padded with -1: padded entries are never trained on or scored.
"""

import functools
import math
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cmtl_jax import data
from cmtl_jax import metrics as metrics_lib
from cmtl_jax import prng


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Mean softmax cross-entropy; logits `[batch, classes]`, integer labels `[batch]`."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


@functools.partial(jax.jit, static_argnums=1)
def init_state(params, tx) -> dict:
  """The train state `{'params', 'opt', 'finite'}`; params are copied, so donating the state to a step never
  deletes the caller's arrays (e.g. pretrained weights shared by several models). `finite` turns False for good
  at the first step whose loss or update is NaN/inf: from then on the params no longer change (diverged).

  Jitted (one program per optimiser and shapes): run eagerly, the optimiser's init is hundreds of small ops, each
  compiled on first use, seconds on a CPU before the first step."""
  params = jax.tree.map(jnp.array, params)
  return {'params': params, 'opt': tx.init(params), 'finite': jnp.array(True)}


def model_rngs(seed: int, stream: int = 0):
  """(init_rng, train_rng) of model number `stream` of a run (the CV fold in a grid; 0 for a single run)."""
  return tuple(jax.random.split(jax.random.fold_in(jax.random.key(seed), stream)))


def steps_per_epoch(num_train: int, batch_size: int) -> int:
  """Full batches per epoch (the last partial batch is dropped; every epoch sees a new random order)."""
  return num_train // batch_size


def epoch_order(rng, train_idx, steps: int, batch_size: int):
  """A random order of the valid (>= 0) entries of `train_idx`, cut into `[steps, batch_size]` batches."""
  keys = jax.random.uniform(rng, train_idx.shape)
  keys = jnp.where(train_idx >= 0, keys, 2.0)  # Padding sorts last and falls off the end.
  return train_idx[jnp.argsort(keys)][:steps * batch_size].reshape(steps, batch_size)


def make_train_epoch(model, tx, *, batch_size: int, steps: int, label_smoothing: float = 0.0) -> Callable:
  """Returns `train_epoch(state, rng, images, labels, train_idx) -> (state, mean_loss)`.

  Args of the returned function:
    state: `{'params', 'opt'}` (donate it when jitting).
    rng: PRNG key of this epoch (shuffling, dropout, drop-path).
    images: uint8 `[N, H, W, C]`, all images on the device; labels: int32 `[N]`.
    train_idx: int32 `[n]` indices of the training examples, -1 = padding; n >= steps * batch_size valid ones.
  """
  beit = model.beit_config

  def loss_fn(params, pixels, labels, rng):
    # The same bits as the default threefry keys, from a hash XLA:CPU fuses (prng.py).
    dropout_rng, droppath_rng = (prng.unrolled(k) for k in jax.random.split(rng))
    logits = model.apply({'params': params}, pixels, train=True,
                         rngs={'dropout': dropout_rng, 'droppath': droppath_rng})
    return cross_entropy(logits, labels, label_smoothing)

  def train_step(state, batch, images, labels):
    idx, rng = batch
    pixels = data.preprocess(images[idx], beit.image_size, beit.num_channels)
    loss, grads = jax.value_and_grad(loss_fn)(state['params'], pixels, labels[idx], rng)
    updates, opt = tx.update(grads, state['opt'], state['params'])
    # A non-finite loss or update marks the model diverged for good, and its parameters stop moving: they stay the
    # last finite ones. The optimiser state is not rolled back (a diverged model never uses it again): selecting
    # old-or-new moments was two extra passes over the parameters' size per step (~5 % of a CPU step, measured).
    finite = state['finite'] & jnp.isfinite(loss)
    for update in jax.tree.leaves(updates):
      finite &= jnp.all(jnp.isfinite(update))
    params = jax.tree.map(lambda p, u: jnp.where(finite, (p + u).astype(p.dtype), p), state['params'], updates)
    return {'params': params, 'opt': opt, 'finite': finite}, loss

  def train_epoch(state, rng, images, labels, train_idx):
    order_rng, step_rng = jax.random.split(rng)
    order = epoch_order(order_rng, train_idx, steps, batch_size)
    step_rngs = jax.random.split(step_rng, steps)
    state, losses = jax.lax.scan(lambda s, b: train_step(s, b, images, labels), state, (order, step_rngs))
    return state, jnp.where(state['finite'], losses.mean(), jnp.nan)  # A diverged model's loss is NaN.

  return train_epoch


def make_keyed_epoch(model, tx, *, batch_size: int, steps: int, label_smoothing: float = 0.0,
                     impl=None) -> Callable:
  """Returns `epoch_fn(state, raw_rng, epoch, images, labels, train_idx) -> (state, mean_loss)`: one epoch of
  `make_train_epoch` with key `fold_in(wrap_key_data(raw_rng, impl), epoch)`.

  The single-model program of both `fit` and the grid's stacks (which `jax.vmap` it over models): one function,
  so one HLO, which the persistent compilation cache serves to both. The key travels as raw data (`[2]` uint32 for
  the default PRNG, `impl`), which sharded stacks lay out over devices like any other array.
  """
  one_epoch = make_train_epoch(model, tx, batch_size=batch_size, steps=steps, label_smoothing=label_smoothing)

  def epoch_fn(state, raw_rng, epoch, images, labels, train_idx):
    rng = jax.random.fold_in(jax.random.wrap_key_data(raw_rng, impl=impl), epoch)
    return one_epoch(state, rng, images, labels, train_idx)

  return epoch_fn


def make_predict(model, *, batch_size: int) -> Callable:
  """Returns `predict(params, images, idx) -> (predictions [n], valid [n])` for entries of `idx` (-1 = padding)."""
  beit = model.beit_config

  def predict(params, images, idx):
    pad = -idx.shape[0] % batch_size
    batches = jnp.pad(idx, (0, pad), constant_values=-1).reshape(-1, batch_size)

    def one_batch(batch):
      pixels = data.preprocess(images[jnp.maximum(batch, 0)], beit.image_size, beit.num_channels)
      return jnp.argmax(model.apply({'params': params}, pixels, train=False), axis=-1)

    predictions = jax.lax.map(one_batch, batches).reshape(-1)[:idx.shape[0]]
    return predictions, idx >= 0

  return predict


def make_evaluate(model, *, num_classes: int, batch_size: int) -> Callable:
  """Returns `confusion(params, images, labels, idx) -> confusion matrix [classes, classes]` over valid `idx`."""
  predict = make_predict(model, batch_size=batch_size)

  def confusion(params, images, labels, idx):
    predictions, valid = predict(params, images, idx)
    return metrics_lib.confusion_matrix(labels[jnp.maximum(idx, 0)], predictions, num_classes, valid)

  return confusion


def make_score(model, *, num_classes: int, batch_size: int) -> Callable:
  """Returns `score_fn(params, idx, images, labels) -> {metric: scalar}`: accuracy and macro f1, precision and
  recall over the valid entries of `idx` (the validation program of `fit` and of the grid's stacks)."""
  confusion = make_evaluate(model, num_classes=num_classes, batch_size=batch_size)

  def score_fn(params, idx, images, labels):
    return metrics_lib.scores(confusion(params, images, labels, idx))

  return score_fn


def evaluate(model, params, dataset: data.Dataset, split: str = 'test', batch_size: int = 256) -> dict:
  """Scores on one split of `dataset`: accuracy, macro f1/precision/recall, and per-class numbers."""
  confusion = jax.jit(make_evaluate(model, num_classes=dataset.num_classes, batch_size=batch_size))
  cm = confusion(params, *data.stage(dataset), jnp.asarray(getattr(dataset, split)))
  result = {k: float(v) for k, v in metrics_lib.scores(cm).items()}
  result['per_class'] = {k: np.asarray(v).tolist() for k, v in metrics_lib.per_class(cm).items()}
  return result


def _eta(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s'


def fit(model, tx, params, images, labels, train_idx, val_idx, *, num_epochs: int, batch_size: int,
        num_classes: int, rng, eval_batch_size: int = 256, label_smoothing: float = 0.0,
        steps: Optional[int] = None, log: Optional[Callable[[str], None]] = print):
  """Trains one model for `num_epochs`, scoring the validation indices after each epoch.

  Returns:
    (params, history): final parameters, and one dict per epoch with `epoch`, `loss`, `seconds`, `diverged` and
    the validation `accuracy`, `f1`, `precision`, `recall` (NaN once diverged; the params are then the last
    finite ones).
  """
  steps = steps or steps_per_epoch(int(np.sum(np.asarray(train_idx) >= 0)), batch_size)
  typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)  # Also takes a legacy raw `PRNGKey`.
  train_epoch = jax.jit(make_keyed_epoch(model, tx, batch_size=batch_size, steps=steps,
                                         label_smoothing=label_smoothing,
                                         impl=jax.random.key_impl(rng) if typed else None), donate_argnums=0)
  score = jax.jit(make_score(model, num_classes=num_classes, batch_size=eval_batch_size))
  train_idx = jnp.asarray(train_idx)
  val_idx = None if val_idx is None else jnp.asarray(val_idx)
  raw_rng = jax.random.key_data(rng) if typed else rng
  state = init_state(params, tx)
  history = []
  start = time.perf_counter()
  for epoch in range(1, num_epochs + 1):
    state, loss = train_epoch(state, raw_rng, np.int32(epoch), images, labels, train_idx)
    record = {'epoch': epoch, 'loss': float(loss), 'diverged': not bool(state['finite'])}
    line = f'epoch {epoch}/{num_epochs}  loss {record["loss"]:.4f}'
    if val_idx is not None:
      scores = score(state['params'], val_idx, images, labels)
      # A diverged model has no score (scikit-learn's error_score=nan).
      record.update({f'val_{k}': math.nan if record['diverged'] else float(v) for k, v in scores.items()})
      line += f'  val_acc {record["val_accuracy"]:.4f}  val_f1 {record["val_f1"]:.4f}'
    record['seconds'] = elapsed = time.perf_counter() - start
    history.append(record)
    if log:
      log(f'{line}  {_eta(elapsed)} elapsed  ETA {_eta(elapsed / epoch * (num_epochs - epoch))}')
  return state['params'], history
