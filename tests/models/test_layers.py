"""The CPU forms of the layers' maths (`layers.Maths`): the same values as the plain forms, in the layers and in the
whole hybrid; each is what the compiled program computes; a planted fault shows."""

import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax.models import layers
from tests import conftest
from tests.helpers import build, max_abs_diff, train_loss_and_grads

_JAX_GELU = functools.partial(jax.nn.gelu, approximate=False)


def _max_rel(a, b):
  """Largest |a - b| over the largest |b|, both over all leaves (a leaf whose gradient is 0 in exact arithmetic,
  such as the key bias's under softmax, holds only rounding noise, relative to nothing)."""
  return max_abs_diff(a, b) / max(float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(b))


@pytest.fixture(name='hybrid')
def _hybrid(tiny_config):
  """The tiny BEiT with MiniLM's first layer: the embedded default's BERT shapes, at which the CPU forms are bit
  for bit the plain ones (other shapes may fuse differently and round in the last float32 bit)."""
  tiny_config.model.bert_path = ''
  model, params, _, _ = build(tiny_config)
  assert model.bert_config.attention_probs_dropout_prob > 0  # The dropout bits are part of what is compared.
  params = jax.tree.map(lambda x: x + 0.02 * jax.random.normal(jax.random.key(5), x.shape), params)  # Head != 0.
  return model, params, jax.random.normal(jax.random.key(1), (8, 8, 8, 1))


# --- Dense: the 2-D weight gradient ---------------------------------------------------------------------------------

@pytest.mark.parametrize('x_shape', [(6, 17, 24), (40, 24)])
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_dense_matmul_gives_jax_own_values_and_gradients(x_shape, dtype):
  x = jax.random.normal(jax.random.key(0), x_shape, dtype)
  kernel = jax.random.normal(jax.random.key(1), (24, 40), dtype)
  weights = jax.random.normal(jax.random.key(2), x_shape[:-1] + (40,), dtype)

  def loss(matmul, x, kernel):
    return jnp.sum(weights * jnp.tanh(matmul(x, kernel))).astype(jnp.float32)

  ours = jax.jit(jax.value_and_grad(lambda x, k: loss(layers.dense_matmul, x, k), argnums=(0, 1)))(x, kernel)
  theirs = jax.jit(jax.value_and_grad(lambda x, k: loss(jnp.matmul, x, k), argnums=(0, 1)))(x, kernel)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), ours) == jax.tree.map(lambda a: (a.shape, a.dtype), theirs)
  assert max_abs_diff(ours, theirs) == 0.0  # Bit for bit: the same dots, only written without the transpose.


def test_the_hybrid_with_2d_weight_gradients_equals_the_plain_one(hybrid):
  model, params, pixels = hybrid
  assert model.weight_grads_2d
  plain = model.clone(weight_grads_2d=False)
  init = lambda m: jax.jit(m.init)(jax.random.key(4), pixels)['params']
  assert max_abs_diff(init(model), init(plain)) == 0.0  # The same tree and random draws.
  # Bit for bit as users compile (the system tier reruns this at CMTL_TEST_OPTIMIZED=1); the test tier's elementwise
  # emitters (conftest.py) fuse the two forms differently, to one float32 rounding (2.4e-7 measured; a wrong
  # backward is off by far more: test_a_wrong_backward_is_caught).
  difference = max_abs_diff(train_loss_and_grads(model, params, pixels), train_loss_and_grads(plain, params, pixels))
  assert difference == 0.0 if conftest.OPTIMIZED else difference <= 1e-6
  # Under vmap over models (the grid's stacks) too, to rounding: batched dots may be tiled differently.
  stacked = jax.tree.map(lambda x: jnp.stack([x, 1.01 * x]), params)

  def grads(m):
    def loss(p):
      logits = m.apply({'params': p}, pixels, train=True, rngs={'dropout': jax.random.key(2),
                                                                 'droppath': jax.random.key(3)})
      return jnp.mean(jax.nn.log_softmax(logits)[:, 0])
    return jax.jit(jax.vmap(jax.grad(loss)))(stacked)

  assert max_abs_diff(grads(model), grads(plain)) < 1e-5
  # Every Dense of the hybrid (adapter and head included) computes through `dense_matmul`.
  text = str(jax.make_jaxpr(lambda p: model.apply({'params': p}, pixels))(params))
  dense_layers = 2 + 6 * model.bert_config.num_hidden_layers + 6 * model.beit_config.num_hidden_layers
  assert text.count('name=dense_matmul') == dense_layers


