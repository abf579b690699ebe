"""BEiT's masked image modelling (Bao et al. 2021): the model, the loss over masked patches, and its epoch on the
training core.

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

from cmtl_jax import augment as augment_lib
from cmtl_jax import data
from cmtl_jax.train import core
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import layers
from cmtl_jax.models.configs import BeitConfig
from cmtl_jax.pretrain import tokenizer as tokenizer_lib


class MaskedImageModel(layers.ConfigModule):
  """pixels `[B, H, W, C]` (normalised) and bool `[B, patches]` mask -> float32 logits `[B, patches, vocab_size]`
  over the visual tokens of every patch (the CLS token is left out). The config must have `use_mask_token`."""
  config: BeitConfig
  vocab_size: int = 8192  # BEiT's dVAE codebook; pretraining passes its tokenizer's.

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


def make_epoch(model: MaskedImageModel, tx, *, steps: int, scale=(1.0, 1.0), ratio=(1.0, 1.0),
               hflip: float = 0.0) -> Callable:
  """Returns `epoch_fn(state, raw_rng, epoch, shared, own) -> (state, {'loss', 'accuracy'})`: `steps` steps of the
  training core (`train.core.make_epoch`: its state, key rule and divergence guard) on the masked-token loss.
  With `scale` / `ratio` other than (1, 1) or `hflip` > 0, each image is first randomly cropped and resized back,
  and flipped (`augment.make_crop_flip`, as BEiT pretrains), from a key split off the step's; the visual tokens are
  those of the augmented image.

  Args of the returned function:
    state: `core.init_state`'s (donate it under jit); raw_rng: key data; epoch: int32 (1-based).
    shared: `(images uint8 [N, h, w, c] staged on the device, centroids float32 [vocab, p * p * C])` of the
      tokenizer; targets are the tokens of the original image (before the mask token replaces the masked patches'
      embeddings).
    own: the epoch's batches drawn on the host, `(indices int32 [steps, B], masks bool [steps, B, patches])`
      (`masking.block_masks`).
  """
  c = model.config
  crop_flip = augment_lib.make_crop_flip(scale, ratio, hflip)

  def loss_fn(params, batch, rng, shared):
    images, centroids = shared
    idx, mask = batch
    batch_images = images[idx]
    if crop_flip is not None:
      augment_rng, rng = jax.random.split(rng)
      batch_images = crop_flip(augment_rng, batch_images)
    pixels = data.preprocess(batch_images, c.image_size, c.num_channels)
    targets = tokenizer_lib.tokens(centroids, pixels, c.patch_size)
    dropout_key, droppath_key = jax.random.split(rng)
    logits = model.apply({'params': params}, pixels, mask, deterministic=False,
                         rngs={'dropout': dropout_key, 'droppath': droppath_key})
    loss, accuracy = masked_token_loss(logits, targets, mask)
    return loss, {'accuracy': accuracy}

  return core.make_epoch(loss_fn, tx, steps=steps, batches=lambda rng, shared, own: own)
