"""The training core: the epoch's order and key rule, the divergence guard."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cmtl_jax import optim
from cmtl_jax.train import core


def test_epoch_order_uses_each_valid_index_once_and_drops_padding():
  idx = jnp.array([5, 9, -1, 2, 7, -1, 11, 3], jnp.int32)
  order = core.epoch_order(jax.random.key(0), idx, steps=3, batch_size=2)
  assert order.shape == (3, 2)
  got = np.asarray(order).ravel()
  assert len(set(got.tolist())) == 6 and set(got.tolist()) <= {5, 9, 2, 7, 11, 3}
  other = core.epoch_order(jax.random.key(1), idx, steps=3, batch_size=2)
  assert not np.array_equal(np.asarray(other), np.asarray(order))


def _linear_epoch(tx, steps=3, impl=None, ema_decay=0.0):
  """An epoch of a least-squares model whose batches are rows of `own`, and whose loss reads the step's key."""
  def loss_fn(params, batch, rng, shared):
    x, y = shared
    noise = 1e-3 * jax.random.normal(rng, ())
    return jnp.mean((x[batch] @ params['w'] - y[batch]) ** 2) + noise, {'noise': noise}

  batches = lambda rng, shared, own: own[jax.random.permutation(rng, own.shape[0])][:steps]
  return core.make_epoch(loss_fn, tx, steps=steps, batches=batches, impl=impl, ema_decay=ema_decay)


def _problem():
  x = jax.random.normal(jax.random.key(0), (12, 3))
  return (x, x @ jnp.array([1.0, -2.0, 0.5])), jnp.arange(12).reshape(6, 2)


def test_an_epochs_draws_depend_on_its_key_and_epoch_only():
  tx = optax.sgd(0.1)
  epoch = jax.jit(_linear_epoch(tx))
  shared, own = _problem()
  state = core.init_state({'w': jnp.zeros(3)}, tx)
  raw = jax.random.key_data(jax.random.key(3))
  _, first = epoch(state, raw, np.int32(2), shared, own)
  _, again = epoch(state, raw, np.int32(2), shared, own)  # Epoch 2 again, whatever ran before: the same draws.
  _, other = epoch(state, raw, np.int32(3), shared, own)
  assert float(first['noise']) == float(again['noise']) != float(other['noise'])
  # The key rule: epoch e uses fold_in(key, e), split into the order key and the step keys.
  order_rng, step_rng = jax.random.split(jax.random.fold_in(jax.random.key(3), 2))
  expected = np.mean([1e-3 * float(jax.random.normal(k, ())) for k in jax.random.split(step_rng, 3)])
  np.testing.assert_allclose(float(first['noise']), expected, rtol=1e-5)
  del order_rng


def test_another_prng_implementation_draws_its_own_numbers():
  tx = optax.sgd(0.1)
  shared, own = _problem()
  state = core.init_state({'w': jnp.zeros(3)}, tx)
  default = jax.jit(_linear_epoch(tx))(state, jax.random.key_data(jax.random.key(3)), np.int32(1), shared, own)
  rbg_key = jax.random.key(3, impl='rbg')
  rbg = jax.jit(_linear_epoch(tx, impl=jax.random.key_impl(rbg_key)))(state, jax.random.key_data(rbg_key),
                                                                      np.int32(1), shared, own)
  assert np.isfinite(float(rbg[1]['loss'])) and float(rbg[1]['noise']) != float(default[1]['noise'])


def test_a_non_finite_step_marks_the_model_diverged_and_keeps_its_last_finite_params():
  tx = optim.make_optimizer('sgdm', 1e38, total_steps=10, warmup_fraction=0.0, decay='constant')
  epoch = jax.jit(_linear_epoch(tx, steps=3))
  shared, own = _problem()
  state = core.init_state({'w': jnp.ones(3)}, tx)
  state, metrics = epoch(state, jax.random.key_data(jax.random.key(0)), np.int32(1), shared, own)
  assert not bool(state['finite']) and np.isnan(float(metrics['loss']))
  assert np.isfinite(np.asarray(state['params']['w'])).all()
  good = jax.jit(_linear_epoch(optax.sgd(1e-2)))
  fine, _ = good(core.init_state({'w': jnp.ones(3)}, optax.sgd(1e-2)), jax.random.key_data(jax.random.key(0)),
                 np.int32(1), shared, own)
  assert bool(fine['finite'])


def test_the_ema_follows_the_warmed_up_recurrence_and_is_what_is_evaluated():
  tx = optax.sgd(0.05)
  epoch = jax.jit(_linear_epoch(tx, steps=1, ema_decay=0.9))
  shared, own = _problem()
  state = core.init_state({'w': jnp.zeros(3)}, tx, True)
  ema = np.zeros(3)
  for e in range(1, 6):  # One step per epoch: the params after every step.
    state, _ = epoch(state, jax.random.key_data(jax.random.key(0)), np.int32(e), shared, own)
    t = e - 1
    d = min(0.9, (1 + t) / (10 + t))  # 0.1, 0.18, 0.25, ...: early updates follow the weights.
    ema = d * ema + (1 - d) * np.asarray(state['params']['w'], np.float64)
    np.testing.assert_allclose(state['ema']['w'], ema, rtol=1e-5)
  assert int(state['ema_steps']) == 5
  assert core.weights(state) is state['ema'] and not np.allclose(state['ema']['w'], state['params']['w'])
  plain = core.init_state({'w': jnp.zeros(3)}, tx)
  assert 'ema' not in plain and core.weights(plain) is plain['params']


def test_a_diverged_step_leaves_the_ema_as_it_was():
  tx = optim.make_optimizer('sgdm', 1e38, total_steps=10, warmup_fraction=0.0, decay='constant')
  epoch = jax.jit(_linear_epoch(tx, steps=3, ema_decay=0.5))
  shared, own = _problem()
  state, _ = epoch(core.init_state({'w': jnp.ones(3)}, tx, True), jax.random.key_data(jax.random.key(0)),
                   np.int32(1), shared, own)
  assert not bool(state['finite']) and np.isfinite(np.asarray(state['ema']['w'])).all()
