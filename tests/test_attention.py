"""`attention.attention` and `intercept_attention`: flax's / transformers' BERT and BEiT attention, heads first."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen.attention import dot_product_attention_weights
import transformers
from transformers.models.beit import modeling_flax_beit
from transformers.models.bert import modeling_flax_bert

from cmtl_jax import attention
from cmtl_jax import model as model_lib
from tests.conftest import train_loss_and_grads


def _max_rel(a, b):
  """Largest |a - b| over the largest |b|, both over all leaves (a leaf whose gradient is 0 in exact arithmetic,
  such as the key bias's under softmax, holds only rounding noise, relative to nothing)."""
  diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  return diff / max(float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(b))


def _flax_attention(query, key, value, bias, multiplier):
  weights = dot_product_attention_weights(query, key, bias=bias)
  if multiplier is not None:
    weights = weights * multiplier
  return jnp.einsum('...hqk,...khd->...qhd', weights, value)


@pytest.mark.parametrize('with_bias_and_dropout', [False, True])
def test_attention_equals_flax_with_its_gradients(with_bias_and_dropout):
  keys = jax.random.split(jax.random.key(0), 6)
  query, key, value, weights = (jax.random.normal(k, (3, 5, 4, 8)) for k in keys[:4])
  bias = multiplier = None
  if with_bias_and_dropout:
    bias = jnp.where(jnp.arange(5) < 4, 0.0, jnp.finfo(jnp.float32).min)[None, None, None, :]
    multiplier = jax.random.bernoulli(keys[4], 0.9, (1, 1, 5, 5)).astype(jnp.float32) / 0.9

  def loss(fn, q, k, v):
    return jnp.sum(weights * fn(q, k, v, bias, multiplier))

  ours = jax.jit(jax.value_and_grad(lambda *a: loss(attention.attention, *a), argnums=(0, 1, 2)))(query, key, value)
  theirs = jax.jit(jax.value_and_grad(lambda *a: loss(_flax_attention, *a), argnums=(0, 1, 2)))(query, key, value)
  assert _max_rel(ours, theirs) < 1e-5
  # Under vmap (the grid's stacked models) too.
  stack = lambda x: jnp.stack([x, 2 * x])
  vg = lambda fn: jax.jit(jax.vmap(jax.grad(lambda *a: loss(fn, *a), argnums=(0, 1, 2))))(
      stack(query), stack(key), stack(value))
  assert _max_rel(vg(attention.attention), vg(_flax_attention)) < 1e-5


def test_a_wrong_backward_is_caught(monkeypatch):
  """Planted fault: the backward's explicit transposes dropped; the gradients must then disagree with flax's."""
  monkeypatch.setattr(attention, '_transposed', lax.optimization_barrier)
  keys = jax.random.split(jax.random.key(1), 4)
  q, k, v, w = (jax.random.normal(kk, (2, 6, 3, 4)) for kk in keys)
  grads = lambda fn: jax.grad(lambda *a: jnp.sum(w * fn(*a, None, None)), argnums=(0, 1, 2))(q, k, v)
  assert _max_rel(grads(attention.attention), grads(_flax_attention)) > 1e-2


@pytest.fixture(name='hybrid')
def _hybrid(tiny_config):
  model, params, _, _ = model_lib.from_config(tiny_config, 10, jax.random.key(0))
  assert model.bert_config.attention_probs_dropout_prob > 0  # The dropout bits are part of what is compared.
  return model, params, jax.random.normal(jax.random.key(1), (8, 8, 8, 1))


def test_the_hybrid_with_it_is_transformers_bert(hybrid):
  """The same parameters; the same train-mode loss and gradients (BERT's attention dropout on: other bits would
  change them by far more) to rounding; and every BERT and BEiT layer goes through `attention`."""
  model, params, pixels = hybrid
  assert model.heads_first_attention
  plain = model.clone(heads_first_attention=False)
  init = lambda m: jax.jit(m.init)(jax.random.key(4), pixels)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), init(model), init(plain)))
  params = jax.tree.map(lambda x: x + 0.02 * jax.random.normal(jax.random.key(5), x.shape), params)  # Head != 0.
  assert _max_rel(train_loss_and_grads(model, params, pixels), train_loss_and_grads(plain, params, pixels)) < 1e-5
  jaxpr = str(jax.make_jaxpr(lambda p: model.apply({'params': p}, pixels))(params))
  layers = model.bert_config.num_hidden_layers + model.beit_config.num_hidden_layers
  assert jaxpr.count('name=attention') == layers


def test_other_uses_run_transformers_own_code(hybrid):
  model, _, _ = hybrid
  layer = modeling_flax_bert.FlaxBertSelfAttention(model.bert_config)
  hidden = jax.random.normal(jax.random.key(0), (2, 5, model.bert_config.hidden_size))
  mask = jnp.ones((2, 5), jnp.int32)
  variables = layer.init(jax.random.key(1), hidden, mask, None)
  with attention.intercept_attention():
    ours = layer.apply(variables, hidden, mask, None, output_attentions=True)
  theirs = layer.apply(variables, hidden, mask, None, output_attentions=True)
  assert len(ours) == 2  # The weights returned: transformers' path.
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)


def test_beit_attention_with_relative_position_biases_and_dropout():
  """BEiT's layer with its own relative position bias table (a parameter: its gradient too), a shared bias passed
  in, and attention dropout: loss and gradients as transformers' own, to rounding."""
  config = transformers.BeitConfig(hidden_size=32, num_attention_heads=2, attention_probs_dropout_prob=0.2)
  layer = modeling_flax_beit.FlaxBeitSelfAttention(config, window_size=(2, 2))
  hidden = jax.random.normal(jax.random.key(0), (3, 5, 32))
  shared = jax.random.normal(jax.random.key(1), (2, 5, 5))
  variables = layer.init(jax.random.key(2), hidden)
  variables = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(3), x.shape), variables)
  assert 'relative_position_bias' in variables['params']
  weights = jax.random.normal(jax.random.key(4), (3, 5, 32))

  def loss(v, h):
    out, = layer.apply(v, h, shared, deterministic=False, rngs={'dropout': jax.random.key(5)})
    return jnp.sum(weights * out)

  grads = jax.value_and_grad(loss, argnums=(0, 1))
  theirs = jax.jit(lambda v, h: grads(v, h))(variables, hidden)
  with attention.intercept_attention():  # A function of its own: jit would reuse the trace made without.
    ours = jax.jit(lambda v, h: grads(v, h))(variables, hidden)
    assert 'name=attention' in str(jax.make_jaxpr(lambda v, h: loss(v, h))(variables, hidden))
  assert _max_rel(ours, theirs) < 1e-5
  assert float(jnp.max(jnp.abs(ours[1][0]['params']['relative_position_bias']['relative_position_bias_table']))) > 0
