"""The training core: one train state, one step maker with its divergence guard, one epoch maker with its key rule.
Classification (`train.classification`) and masked image modelling (`pretrain.mim`) each supply a loss.

Every function here is pure and closes over static things only (the loss, the optimiser, shapes); the state, the key,
the data and the indices are arguments, so the same epoch is `jax.vmap`-ed over stacked models by the search engine.

- **State**: `{'params', 'opt', 'finite'}` (+ `'ema'`, `'ema_steps'` with an EMA of the weights); `finite` turns
  False for good at the first step whose loss or update is NaN/inf, and from then on the params stay the last
  finite ones (diverged). `weights(state)` is what is evaluated and saved: the EMA when kept.
- **Keys**: epoch e of a model with key k uses `fold_in(k, e)`, split into the epoch's order key and its step keys
  (`split(step_key, steps)`): a model's draws depend on its key and the epoch only, so a model trained in a stack
  equals the same model trained alone, and a resumed run draws what an uninterrupted one draws. Keys travel into the
  program as raw key data (`[2]` uint32 for the default PRNG), laid out over devices like any other array.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnums=(1, 2))
def init_state(params, tx, ema: bool = False) -> dict:
  """The train state `{'params', 'opt', 'finite'}`, with `'ema'` (a copy of the params) and `'ema_steps'` when
  `ema`; params are copied, so donating the state to a step never deletes the caller's arrays (e.g. pretrained
  weights shared by several models).

  Jitted (one program per optimiser and shapes): run eagerly, the optimiser's init is hundreds of small ops, each
  compiled on first use, seconds on a CPU before the first step."""
  params = jax.tree.map(jnp.array, params)
  state = {'params': params, 'opt': tx.init(params), 'finite': jnp.array(True)}
  if ema:
    state['ema'] = jax.tree.map(jnp.array, params)
    state['ema_steps'] = jnp.zeros((), jnp.int32)
  return state


def weights(state):
  """The weights a state is evaluated, selected and saved with: the EMA when the state keeps one, else the
  params."""
  return state['ema'] if 'ema' in state else state['params']


def ema_update(ema, params, steps, decay: float, finite):
  """One EMA step (timm's `ModelEmaV3` with warmup, TensorFlow's `ExponentialMovingAverage(num_updates)`): the
  decay is min(decay, (1 + t) / (10 + t)) at update t (0-based), so early updates follow the weights instead of
  keeping the initial ones for thousands of steps; a non-finite step leaves the EMA as it was."""
  t = steps.astype(jnp.float32)
  d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
  return jax.tree.map(lambda e, p: jnp.where(finite, d * e + (1.0 - d) * p, e), ema, params)


def model_rngs(seed: int, stream: int = 0):
  """(init_rng, train_rng) of model number `stream` of a run (the CV fold in a search; 0 for a single run)."""
  return tuple(jax.random.split(jax.random.fold_in(jax.random.key(seed), stream)))


def steps_per_epoch(num_train: int, batch_size: int) -> int:
  """Full batches per epoch (the last partial batch is dropped; every epoch sees a new random order)."""
  return num_train // batch_size


def epoch_order(rng, train_idx, steps: int, batch_size: int):
  """A random order of the valid (>= 0) entries of `train_idx`, cut into `[steps, batch_size]` batches."""
  keys = jax.random.uniform(rng, train_idx.shape)
  keys = jnp.where(train_idx >= 0, keys, 2.0)  # Padding sorts last and falls off the end.
  return train_idx[jnp.argsort(keys)][:steps * batch_size].reshape(steps, batch_size)


def make_step(loss_fn: Callable, tx, ema_decay: float = 0.0) -> Callable:
  """Returns `step(state, batch, rng, shared) -> (state, (loss, aux))`.

  Args:
    loss_fn: `loss_fn(params, batch, rng, shared) -> (scalar loss, aux dict of scalars)`.
    tx: the optax optimiser.
    ema_decay: the EMA's decay (`ema_update`) for states that keep one (`init_state(..., ema=True)`).
  """
  def step(state, batch, rng, shared):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'], batch, rng, shared)
    updates, opt = tx.update(grads, state['opt'], state['params'])
    # A non-finite loss or update marks the model diverged for good, and its parameters stop moving. The optimiser
    # state is not rolled back (a diverged model never uses it again): selecting old-or-new moments was two extra
    # passes over the parameters' size per step (~5 % of a CPU step, measured).
    finite = state['finite'] & jnp.isfinite(loss)
    for update in jax.tree.leaves(updates):
      finite &= jnp.all(jnp.isfinite(update))
    params = jax.tree.map(lambda p, u: jnp.where(finite, (p + u).astype(p.dtype), p), state['params'], updates)
    new = {'params': params, 'opt': opt, 'finite': finite}
    if 'ema' in state:
      new['ema'] = ema_update(state['ema'], params, state['ema_steps'], ema_decay, finite)
      new['ema_steps'] = state['ema_steps'] + 1
    return new, (loss, aux)

  return step


def make_epoch(loss_fn: Callable, tx, *, steps: int, batches: Callable, impl=None,
               ema_decay: float = 0.0) -> Callable:
  """Returns `epoch_fn(state, raw_rng, epoch, shared, own) -> (state, metrics)`: `steps` steps under `lax.scan`.

  Args:
    loss_fn: as `make_step`'s.
    batches: `batches(order_rng, shared, own)` -> the epoch's batches, a tree with a leading `[steps]` axis (the
      step's `batch`).
    impl: the PRNG implementation of the raw key data (None: the default).
    ema_decay: as `make_step`'s.

  Args of the returned function:
    state: `init_state`'s (donate it when jitting); raw_rng: the model's key data; epoch: int32 (1-based);
    shared: data every model reads (staged images, ...); own: this model's data (its training indices, ...).

  Returns of it: the state, and `{'loss': mean over the steps (NaN once diverged), **aux means}`.
  """
  step = make_step(loss_fn, tx, ema_decay)

  def epoch_fn(state, raw_rng, epoch, shared, own):
    rng = jax.random.fold_in(jax.random.wrap_key_data(raw_rng, impl=impl), epoch)
    order_rng, step_rng = jax.random.split(rng)
    step_rngs = jax.random.split(step_rng, steps)
    state, (losses, aux) = jax.lax.scan(lambda s, b: step(s, b[0], b[1], shared), state,
                                        (batches(order_rng, shared, own), step_rngs))
    metrics = {'loss': jnp.where(state['finite'], losses.mean(), jnp.nan)}  # A diverged model's loss is NaN.
    metrics.update({k: v.mean() for k, v in aux.items()})
    return state, metrics

  return epoch_fn
