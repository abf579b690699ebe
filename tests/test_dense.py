"""`dense.dense_matmul` and `intercept_dense`: the same values as flax's Dense under JAX's own transpose rule."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from cmtl_jax import dense
from cmtl_jax import model as model_lib
from tests.conftest import max_abs_diff as _max_diff


@pytest.mark.parametrize('x_shape', [(6, 17, 24), (40, 24)])
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_dense_matmul_gives_jax_own_values_and_gradients(x_shape, dtype):
  x = jax.random.normal(jax.random.key(0), x_shape, dtype)
  kernel = jax.random.normal(jax.random.key(1), (24, 40), dtype)
  weights = jax.random.normal(jax.random.key(2), x_shape[:-1] + (40,), dtype)

  def loss(matmul, x, kernel):
    return jnp.sum(weights * jnp.tanh(matmul(x, kernel))).astype(jnp.float32)

  ours = jax.jit(jax.value_and_grad(lambda x, k: loss(dense.dense_matmul, x, k), argnums=(0, 1)))(x, kernel)
  theirs = jax.jit(jax.value_and_grad(lambda x, k: loss(jnp.matmul, x, k), argnums=(0, 1)))(x, kernel)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), ours) == jax.tree.map(lambda a: (a.shape, a.dtype), theirs)
  assert _max_diff(ours, theirs) == 0.0  # Bit for bit: the same dots, only written without the transpose.


def test_the_hybrid_with_2d_weight_gradients_equals_the_plain_one(tiny_config):
  model, params, _, _ = model_lib.from_config(tiny_config, 10, jax.random.key(0))
  assert model.weight_grads_2d
  plain = model.clone(weight_grads_2d=False)
  pixels = jax.random.normal(jax.random.key(1), (8, 8, 8, 1))
  labels = jnp.arange(8) % 10

  def loss(m, p):
    logits = m.apply({'params': p}, pixels, train=True,
                     rngs={'dropout': jax.random.key(2), 'droppath': jax.random.key(3)})
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), labels])

  grads = {}
  for name, m in [('2d', model), ('plain', plain)]:
    init = jax.jit(m.init)(jax.random.key(4), pixels)['params']
    grads[name] = init, jax.jit(jax.value_and_grad(lambda p, m=m: loss(m, p)))(params)
  # The same parameter tree from init (names, shapes, random draws) and the same loss and gradients.
  assert _max_diff(grads['2d'][0], grads['plain'][0]) == 0.0
  assert _max_diff(grads['2d'][1], grads['plain'][1]) == 0.0
  # Under vmap over models (the grid's stacks) too, to rounding: batched dots may be tiled differently.
  stacked = jax.tree.map(lambda x: jnp.stack([x, 1.01 * x]), params)
  vmapped = {name: jax.jit(jax.vmap(jax.grad(lambda p, m=m: loss(m, p))))(stacked)
             for name, m in [('2d', model), ('plain', plain)]}
  assert _max_diff(vmapped['2d'], vmapped['plain']) < 1e-5


def test_a_dense_with_its_own_dot_general_is_left_alone():
  calls = []

  def counting_dot_general(*args, **kwargs):
    calls.append(1)
    return jax.lax.dot_general(*args, **kwargs)

  layer = nn.Dense(3, dot_general=counting_dot_general)
  x = jnp.ones((2, 4))
  with dense.intercept_dense():
    params = layer.init(jax.random.key(0), x)
    y = layer.apply(params, x)
  assert calls and y.shape == (2, 3)
