"""BERT's encoder layers (Devlin et al. 2019): post-LayerNorm transformer layers, every token attending to every
token (the hybrid feeds them image tokens, so there is no padding mask and no word embedding here).

The parameter tree is Hugging Face's BERT encoder with Flax leaf names (`layer/<i>/attention/self/query/kernel`,
`.../attention/output/LayerNorm/scale`, ...): `checkpoints.BERT_NAMES` maps PyTorch checkpoints onto it.
"""

import flax.linen as nn

from cmtl_jax.models import layers
from cmtl_jax.models.configs import BertConfig


class BertLayer(layers.ConfigModule):
  """`h = LN(h + attention(h)); h = LN(h + W2 act(W1 h))`, with dropout on both branches: `[B, T, D] -> [B, T, D]`."""
  config: BertConfig

  @nn.compact
  def __call__(self, hidden, deterministic: bool = True):
    c = self.config
    hidden = layers.Attention('self', c.hidden_size, c.num_attention_heads, c.attention_probs_dropout_prob,
                              c.hidden_dropout_prob, c.initializer_range, self.maths, post_norm=True,
                              layer_norm_eps=c.layer_norm_eps, dtype=self.dtype, name='attention')(
                                  hidden, deterministic=deterministic)
    inner = layers.Intermediate(c.intermediate_size, c.hidden_act, c.initializer_range, self.maths, self.dtype,
                                name='intermediate')(hidden)
    return layers.Projection(c.hidden_size, c.hidden_dropout_prob, c.initializer_range, self.maths, post_norm=True,
                             layer_norm_eps=c.layer_norm_eps, dtype=self.dtype, name='output')(
                                 inner, hidden, deterministic)


class _Layers(layers.ConfigModule):
  """The layers `0 .. num_hidden_layers - 1`, in order (the tree's `layer/<i>` level)."""
  config: BertConfig

  @nn.compact
  def __call__(self, hidden, deterministic: bool):
    for i in range(self.config.num_hidden_layers):
      hidden = BertLayer(self.config, self.maths, self.dtype, name=str(i))(hidden, deterministic)
    return hidden


class BertEncoder(layers.ConfigModule):
  """BERT's encoder layers: hidden states `[batch, tokens, hidden_size]` (already embedded and normalised) -> the
  last layer's `[batch, tokens, hidden_size]`, in `dtype`."""
  config: BertConfig

  @nn.compact
  def __call__(self, hidden, deterministic: bool = True):
    return _Layers(self.config, self.maths, self.dtype, name='layer')(hidden, deterministic)
