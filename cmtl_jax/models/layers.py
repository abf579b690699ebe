"""The layers BERT and BEiT share: Dense, activations, self-attention (with relative position bias), the dense +
dropout (+ post-LayerNorm) output block, DropPath and LayerScale.

Three CPU speed-ups are options of these layers (`Maths`), each the same function as the plain form:

- `weight_grads_2d`: a Dense kernel's gradient as one 2-D dot (`dense_matmul`). For `y = x @ kernel` with
  `x [..., in]`, JAX's transpose rule contracts all leading axes of `g` and `x` and transposes the result, which
  XLA:CPU runs as a copy of `g` plus a dot with both operands transposed; `x.reshape(-1, in)^T @ g.reshape(-1, out)`
  is the same values without the copy (bit for bit in float32 and bfloat16, tests/test_layers.py).
- `erf_gelu`: GELU as `x (1 + erf(x / sqrt 2)) / 2`, the form of BERT's code and of `torch.nn.functional.gelu`.
  `jax.nn.gelu(approximate=False)` computes `0.5 x erfc(-x / sqrt 2)`, which XLA:CPU expands into two branches with an
  `exp` (~2.5x the time); the two differ by < 1e-6.
- `heads_first_attention`: attention on `[batch, heads, tokens, head_dim]` arrays with a written-out backward
  (`attention`). XLA:CPU runs batched dots whose batch axes do not lead, and autodiff's `a^T b` dots, several times
  slower; the backward transposes those operands explicitly, behind `lax.optimization_barrier` so that XLA does not
  fold the transposes back into the dots.

On GPU/TPU, attention without dropout goes through `jax.nn.dot_product_attention` (a fused kernel where the platform
has one), the relative position bias passed as its `bias`.
"""

import dataclasses
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from cmtl_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Maths:
  """How the layers compute (never what): see the module docstring. All True is the fast CPU form."""
  weight_grads_2d: bool = True
  erf_gelu: bool = True
  heads_first_attention: bool = True


class ConfigModule(nn.Module):
  """Base of the model parts built from one Hugging Face config (`BertConfig` / `BeitConfig`): the fields
  `config`, `maths` (how the layers compute, `Maths`) and `dtype` (the computation dtype; parameters stay
  float32). Subclasses narrow `config`'s type and add their own fields after these."""
  config: Any
  maths: Maths = Maths()
  dtype: Any = jnp.float32


# --- Dense ---------------------------------------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense_matmul(x, kernel, precision=None):
  """`x [..., in] @ kernel [in, out] -> [..., out]`, as `flax.linen.Dense` computes it; the kernel's gradient is
  one 2-D dot."""
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


def _dense_forward(x, kernel, precision):
  return dense_matmul(x, kernel, precision), (x, kernel)


def _dense_backward(precision, residuals, g):
  x, kernel = residuals
  dx = lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())), precision=precision)
  rows_x, rows_g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
  dkernel = lax.dot_general(rows_x, rows_g, (((0,), (0,)), ((), ())), precision=precision)
  return dx, dkernel.astype(kernel.dtype)


dense_matmul.defvjp(_dense_forward, _dense_backward)


def dot_general_2d(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """`lax.dot_general` for `flax.linen.Dense(dot_general=...)`: Dense's own contraction (last axis of `lhs` with the
  first of `rhs`, no batch axes) through `dense_matmul`; any other contraction through `lax.dot_general`."""
  if dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())) and rhs.ndim == 2 and preferred_element_type is None:
    return dense_matmul(lhs, rhs, precision)
  return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                         preferred_element_type=preferred_element_type)


