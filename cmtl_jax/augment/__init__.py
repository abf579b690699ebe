"""Training-time augmentation on the device, inside the jitted training step (timm's recipe, its names).

`make_augment(spec)` turns an augmentation spec (`resolve.AugmentSpec`: scale, ratio, hflip, auto_augment, reprob,
mixup, cutmix, mixup_prob, mixup_switch_prob, smoothing) into one function of a batch. Per image, in timm's order:
random resized crop and flip (`geometric`), RandAugment (`randaugment`), random erasing (`erasing`); then per batch
mixup / CutMix with smoothed soft targets (`mixing`). Images stay uint8 `[B, H, W, C]` at their stored size (the
task resizes and normalises them); each image draws from its own key, split from the batch's.

Randomness is a pure function of the key: the training core passes each model's step key, so every model of a
stack draws its own augmentation, a model trained in a stack sees what it sees trained alone, and a resumed run
sees what an uninterrupted one sees.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from cmtl_jax.augment import erasing
from cmtl_jax.augment import geometric
from cmtl_jax.augment import mixing
from cmtl_jax.augment import randaugment


def crops(scale, ratio) -> bool:
  """Whether a random resized crop of these ranges changes anything ((1, 1) area share and aspect ratio = the whole
  image of a square image, stored images being square)."""
  return tuple(scale) != (1.0, 1.0) or tuple(ratio) != (1.0, 1.0)


def mixes(spec) -> bool:
  return spec.mixup > 0 or spec.cutmix > 0


def is_on(spec) -> bool:
  """Whether the spec augments at all (label smoothing alone is not augmentation: the plain loss applies it)."""
  return bool(crops(spec.scale, spec.ratio) or spec.hflip or spec.auto_augment or spec.reprob or mixes(spec))


def _crop_flip(scale, ratio, hflip: float) -> Optional[Callable]:
  """`one(key, image) -> image`: the random resized crop and left-right flip of one uint8 image `[H, W, C]`; None
  when neither is on."""
  if crops(scale, ratio):
    return lambda key, image: geometric.random_resized_crop(key, image, scale=tuple(scale), ratio=tuple(ratio),
                                                            hflip=hflip)
  if hflip:
    return lambda key, image: geometric.random_flip(key, image, hflip)
  return None


def make_crop_flip(scale, ratio, hflip: float) -> Optional[Callable]:
  """`crop_flip(key, images) -> images` for uint8 images `[B, H, W, C]`, each its own random resized crop (`scale`,
  `ratio`; (1, 1), (1, 1) = none) and left-right flip (probability `hflip`); None when neither is on. BEiT's
  pretraining augmentation (masked image modelling, `pretrain.mim`)."""
  one = _crop_flip(scale, ratio, hflip)
  if one is None:
    return None
  return lambda key, images: jax.vmap(one)(jax.random.split(key, images.shape[0]), images)


def make_image_augment(spec) -> Callable:
  """`augment(key, image) -> image` for one uint8 image `[H, W, C]`: crop and flip, RandAugment, erasing, each
  only where the spec turns it on."""
  policy = randaugment.parse(spec.auto_augment) if spec.auto_augment else None
  crop_flip = _crop_flip(spec.scale, spec.ratio, spec.hflip)

  def augment(key, image):
    k_crop, k_ra, k_erase = jax.random.split(key, 3)
    if crop_flip is not None:
      image = crop_flip(k_crop, image)
    if policy is not None:
      num_ops, magnitude, magnitude_std, increasing = policy
      image = randaugment.rand_augment(k_ra, image, num_ops=num_ops, magnitude=magnitude,
                                       magnitude_std=magnitude_std, increasing=increasing)
    if spec.reprob:
      image = erasing.random_erasing(k_erase, image, spec.reprob)
    return image

  return augment


def make_augment(spec, num_classes: int) -> Optional[Callable]:
  """`augment(key, images, labels) -> (images, targets)`: uint8 images `[B, H, W, C]`, int labels `[B]` -> the
  augmented uint8 images and float32 soft targets `[B, num_classes]` (smoothed by `spec.smoothing`, mixed by
  mixup / CutMix). None when `is_on(spec)` is False: the plain step is then unchanged."""
  if not is_on(spec):
    return None
  image_augment = make_image_augment(spec)

  def augment(key, images, labels):
    k_images, k_mix = jax.random.split(key)
    images = jax.vmap(image_augment)(jax.random.split(k_images, images.shape[0]), images)
    if mixes(spec):
      return mixing.mix(k_mix, images, labels, num_classes, mixup_alpha=spec.mixup, cutmix_alpha=spec.cutmix,
                        prob=spec.mixup_prob, switch_prob=spec.mixup_switch_prob, smoothing=spec.smoothing)
    return images, mixing.smooth_targets(labels, num_classes, spec.smoothing)

  return augment
