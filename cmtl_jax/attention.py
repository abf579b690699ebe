"""BERT's and BEiT's self-attention with the heads laid out for XLA:CPU's batched matmuls, and a written-out backward.

transformers' Flax BERT computes attention as flax does, `einsum('...qhd,...khd->...hqk')` and
`einsum('...hqk,...khd->...qhd')` on `[batch, tokens, heads, head_dim]` arrays. On XLA:CPU those dots, with their
batch dimensions (batch, heads) not leading, run several times slower than the same dots on `[batch, heads,
tokens, head_dim]` arrays, and autodiff's backward has dots whose contracting dimension is not minor (`a^T b`),
slow in the same way. `attention` is the same maths with the heads moved ahead once per input, and a custom VJP
whose backward transposes the two such operands explicitly (behind `lax.optimization_barrier`, so that XLA does not
fold the transposes back into the dots). Alone, one layer of the embedded default (batch 32, 17 tokens, 12 heads
of 32) took 650-670 us forward and backward against 1020-1120 us.

`intercept_attention` computes transformers' `FlaxBertSelfAttention` (used as an encoder's self-attention: not
causal, no cache, no cross-attention, no head mask) and `FlaxBeitSelfAttention` (with its relative position biases,
which get their gradients) with it, when no attention weights are asked for: the same parameters, biases and
dropout bits (flax's broadcast attention dropout from the layer's own 'dropout' rng), so checkpoints and random
streams are unchanged. Any other use runs transformers' own code.
"""

import contextlib
import inspect

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
from transformers.models.beit import modeling_flax_beit
from transformers.models.bert import modeling_flax_bert


def _heads_first(x):
  """`[batch, tokens, heads, dim] <-> [batch, heads, tokens, dim]`."""
  return jnp.swapaxes(x, -3, -2)


def _transposed(x):
  """`x` with its last two axes swapped, as an array of its own (XLA would fold a plain transpose into the dot)."""
  return lax.optimization_barrier(jnp.swapaxes(x, -1, -2))


def _forward(query, key, value, bias, multiplier):
  depth = query.shape[-1]
  q = _heads_first(query / jnp.sqrt(depth).astype(query.dtype))
  k, v = _heads_first(key), _heads_first(value)
  scores = jnp.einsum('...hqd,...hkd->...hqk', q, k)
  if bias is not None:
    scores = scores + bias
  probs = jax.nn.softmax(scores).astype(query.dtype)
  weights = probs if multiplier is None else probs * multiplier
  out = _heads_first(jnp.einsum('...hqk,...hkd->...hqd', weights, v))
  return out, (q, k, v, probs, weights, multiplier)


@jax.custom_vjp
def attention(query, key, value, bias, multiplier):
  """`softmax(q k^T / sqrt(d) + bias) * multiplier @ v` per head, as flax's `dot_product_attention_weights` (which
  transformers' BERT and BEiT call) and the einsum after it compute it.

  Args:
    query, key, value: `[..., tokens, heads, head_dim]`.
    bias: None, or added to the scores `[..., heads, q_tokens, k_tokens]` (broadcast: a mask's bias, BEiT's
      relative position bias, whose gradient is the scores' summed over the broadcast axes).
    multiplier: None, or the attention dropout's keep mask / keep probability, multiplied into the softmax's output
      (broadcast); not differentiated.

  Returns:
    `[..., q_tokens, heads, head_dim]`.
  """
  return _forward(query, key, value, bias, multiplier)[0]


def _attention_fwd(query, key, value, bias, multiplier):
  out, residuals = _forward(query, key, value, bias, multiplier)
  return out, (residuals, bias)


