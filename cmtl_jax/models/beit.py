"""BEiT (Bao et al. 2021, "BEiT: BERT Pre-Training of Image Transformers"): patch embedding, CLS token, absolute
position embeddings, pre-LayerNorm layers with per-layer and shared relative position bias, LayerScale and drop
path, and mean pooling.

The parameter tree is Hugging Face's BEiT with Flax leaf names (`embeddings/patch_embeddings/projection/kernel`,
`encoder/layer/<i>/attention/attention/query/kernel`, `encoder/layer/<i>/lambda_1`, ...): `checkpoints.BEIT_NAMES`
maps PyTorch checkpoints onto it.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cmtl_jax.errors import ConfigError
from cmtl_jax.models import layers
from cmtl_jax.models.configs import BeitConfig


def patchify(pixels, patch_size: int):
  """`[B, H, W, C]` -> `[B, (H/p)(W/p), p * p * C]`: the patches row-major over the grid, each flattened (row,
  column, channel), the order of BEiT's patch tokens and of the rows of its flattened projection kernel. numpy or
  jax arrays."""
  batch, height, width, channels = pixels.shape
  p = patch_size
  x = pixels.reshape(batch, height // p, p, width // p, p, channels).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(batch, (height // p) * (width // p), p * p * channels)


class PatchProjection(layers.ConfigModule):
  """The patch embedding as reshape-to-patches + one matmul, `[B, H, W, C] -> [B, (H/p)(W/p), D]` (`p` the config's
  `patch_size`, `D` its `hidden_size`), with the parameters of a `kernel = stride = p` convolution
  (`kernel [p, p, C, D]`, `bias [D]`).

  Same maths as the strided convolution; under `jax.vmap` over models a convolution with batched weights becomes a
  grouped convolution, which XLA runs far slower on CPU than this batched matmul.
  """
  config: BeitConfig

  @nn.compact
  def __call__(self, pixels):
    channels = pixels.shape[-1]
    p, features = self.config.patch_size, self.config.hidden_size
    kernel = self.param('kernel', nn.initializers.normal(self.config.initializer_range), (p, p, channels, features))
    bias = self.param('bias', nn.initializers.zeros, (features,))
    patches = patchify(pixels, p).astype(self.dtype)
    return patches @ kernel.reshape(p * p * channels, features).astype(self.dtype) + bias.astype(self.dtype)


class PatchEmbeddings(layers.ConfigModule):
  """Holds `projection` (the tree's `patch_embeddings/projection` level). Raises ConfigError when the pixels'
  channels or size are not the config's."""
  config: BeitConfig

  @nn.compact
  def __call__(self, pixels):
    c = self.config
    if pixels.shape[-1] != c.num_channels:
      raise ConfigError(f'pixels have {pixels.shape[-1]} channels but BEiT expects {c.num_channels}.')
    if pixels.shape[1:3] != (c.image_size, c.image_size):
      raise ConfigError(f'pixels are {pixels.shape[1]}x{pixels.shape[2]} but BEiT expects '
                        f'{c.image_size}x{c.image_size}.')
    return PatchProjection(c, dtype=self.dtype, name='projection')(pixels)


class BeitEmbeddings(layers.ConfigModule):
  """Pixels `[B, H, W, C]` -> tokens `[B, 1 + patches, D]`: CLS token first, then the patches, plus absolute position
  embeddings (zeros at init) when the config asks, then dropout.

  `bool_masked_pos` (bool `[B, patches]`, row-major over the patch grid, or None): the embeddings of the patches
  marked True are replaced by the learned `mask_token` before positions are added, as in BEiT's masked image
  modelling (Bao et al. 2021) and Hugging Face's `BeitEmbeddings`. Raises ConfigError when a mask is given but the
  config has no `use_mask_token`."""
  config: BeitConfig

  @nn.compact
  def __call__(self, pixels, deterministic: bool = True, bool_masked_pos=None):
    c = self.config
    cls_token = self.param('cls_token', nn.initializers.zeros, (1, 1, c.hidden_size))
    mask_token = None
    if c.use_mask_token:  # Used by masked image modelling only; classification never passes a mask.
      mask_token = self.param('mask_token', nn.initializers.zeros, (1, 1, c.hidden_size))
    embeddings = PatchEmbeddings(c, dtype=self.dtype, name='patch_embeddings')(pixels)
    if bool_masked_pos is not None:
      if mask_token is None:
        raise ConfigError('a patch mask needs a BEiT with use_mask_token=True.')
      w = bool_masked_pos[..., None].astype(embeddings.dtype)
      embeddings = embeddings * (1 - w) + mask_token.astype(embeddings.dtype) * w
    cls = jnp.broadcast_to(cls_token, (embeddings.shape[0], 1, c.hidden_size)).astype(embeddings.dtype)
    embeddings = jnp.concatenate([cls, embeddings], axis=1)
    if c.use_absolute_position_embeddings:
      position = self.param('position_embeddings', nn.initializers.zeros, (1, embeddings.shape[1], c.hidden_size))
      embeddings = embeddings + position.astype(embeddings.dtype)
    return nn.Dropout(c.hidden_dropout_prob)(embeddings, deterministic=deterministic)


class BeitLayer(layers.ConfigModule):
  """`h = h + drop_path(lambda_1 * attention(LN(h))); h = h + drop_path(lambda_2 * mlp(LN(h)))`, `[B, T, D]`;
  `drop_path_rate` is this layer's stochastic-depth rate."""
  config: BeitConfig
  drop_path_rate: float = 0.0

  def setup(self):
    c = self.config
    window = c.window if c.use_relative_position_bias else None
    self.attention = layers.Attention('attention', c.hidden_size, c.num_attention_heads,
                                      c.attention_probs_dropout_prob, c.hidden_dropout_prob, c.initializer_range,
                                      self.maths, key_bias=False, window=window, dtype=self.dtype)
    self.intermediate = layers.Intermediate(c.intermediate_size, c.hidden_act, c.initializer_range, self.maths,
                                            self.dtype)
    self.output = layers.Projection(c.hidden_size, c.hidden_dropout_prob, c.initializer_range, self.maths,
                                    dtype=self.dtype)
    self.layernorm_before = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype)
    self.layernorm_after = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype)
    self.drop_path = layers.DropPath(self.drop_path_rate)
    self.lambda_1 = layers.layer_scale(self, 'lambda_1', c.hidden_size, c.layer_scale_init_value)
    self.lambda_2 = layers.layer_scale(self, 'lambda_2', c.hidden_size, c.layer_scale_init_value)

  def __call__(self, hidden, shared_bias=None, deterministic: bool = True):
    """`shared_bias`: None or the encoder's relative position bias `[heads, T, T]`."""
    branch = self.attention(self.layernorm_before(hidden), shared_bias, deterministic)
    if self.lambda_1 is not None:
      branch = self.lambda_1.astype(branch.dtype) * branch
    hidden = self.drop_path(branch, deterministic) + hidden
    branch = self.output(self.intermediate(self.layernorm_after(hidden)), deterministic=deterministic)
    if self.lambda_2 is not None:
      branch = self.lambda_2.astype(branch.dtype) * branch
    return self.drop_path(branch, deterministic) + hidden


