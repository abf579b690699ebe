"""Random erasing (Zhong et al. 2020, arXiv:1708.04896) of one uint8 image, as timm's `RandomErasing(mode='pixel',
count 1)`: with `probability`, up to 10 draws of an area share in [0.02, 1/3] and a log-uniform aspect ratio in
[0.3, 1/0.3]; the first box that fits strictly inside the image is filled with per-pixel noise.

timm erases after normalisation with N(0, 1) noise; here images are still uint8 (the task normalises them with
BEiT's mean 0.5 / std 0.5), so the noise is 127.5 + 127.5 N(0, 1), rounded and clipped to [0, 255]: the same
values, as pixels.
"""

import math

import jax
import jax.numpy as jnp

MIN_AREA, MAX_AREA = 0.02, 1 / 3
MIN_ASPECT = 0.3


def erase_box(key, height: int, width: int, attempts: int = 10):
  """timm's box draw: int32 (top, left, box height, box width, found)."""
  area = height * width
  k_area, k_aspect, k_top, k_left = jax.random.split(key, 4)
  target = area * jax.random.uniform(k_area, (attempts,), minval=MIN_AREA, maxval=MAX_AREA)
  aspect = jnp.exp(jax.random.uniform(k_aspect, (attempts,), minval=math.log(MIN_ASPECT),
                                      maxval=math.log(1 / MIN_ASPECT)))
  h = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
  w = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
  fits = (w < width) & (h < height)
  first = jnp.argmax(fits)
  h, w = h[first], w[first]
  top = jnp.floor(jax.random.uniform(k_top) * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_left) * (width - w + 1)).astype(jnp.int32)
  return top, left, h, w, fits.any()


def random_erasing(key, image, probability: float):
  """uint8 `image` `[H, W, C]` with one box of noise pixels, with `probability`."""
  height, width, _ = image.shape
  k_apply, k_box, k_noise = jax.random.split(key, 3)
  top, left, h, w, found = erase_box(k_box, height, width)
  rows = jnp.arange(height)[:, None, None]
  cols = jnp.arange(width)[None, :, None]
  inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
  inside &= found & (jax.random.uniform(k_apply) < probability)
  noise = jnp.clip(jnp.round(127.5 + 127.5 * jax.random.normal(k_noise, image.shape)), 0, 255).astype(jnp.uint8)
  return jnp.where(inside, noise, image)