def dense(features: int, maths: Maths, init_range: float, dtype, *, use_bias: bool = True, name=None,
          kernel_init=None) -> nn.Dense:
  """`flax.linen.Dense` (parameters `kernel [in, features]`, `bias [features]`; kernel ~ N(0, init_range) unless
  `kernel_init`) computing its matmul with `dot_general_2d` when `maths.weight_grads_2d`."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, name=name,
                  kernel_init=kernel_init or nn.initializers.normal(init_range),
                  dot_general=dot_general_2d if maths.weight_grads_2d else None)


# --- Activations ---------------------------------------------------------------------------------------------------

def gelu_erf(x):
  """GELU(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 (Hendrycks & Gimpel 2016), in the dtype of `x`."""
  return 0.5 * x * (1 + lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


def activation(name: str, erf_gelu: bool = True):
  """The function a Hugging Face config's `hidden_act` names. 'gelu' is the exact GELU (`gelu_erf` when `erf_gelu`,
  else jax's erfc form); 'gelu_new' / 'gelu_pytorch_tanh' the tanh approximation. Raises ConfigError for others."""
  functions = {
      'gelu': gelu_erf if erf_gelu else functools.partial(jax.nn.gelu, approximate=False),
      'gelu_new': functools.partial(jax.nn.gelu, approximate=True),
      'gelu_pytorch_tanh': functools.partial(jax.nn.gelu, approximate=True),
      'relu': jax.nn.relu, 'silu': jax.nn.silu, 'swish': jax.nn.silu, 'tanh': jnp.tanh,
  }
  if name not in functions:
    raise ConfigError(f'hidden_act {name!r} is not supported: use one of {", ".join(sorted(functions))}.')
  return functions[name]


# --- Attention -----------------------------------------------------------------------------------------------------

def _heads_first(x):
  """`[batch, tokens, heads, dim] <-> [batch, heads, tokens, dim]`."""
  return jnp.swapaxes(x, -3, -2)


def _transposed(x):
  """`x` with its last two axes swapped, as an array of its own (XLA would fold a plain transpose into the dot)."""
  return lax.optimization_barrier(jnp.swapaxes(x, -1, -2))


def _attention_forward(query, key, value, bias, multiplier):
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
  """`softmax(q k^T / sqrt(d) + bias) * multiplier @ v` per head (Vaswani et al. 2017, eq. 1), heads laid out first.

  Args:
    query, key, value: `[..., tokens, heads, head_dim]`.
    bias: None, or added to the scores `[..., heads, q_tokens, k_tokens]` (broadcast; e.g. BEiT's relative position
      bias, whose gradient is the scores' summed over the broadcast axes).
    multiplier: None, or the attention dropout's keep mask over the keep probability, multiplied into the softmax's
      output (broadcast); not differentiated.

  Returns:
    `[..., q_tokens, heads, head_dim]`.
  """
  return _attention_forward(query, key, value, bias, multiplier)[0]


def _attention_fwd(query, key, value, bias, multiplier):
  out, residuals = _attention_forward(query, key, value, bias, multiplier)
  return out, (residuals, bias)


def _sum_to_shape(x, shape):
  """`x` summed over the axes along which an array of `shape` was broadcast to `x.shape`."""
  lead = x.ndim - len(shape)
  axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
  return jnp.sum(x, axis=axes).reshape(shape) if axes else x


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


attention.defvjp(_attention_fwd, _attention_bwd)


def plain_attention(query, key, value, bias, multiplier):
  """`attention`'s maths as flax writes it (`[..., tokens, heads, dim]` einsums, autodiff's backward)."""
  depth = query.shape[-1]
  scores = jnp.einsum('...qhd,...khd->...hqk', query / jnp.sqrt(depth).astype(query.dtype), key)
  if bias is not None:
    scores = scores + bias
  weights = jax.nn.softmax(scores).astype(query.dtype)
  if multiplier is not None:
    weights = weights * multiplier
  return jnp.einsum('...hqk,...khd->...qhd', weights, value)


def fused_platform() -> bool:
  """True where `jax.nn.dot_product_attention` is the faster attention: any default backend but the CPU."""
  return jax.default_backend() != 'cpu'


def multi_head_attention(query, key, value, bias, multiplier, heads_first: bool):
  """Attention by platform: `jax.nn.dot_product_attention` on GPU/TPU when no dropout mask is given (it takes
  none), else `attention` (heads first) or `plain_attention`. Shapes as `attention`; `bias` broadcastable to
  `[batch, heads, q_tokens, k_tokens]`."""
  if multiplier is None and fused_platform():
    if bias is not None:
      bias = jnp.broadcast_to(bias, (query.shape[0], query.shape[-2], query.shape[-3], key.shape[-3]))
    return jax.nn.dot_product_attention(query, key, value, bias=bias)
  return (attention if heads_first else plain_attention)(query, key, value, bias, multiplier)


def relative_position_index(window: tuple) -> np.ndarray:
  """int `[h w + 1, h w + 1]`: row of the relative position bias table for each (query, key) token pair of an
  `h x w` patch grid with a CLS token first (Bao et al. 2021, BEiT, sec. 2.2; the layout of Hugging Face's
  `BeitRelativePositionBias`): patch pairs index the `(2h - 1) x (2w - 1)` offsets row-major; the last three rows
  are CLS-to-patch, patch-to-CLS and CLS-to-CLS."""
  h, w = window
  coords = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing='ij')).reshape(2, -1)
  offsets = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
  rows = (offsets[..., 0] + h - 1) * (2 * w - 1) + offsets[..., 1] + w - 1
  distances = (2 * h - 1) * (2 * w - 1) + 3
  index = np.zeros((h * w + 1,) * 2, np.int32)
  index[1:, 1:] = rows
  index[0, :] = distances - 3
  index[:, 0] = distances - 2
  index[0, 0] = distances - 1
  return index


class RelativePositionBias(nn.Module):
  """BEiT's learned relative position bias: `relative_position_bias_table [(2h-1)(2w-1) + 3, heads]` (zeros at
  init) -> bias `[heads, h w + 1, h w + 1]` for an `h x w` grid plus CLS."""
  window: tuple
  num_heads: int

  @nn.compact
  def __call__(self):
    h, w = self.window
    table = self.param('relative_position_bias_table', nn.initializers.zeros,
                       ((2 * h - 1) * (2 * w - 1) + 3, self.num_heads))
    index = relative_position_index(self.window)
    return jnp.transpose(table[index.reshape(-1)].reshape(index.shape + (self.num_heads,)), (2, 0, 1))


