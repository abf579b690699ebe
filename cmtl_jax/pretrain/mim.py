"""BEiT's masked image modelling (Bao et al. 2021): the model, the loss over masked patches, and a pure train step.

The model is our `BeitModel` (under `beit`, the tree a Hugging Face `BeitModel` checkpoint holds) with the masked
patches' embeddings replaced by its `mask_token`, then a LayerNorm and a linear `lm_head` over the visual-token
vocabulary on every patch token, as in Hugging Face's `BeitForMaskedImageModeling`. Only masked positions count in
the loss.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from cmtl_jax import data
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import layers
from cmtl_jax.models.configs import BeitConfig
from cmtl_jax.pretrain import tokenizer as tokenizer_lib


class MaskedImageModel(layers.ConfigModule):
  """pixels `[B, H, W, C]` (normalised) and bool `[B, patches]` mask -> float32 logits `[B, patches, vocab_size]`
  over the visual tokens of every patch (the CLS token is left out). The config must have `use_mask_token`."""
  config: BeitConfig
  vocab_size: int = 8192

  @nn.compact
  def __call__(self, pixels, bool_masked_pos, deterministic: bool = True):
    c = self.config
    hidden, _ = beit_lib.BeitModel(c, self.maths, self.dtype, name='beit')(pixels, deterministic, bool_masked_pos)
    hidden = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name='layernorm')(hidden[:, 1:])
    logits = nn.Dense(self.vocab_size, dtype=self.dtype, kernel_init=nn.initializers.normal(c.initializer_range),
                      name='lm_head')(hidden)
    return logits.astype(jnp.float32)


def masked_token_loss(logits, targets, mask):
  """(mean cross-entropy, accuracy) over the masked positions only.

  Args:
    logits: float `[B, patches, vocab]`.
    targets: int `[B, patches]` visual tokens.
    mask: bool `[B, patches]`; unmasked positions contribute nothing (nor their gradients).
  """
  weight = mask.astype(jnp.float32)
  count = jnp.maximum(weight.sum(), 1.0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return (losses * weight).sum() / count, (correct * weight).sum() / count


def init_state(params, tx) -> dict:
  """The pretraining state `{'params', 'opt', 'step'}` (`step` an int32 scalar: optimiser steps taken)."""
  return {'params': params, 'opt': tx.init(params), 'step': jnp.zeros((), jnp.int32)}


def make_train_step(model: MaskedImageModel, tx) -> Callable:
  """A pure step `(state, images, batch_idx, mask, centroids, key) -> (state, (loss, accuracy))`.

  Args of the step:
    state: `init_state`'s dict (donate it under jit).
    images: uint8 `[N, h, w, c]` staged on the device.
    batch_idx: int32 `[B]` rows of `images`.
    mask: bool `[B, patches]` (`masking.block_masks`).
    centroids: float32 `[vocab, p * p * C]` of the tokenizer; targets are the tokens of the original image
      (before the mask token replaces the masked patches' embeddings).
    key: a PRNG key; dropout and drop path keys are it folded with `state['step']`, so a resumed run draws what an
      uninterrupted one draws.
  """
  c = model.config

  def step(state, images, batch_idx, mask, centroids, key):
    pixels = data.preprocess(images[batch_idx], c.image_size, c.num_channels)
    targets = tokenizer_lib.tokens(centroids, pixels, c.patch_size)
    dropout_key, droppath_key = jax.random.split(jax.random.fold_in(key, state['step']))

    def loss_fn(params):
      logits = model.apply({'params': params}, pixels, mask, deterministic=False,
                           rngs={'dropout': dropout_key, 'droppath': droppath_key})
      return masked_token_loss(logits, targets, mask)

    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    updates, opt = tx.update(grads, state['opt'], state['params'])
    return ({'params': optax.apply_updates(state['params'], updates), 'opt': opt, 'step': state['step'] + 1},
            (loss, accuracy))

  return step