def test_other_contractions_go_to_lax_dot_general():
  lhs, rhs = jnp.ones((2, 3, 4)), jnp.ones((2, 4, 5))
  numbers = (((2,), (1,)), ((0,), (0,)))
  np.testing.assert_array_equal(layers.dot_general_2d(lhs, rhs, numbers), lax.dot_general(lhs, rhs, numbers))
  text = str(jax.make_jaxpr(lambda a, b: layers.dot_general_2d(a, b, numbers))(lhs, rhs))
  assert 'dense_matmul' not in text


# --- GELU in erf form ------------------------------------------------------------------------------------------------

def test_gelu_erf_is_jax_exact_gelu_to_1e_6():
  x = jnp.concatenate([jnp.linspace(-12.0, 12.0, 200_001), jnp.array([0.0, -0.0, 1e-30, -1e-30])])
  assert float(jnp.max(jnp.abs(layers.gelu_erf(x) - _JAX_GELU(x)))) < 1e-6
  grad = lambda f: jax.vmap(jax.grad(f))(x)
  assert float(jnp.max(jnp.abs(grad(layers.gelu_erf) - grad(_JAX_GELU)))) < 1e-6
  # GELU(1) = Phi(1) = 0.8413447..., GELU(-1) = -(1 - Phi(1)).
  np.testing.assert_allclose(layers.gelu_erf(jnp.array([1.0, -1.0])), [0.8413447, -0.1586553], rtol=1e-6)
  assert layers.gelu_erf(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16


def test_every_gelu_layer_computes_erf_and_none_erfc(hybrid):
  model, params, pixels = hybrid
  layer_count = model.beit_config.num_hidden_layers + model.bert_config.num_hidden_layers

  def count(m):
    text = str(jax.make_jaxpr(lambda p: m.apply({'params': p}, pixels))(params))
    return text.count(' erf '), text.count(' erfc ')

  assert count(model) == (layer_count, 0)
  assert count(model.clone(erf_gelu=False)) == (0, layer_count)
  reference = train_loss_and_grads(model.clone(erf_gelu=False), params, pixels)
  assert 0 < max_abs_diff(train_loss_and_grads(model, params, pixels), reference) < 1e-5


def test_other_activations_are_left_alone(tiny_config):
  tiny_config.model.beit.hidden_act = 'relu'
  model, params, _, _ = build(tiny_config)
  pixels = jax.random.normal(jax.random.key(1), (8, 8, 8, 1))
  text = str(jax.make_jaxpr(lambda p: model.apply({'params': p}, pixels))(params))
  assert text.count(' erf ') == model.bert_config.num_hidden_layers  # BERT's 'gelu' only, not BEiT's relu.
  with pytest.raises(ValueError, match="hidden_act 'gelu_fast' is not supported"):
    layers.activation('gelu_fast')


# --- Attention: heads first, written-out backward; the fused GPU/TPU path ------------------------------------------

@pytest.mark.parametrize('with_bias_and_dropout', [False, True])
def test_attention_equals_the_plain_form_with_its_gradients(with_bias_and_dropout):
  keys = jax.random.split(jax.random.key(0), 6)
  query, key, value, weights = (jax.random.normal(k, (3, 5, 4, 8)) for k in keys[:4])
  bias = multiplier = None
  if with_bias_and_dropout:
    bias = jax.random.normal(keys[5], (1, 4, 5, 5))  # A relative position bias: its gradient is checked too.
    multiplier = jax.random.bernoulli(keys[4], 0.9, (1, 1, 5, 5)).astype(jnp.float32) / 0.9

  def loss(fn, q, k, v, b):
    return jnp.sum(weights * fn(q, k, v, b, multiplier))

  args = (0, 1, 2, 3) if with_bias_and_dropout else (0, 1, 2)
  grads = lambda fn: jax.jit(jax.value_and_grad(lambda *a: loss(fn, *a), argnums=args))(query, key, value, bias)
  assert _max_rel(grads(layers.attention), grads(layers.plain_attention)) < 1e-5
  stack = lambda x: jnp.stack([x, 2 * x])
  vg = lambda fn: jax.jit(jax.vmap(jax.grad(lambda q, k, v: loss(fn, q, k, v, bias), argnums=(0, 1, 2))))(
      stack(query), stack(key), stack(value))
  assert _max_rel(vg(layers.attention), vg(layers.plain_attention)) < 1e-5


def test_fused_attention_equals_the_plain_form(monkeypatch):
  keys = jax.random.split(jax.random.key(2), 4)
  query, key, value = (jax.random.normal(k, (2, 5, 4, 8)) for k in keys[:3])
  bias = jax.random.normal(keys[3], (1, 4, 5, 5))
  monkeypatch.setattr(layers, 'fused_platform', lambda: True)
  calls, fused_fn = [], jax.nn.dot_product_attention
  monkeypatch.setattr(jax.nn, 'dot_product_attention', lambda *a, **k: calls.append(1) or fused_fn(*a, **k))
  fused = layers.multi_head_attention(query, key, value, bias, None, heads_first=True)
  assert calls == [1]
  layers.multi_head_attention(query, key, value, bias, jnp.ones((1, 1, 5, 5)), heads_first=True)
  assert calls == [1]  # With a dropout mask (which it cannot take): heads-first attention.
  assert max_abs_diff(fused, layers.plain_attention(query, key, value, bias, None)) < 1e-5


def test_a_wrong_backward_is_caught(monkeypatch):
  """Planted fault: the backward's explicit transposes dropped; the gradients must then disagree."""
  monkeypatch.setattr(layers, '_transposed', lax.optimization_barrier)
  keys = jax.random.split(jax.random.key(1), 4)
  q, k, v, w = (jax.random.normal(kk, (2, 6, 3, 4)) for kk in keys)
  grads = lambda fn: jax.grad(lambda *a: jnp.sum(w * fn(*a, None, None)), argnums=(0, 1, 2))(q, k, v)
  assert _max_rel(grads(layers.attention), grads(layers.plain_attention)) > 1e-2


def test_the_hybrid_with_heads_first_attention_equals_the_plain_one(hybrid):
  """The same parameters; the same train-mode loss and gradients (BERT's attention dropout on: other bits would
  change them by far more) to rounding; and every BERT and BEiT layer goes through `attention`."""
  model, params, pixels = hybrid
  plain = model.clone(heads_first_attention=False)
  init = lambda m: jax.jit(m.init)(jax.random.key(4), pixels)
  assert max_abs_diff(init(model), init(plain)) == 0.0
  assert _max_rel(train_loss_and_grads(model, params, pixels), train_loss_and_grads(plain, params, pixels)) < 1e-5
  jaxpr = str(jax.make_jaxpr(lambda p: model.apply({'params': p}, pixels))(params))
  assert jaxpr.count('name=attention') == model.bert_config.num_hidden_layers + model.beit_config.num_hidden_layers


def test_layer_scale_and_drop_path():
  module = nn.Module()
  assert layers.layer_scale(module, 'lambda_1', 4, 0.0) is None
  x = jnp.ones((1000, 3))
  kept = layers.DropPath(0.25).apply({}, x, deterministic=False, rngs={'droppath': jax.random.key(0)})
  rows = np.unique(np.asarray(kept), axis=0)
  assert sorted(rows[:, 0].tolist()) == [0.0, pytest.approx(1 / 0.75)]  # Whole examples dropped or scaled.
  assert 0.2 < float(jnp.mean(kept[:, 0] == 0)) < 0.3
  np.testing.assert_array_equal(layers.DropPath(0.25).apply({}, x, deterministic=True), x)