class SelfAttention(nn.Module):
  """Multi-head self-attention, `[batch, tokens, width] -> [batch, tokens, width]` (heads concatenated; the output
  projection is the parent's). Parameters `query`, `key` (`key_bias` False: no bias, as BEiT), `value`, and with
  `window` a `relative_position_bias` of its own (BEiT's per-layer bias). Attention dropout draws one
  `[1, 1, q, k]` keep mask from the 'dropout' rng, shared by examples and heads (flax's `broadcast_dropout`)."""
  width: int
  num_heads: int
  dropout_rate: float
  init_range: float
  maths: Maths
  key_bias: bool = True
  window: Optional[tuple] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden, bias=None, deterministic: bool = True):
    """`bias`: None or `[heads, tokens, tokens]` added to the scores (BEiT's shared relative position bias)."""
    if self.width % self.num_heads:
      raise ConfigError(f'hidden_size {self.width} is not divisible by num_attention_heads {self.num_heads}.')
    shape = hidden.shape[:-1] + (self.num_heads, self.width // self.num_heads)
    project = lambda name, use_bias=True: dense(self.width, self.maths, self.init_range, self.dtype, name=name,
                                                use_bias=use_bias)(hidden).reshape(shape)
    query, key, value = project('query'), project('key', self.key_bias), project('value')
    if self.window is not None:
      own = RelativePositionBias(self.window, self.num_heads, name='relative_position_bias')()
      bias = own if bias is None else own + bias
    if bias is not None:
      bias = bias[None].astype(query.dtype)
    multiplier = None
    if not deterministic and self.dropout_rate > 0:
      keep_prob = 1.0 - self.dropout_rate
      keep = jax.random.bernoulli(self.make_rng('dropout'), keep_prob, (1, 1, shape[-3], shape[-3]))
      multiplier = keep.astype(self.dtype) / jnp.asarray(keep_prob, dtype=self.dtype)
    out = multi_head_attention(query, key, value, bias, multiplier, self.maths.heads_first_attention)
    return out.reshape(hidden.shape[:-1] + (self.width,))


class Projection(nn.Module):
  """`dense -> dropout`, and with `post_norm` `LayerNorm(that + residual)` (BERT's post-LN residual): BERT's
  `SelfOutput` / `Output` and BEiT's output blocks. Parameters `dense`, with `post_norm` also `LayerNorm`."""
  width: int
  dropout_rate: float
  init_range: float
  maths: Maths
  post_norm: bool = False
  layer_norm_eps: float = 1e-12
  dtype: Any = jnp.float32

  def setup(self):
    self.dense = dense(self.width, self.maths, self.init_range, self.dtype)
    self.dropout = nn.Dropout(self.dropout_rate)
    if self.post_norm:
      self.LayerNorm = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)  # pylint: disable=invalid-name

  def __call__(self, hidden, residual=None, deterministic: bool = True):
    hidden = self.dropout(self.dense(hidden), deterministic=deterministic)
    return self.LayerNorm(hidden + residual) if self.post_norm else hidden


class Intermediate(nn.Module):
  """The MLP's first half: `activation(dense(x))`, `[..., width] -> [..., features]`. Parameter `dense`."""
  features: int
  hidden_act: str
  init_range: float
  maths: Maths
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden):
    act = activation(self.hidden_act, self.maths.erf_gelu)
    return act(dense(self.features, self.maths, self.init_range, self.dtype, name='dense')(hidden))


class Attention(nn.Module):
  """Self-attention then its output projection (`Projection`), the children named `inner` (BERT: 'self', BEiT:
  'attention') and 'output'; with `post_norm` the output is `LayerNorm(projection + hidden)` (BERT)."""
  inner: str
  width: int
  num_heads: int
  attention_dropout: float
  hidden_dropout: float
  init_range: float
  maths: Maths
  key_bias: bool = True
  window: Optional[tuple] = None
  post_norm: bool = False
  layer_norm_eps: float = 1e-12
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden, bias=None, deterministic: bool = True):
    out = SelfAttention(self.width, self.num_heads, self.attention_dropout, self.init_range, self.maths,
                        self.key_bias, self.window, self.dtype, name=self.inner)(hidden, bias, deterministic)
    return Projection(self.width, self.hidden_dropout, self.init_range, self.maths, self.post_norm,
                      self.layer_norm_eps, self.dtype, name='output')(out, hidden, deterministic)


class DropPath(nn.Module):
  """Stochastic depth (Huang et al. 2016): in training, each example's residual branch is zeroed with probability
  `rate` and scaled by 1 / (1 - rate) otherwise; one uniform draw per example from the 'droppath' rng."""
  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    if deterministic or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = jnp.floor(keep_prob + jax.random.uniform(self.make_rng('droppath'), shape, dtype=x.dtype))
    return x / keep_prob * keep


def layer_scale(module: nn.Module, name: str, width: int, init_value: float):
  """LayerScale (Touvron et al. 2021, CaiT): a learned per-channel factor `[width]` starting at `init_value`,
  declared as parameter `name` of `module`; None when `init_value` is 0 (no scaling)."""
  if init_value <= 0:
    return None
  return module.param(name, lambda _, shape: jnp.full(shape, init_value, jnp.float32), (width,))