class _Layers(layers.ConfigModule):
  """The layers `0 .. num_hidden_layers - 1` (the tree's `layer/<i>` level), drop path rising linearly from 0 at
  the first layer to `drop_path_rate` at the last (BEiT's stochastic depth rule)."""
  config: BeitConfig

  @nn.compact
  def __call__(self, hidden, shared_bias, deterministic: bool):
    rates = np.linspace(0, self.config.drop_path_rate, self.config.num_hidden_layers)
    for i, rate in enumerate(rates):
      hidden = BeitLayer(self.config, self.maths, self.dtype, drop_path_rate=float(rate), name=str(i))(
          hidden, shared_bias, deterministic)
    return hidden


class BeitEncoder(layers.ConfigModule):
  """BEiT's layers with the shared relative position bias (`relative_position_bias`, when the config asks):
  tokens `[B, 1 + patches, D]` -> `[B, 1 + patches, D]` (no final LayerNorm)."""
  config: BeitConfig

  @nn.compact
  def __call__(self, hidden, deterministic: bool = True):
    c = self.config
    shared = None
    if c.use_shared_relative_position_bias:
      shared = layers.RelativePositionBias(c.window, c.num_attention_heads, name='relative_position_bias')()
    return _Layers(c, self.maths, self.dtype, name='layer')(hidden, shared, deterministic)


class BeitModel(layers.ConfigModule):
  """Hugging Face's `BeitModel`: pixels `[B, H, W, C]` (normalised) -> (`last_hidden_state [B, 1 + patches, D]`,
  `pooled [B, D]`). With `use_mean_pooling` the pooled output is `pooler/layernorm` of the patch tokens' mean (the
  CLS token left out) and the last hidden state is the encoder's; else both pass `layernorm` and the CLS token is
  the pooled output."""
  config: BeitConfig

  @nn.compact
  def __call__(self, pixels, deterministic: bool = True, bool_masked_pos=None):
    """`bool_masked_pos`: None, or bool `[B, patches]` marking the patches whose embedding becomes the mask token
    (`BeitEmbeddings`)."""
    c = self.config
    tokens = BeitEmbeddings(c, dtype=self.dtype, name='embeddings')(pixels, deterministic, bool_masked_pos)
    tokens = BeitEncoder(c, self.maths, self.dtype, name='encoder')(tokens, deterministic)
    if c.use_mean_pooling:
      pooled = _Pooler(c.layer_norm_eps, self.dtype, name='pooler')(tokens[:, 1:].mean(axis=1))
      return tokens, pooled
    tokens = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name='layernorm')(tokens)
    return tokens, tokens[:, 0]


class _Pooler(nn.Module):
  """Holds the pooler's `layernorm` (the tree's `pooler/layernorm` level)."""
  epsilon: float
  dtype: Any

  @nn.compact
  def __call__(self, x):
    return nn.LayerNorm(epsilon=self.epsilon, dtype=self.dtype, name='layernorm')(x)