def _attention_bwd(saved, g):
  (q, k, v, probs, weights, multiplier), bias = saved
  g = _heads_first(g)
  d_value = jnp.einsum('...hkq,...hqd->...hkd', _transposed(weights), g)
  d_weights = jnp.einsum('...hqd,...hkd->...hqk', g, v)
  d_probs = d_weights if multiplier is None else d_weights * multiplier
  d_scores = probs * (d_probs - jnp.sum(d_probs * probs, axis=-1, keepdims=True))  # Softmax's backward.
  d_query = jnp.einsum('...hqk,...hkd->...hqd', d_scores, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  d_key = jnp.einsum('...hkq,...hqd->...hkd', _transposed(d_scores), q)
  d_bias = None if bias is None else _sum_to_shape(d_scores, jnp.shape(bias)).astype(bias.dtype)
  d_multiplier = None if multiplier is None else jnp.zeros_like(multiplier)
  return _heads_first(d_query), _heads_first(d_key), _heads_first(d_value), d_bias, d_multiplier


def _sum_to_shape(x, shape):
  """`x` summed over the axes along which an array of `shape` was broadcast to `x.shape`."""
  lead = x.ndim - len(shape)
  axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
  return jnp.sum(x, axis=axes).reshape(shape) if axes else x


attention.defvjp(_attention_fwd, _attention_bwd)

_BERT = modeling_flax_bert.FlaxBertSelfAttention
_BEIT = modeling_flax_beit.FlaxBeitSelfAttention
_SIGNATURES = {cls: inspect.signature(cls.__call__) for cls in (_BERT, _BEIT)}


def _dropout_multiplier(module, deterministic, query, key):
  """flax's broadcast attention dropout (`dot_product_attention_weights(broadcast_dropout=True)`): one `[q, k]`
  keep mask for every example and head, drawn from the layer's 'dropout' rng, over the keep probability."""
  rate = module.config.attention_probs_dropout_prob
  if deterministic or rate <= 0.0:
    return None
  keep_prob = 1.0 - rate
  keep = jax.random.bernoulli(module.make_rng('dropout'), keep_prob, (1, 1, query.shape[-3], key.shape[-3]))
  return keep.astype(module.dtype) / jnp.asarray(keep_prob, dtype=module.dtype)


def _bert(module, a):
  """`FlaxBertSelfAttention.__call__` (transformers 4.57) as an encoder's self-attention, through `attention`."""
  if (module.causal or a['key_value_states'] is not None or a['init_cache'] or a['layer_head_mask'] is not None
      or a['output_attentions']):
    return None
  hidden_states, mask = a['hidden_states'], a['attention_mask']
  query = module._split_heads(module.query(hidden_states))  # pylint: disable=protected-access
  key = module._split_heads(module.key(hidden_states))  # pylint: disable=protected-access
  value = module._split_heads(module.value(hidden_states))  # pylint: disable=protected-access
  bias = None
  if mask is not None:  # transformers' bias: 0 where attended, the dtype's lowest value elsewhere.
    mask = jnp.expand_dims(mask, axis=(-3, -2))
    bias = lax.select(mask > 0, jnp.full(mask.shape, 0.0).astype(module.dtype),
                      jnp.full(mask.shape, jnp.finfo(module.dtype).min).astype(module.dtype))
  multiplier = _dropout_multiplier(module, a['deterministic'], query, key)
  return query, key, value, bias, multiplier


def _beit(module, a):
  """`FlaxBeitSelfAttention.__call__` (transformers 4.57), through `attention`."""
  if a['output_attentions']:
    return None
  hidden_states = a['hidden_states']
  heads = module.config.num_attention_heads
  shape = hidden_states.shape[:2] + (heads, module.config.hidden_size // heads)
  query = module.query(hidden_states).reshape(shape)
  value = module.value(hidden_states).reshape(shape)
  key = module.key(hidden_states).reshape(shape)
  multiplier = _dropout_multiplier(module, a['deterministic'], query, key)
  bias = jnp.array(0.0, dtype=module.dtype)
  if module.relative_position_bias is not None:
    bias = jnp.expand_dims(module.relative_position_bias(), 0).astype(query.dtype)
  if a['relative_position_bias'] is not None:
    bias = bias + a['relative_position_bias'].astype(bias.dtype)
  return query, key, value, bias, multiplier


def _attention_interceptor(next_fun, args, kwargs, context):
  """transformers' BERT and BEiT self-attention through `attention`; other modules, methods and uses unchanged."""
  module = context.module
  build = {_BERT: _bert, _BEIT: _beit}.get(type(module))
  if build is None or context.method_name != '__call__':
    return next_fun(*args, **kwargs)
  call = _SIGNATURES[type(module)].bind(module, *args, **kwargs)
  call.apply_defaults()
  inputs = build(module, call.arguments)
  if inputs is None:
    return next_fun(*args, **kwargs)
  out = attention(*inputs)
  return (out.reshape(out.shape[:-2] + (-1,)),)


@contextlib.contextmanager
def intercept_attention():
  """Within it, the self-attention layers of transformers' Flax BERT (as an encoder) and BEiT compute
  `attention`."""
  with nn.intercept_methods(_attention_interceptor):
    yield
