"""The hybrid image classifier: BEiT embeddings + encoder -> adapter + bridge LayerNorm -> BERT encoder layers ->
pool -> LayerNorm -> head.

Top-level parameter subtrees: `beit_embeddings`, `beit_encoder` (BEiT's `embeddings` / `encoder` trees), `adapter`
(only when the widths differ), `adapter_norm` (the bridge LayerNorm), `bert_encoder` (BERT's `encoder` tree),
`pool_norm`, `head`; `model.load_pretrained` places checkpoint trees into them.
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import bert as bert_lib
from cmtl_jax.models import layers
from cmtl_jax.models.configs import BeitConfig, BertConfig


class HybridClassifier(nn.Module):
  """Image classifier whose middle is a (text-pretrained) BERT encoder.

  Attributes:
    beit_config: the image side.
    bert_config: the text side, or None for the BEiT-only baseline.
    num_classes: number of output logits.
    pooling: 'mean' over all tokens (CLS included), or the 'cls' token.
    bridge_norm: LayerNorm between BEiT and BERT (BERT's post-LN layers expect normalised input).
    dtype: computation dtype (parameters stay float32).
    weight_grads_2d, erf_gelu, heads_first_attention: `layers.Maths`, the CPU forms of the same maths (all True:
      the fastest on XLA:CPU; False: Dense's own transpose rule, jax's erfc GELU, flax-style attention).
  """
  beit_config: BeitConfig
  bert_config: Optional[BertConfig]
  num_classes: int
  pooling: str = 'mean'
  bridge_norm: bool = True
  dtype: Any = jnp.float32
  weight_grads_2d: bool = True
  erf_gelu: bool = True
  heads_first_attention: bool = True

  @property
  def maths(self) -> layers.Maths:
    return layers.Maths(self.weight_grads_2d, self.erf_gelu, self.heads_first_attention)

  def setup(self):
    beit, bert = self.beit_config, self.bert_config
    self.beit_embeddings = beit_lib.BeitEmbeddings(beit, dtype=self.dtype)
    self.beit_encoder = beit_lib.BeitEncoder(beit, self.maths, dtype=self.dtype)
    if bert is not None:
      if beit.hidden_size != bert.hidden_size:
        self.adapter = layers.dense(bert.hidden_size, self.maths, bert.initializer_range, self.dtype)
      if self.bridge_norm:
        self.adapter_norm = nn.LayerNorm(epsilon=bert.layer_norm_eps, dtype=self.dtype)
      self.bert_encoder = bert_lib.BertEncoder(bert, self.maths, dtype=self.dtype)
    self.pool_norm = nn.LayerNorm(dtype=self.dtype)
    self.head = layers.dense(self.num_classes, self.maths, 0.0, self.dtype, kernel_init=nn.initializers.zeros)

  def encode_image(self, pixels, train: bool = False):
    """BEiT tokens `[batch, 1 + patches, beit_width]` from pixels `[batch, H, W, C]` (normalised, BEiT size)."""
    return self.beit_encoder(self.beit_embeddings(pixels, deterministic=not train), deterministic=not train)

  def bridge(self, tokens):
    """Maps BEiT tokens to BERT's width and normalises them as BERT's embedding layer would."""
    if self.beit_config.hidden_size != self.bert_config.hidden_size:
      tokens = self.adapter(tokens)
    if self.bridge_norm:
      tokens = self.adapter_norm(tokens)
    return tokens

  def encode_text_layers(self, hidden, train: bool = False):
    """Runs BERT's encoder layers on `[batch, tokens, bert_width]`; every token is attended to."""
    return self.bert_encoder(hidden, deterministic=not train)

  def __call__(self, pixels, train: bool = False):
    """Logits `[batch, num_classes]` (float32) from pixels `[batch, H, W, C]`."""
    tokens = self.encode_image(pixels, train)
    if self.bert_config is not None:
      tokens = self.encode_text_layers(self.bridge(tokens), train)
    pooled = tokens.mean(axis=1) if self.pooling == 'mean' else tokens[:, 0]
    return self.head(self.pool_norm(pooled)).astype(jnp.float32)


def build(beit_config: BeitConfig, bert_config: Optional[BertConfig], num_classes: int, pooling: str = 'mean',
          bridge_norm: bool = True, dtype=jnp.float32) -> HybridClassifier:
  """The hybrid, or the BEiT-only baseline when `bert_config` is None."""
  return HybridClassifier(beit_config, bert_config, num_classes, pooling, bridge_norm, dtype)
