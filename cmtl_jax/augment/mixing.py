"""Mixup (Zhang et al. 2018, arXiv:1710.09412) and CutMix (Yun et al. 2019, arXiv:1905.04899) of a batch with soft,
label-smoothed targets, as timm's `Mixup(mode='batch', correct_lam=True)`: one draw per batch; the batch is paired
with itself reversed.

- With probability `prob` the batch is mixed, else lam = 1 (targets still smoothed).
- Both alphas > 0: CutMix with probability `switch_prob`, else mixup; one alpha > 0: that one.
- Mixup: x lam + x_reversed (1 - lam). CutMix: a box of side sqrt(1 - lam) times the image's, centred uniformly and
  clipped, taken from the reversed batch; lam becomes the share of the image left unchanged.
- Targets: lam smooth(y) + (1 - lam) smooth(y_reversed), smooth(y) = (1 - s) one_hot(y) + s / classes.

Images stay uint8: mixed pixels are rounded (at most half a grey level; the task's resize and normalisation are
affine, so mixing before them is mixing after them up to that rounding).
"""

import jax
import jax.numpy as jnp
import optax


def smooth_targets(labels, num_classes: int, smoothing: float):
  """float32 `[B, num_classes]`: (1 - smoothing) one-hot + smoothing / num_classes (`optax.smooth_labels`, which
  the plain loss uses too)."""
  return optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)


def cutmix_box(key, height: int, width: int, lam):
  """timm's `rand_bbox`: int32 (top, bottom, left, right) of a box of (1 - lam) of the area, centre uniform, clipped."""
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = (height * ratio).astype(jnp.int32)
  cut_w = (width * ratio).astype(jnp.int32)
  k_y, k_x = jax.random.split(key)
  cy = jax.random.randint(k_y, (), 0, height)
  cx = jax.random.randint(k_x, (), 0, width)
  return (jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height),
          jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width))


def mix(key, images, labels, num_classes: int, *, mixup_alpha: float, cutmix_alpha: float, prob: float,
        switch_prob: float, smoothing: float):
  """Mixed uint8 `images` `[B, H, W, C]` and their float32 targets `[B, num_classes]` (the rules above)."""
  batch, height, width, _ = images.shape
  k_apply, k_switch, k_mixup, k_cutmix, k_box = jax.random.split(key, 5)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(k_switch) < switch_prob
  else:
    use_cutmix = jnp.asarray(cutmix_alpha > 0)
  lam_mixup = jax.random.beta(k_mixup, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else jnp.float32(1.0)
  lam_cutmix = jax.random.beta(k_cutmix, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else jnp.float32(1.0)
  mixing = jax.random.uniform(k_apply) < prob
  lam = jnp.where(mixing, jnp.where(use_cutmix, lam_cutmix, lam_mixup), 1.0).astype(jnp.float32)

  reversed_images = images[::-1]
  top, bottom, left, right = cutmix_box(k_box, height, width, lam)
  rows = jnp.arange(height)[:, None, None]
  cols = jnp.arange(width)[None, :, None]
  box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right) & use_cutmix & mixing
  cut = jnp.where(box, reversed_images, images)
  lam_cut = 1.0 - ((bottom - top) * (right - left)).astype(jnp.float32) / (height * width)
  blended = jnp.round(images.astype(jnp.float32) * lam + reversed_images.astype(jnp.float32) * (1.0 - lam))
  out = jnp.where(use_cutmix, cut, jnp.clip(blended, 0, 255).astype(jnp.uint8))
  lam = jnp.where(use_cutmix & mixing, lam_cut, lam)

  targets = smooth_targets(labels, num_classes, smoothing)
  return out, lam * targets + (1.0 - lam) * targets[::-1]
