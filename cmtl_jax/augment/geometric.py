"""Geometric augmentation of one uint8 image `[H, W, C]`: random resized crop with horizontal flip, and the affine
warps RandAugment uses. Every warp is one bilinear resampling by `dm_pix.affine_transform` (output index ->
input index, 'pull' resampling) in Pillow's and torchvision's pixel-centre convention (a pixel's centre is at
index + 0.5): `tests/augment/test_geometric.py` compares the affine warps with Pillow and the resized crop with a
numpy implementation of its map. A crop is never larger than the image it is resized to, so bilinear needs no
antialiasing.
"""

import math

import dm_pix
import jax
import jax.numpy as jnp


def warp(image, matrix, offset):
  """`image` uint8 `[H, W, C]` resampled bilinearly at input index `matrix @ (row, col) + offset` for every output
  index (matrix `[2, 2]`, offset `[2]`, rows first); outside the image the nearest edge pixel. float32 `[H, W, C]`."""
  full = jnp.eye(3, dtype=jnp.float32).at[:2, :2].set(matrix)
  shift = jnp.concatenate([jnp.asarray(offset, jnp.float32), jnp.zeros((1,), jnp.float32)])
  return dm_pix.affine_transform(image.astype(jnp.float32), full, offset=shift, order=1, mode='nearest')


def to_uint8(x, *, truncate: bool = False):
  """float32 pixels -> uint8, rounded half up, or truncated as Pillow's 8-bit resampling does. Truncation gets 1e-3
  of slack so that a value float32 misses by a rounding error (32.99997 for 33) truncates as the exact value would;
  Pillow computes in double, which misses too (0.6 - 0.5 = 0.09999999999999998), so about 1 pixel in 1,000 differs
  from Pillow's by one grey level (`tests/augment/test_geometric.py`)."""
  return jnp.clip(jnp.floor(x + (1e-3 if truncate else 0.5)), 0, 255).astype(jnp.uint8)


def pil_affine(image, coefficients, *, fill):
  """Pillow's `Image.transform(size, AFFINE, (a, b, c, d, e, f), BILINEAR, fillcolor=fill)` of uint8 `[H, W, C]`:
  the output pixel centred at (x, y) (column, row; a centre is at index + 0.5) reads the input at
  (a x + b y + c, d x + e y + f); a point outside [0, W) x [0, H) is `fill`, one inside is interpolated with the
  edge pixels repeated, and the result truncated."""
  a, b, c, d, e, f = coefficients
  height, width = image.shape[:2]
  # In index space (centre at the index): in = A (out + 0.5) + t - 0.5, rows first.
  matrix = jnp.array([[e, d], [b, a]], jnp.float32)
  offset = jnp.stack([d * 0.5 + e * 0.5 + f - 0.5, a * 0.5 + b * 0.5 + c - 0.5]).astype(jnp.float32)
  rows = jnp.arange(height, dtype=jnp.float32)[:, None] + 0.5
  cols = jnp.arange(width, dtype=jnp.float32)[None, :] + 0.5
  x_in = a * cols + b * rows + c
  y_in = d * cols + e * rows + f
  inside = ((x_in >= 0) & (x_in < width) & (y_in >= 0) & (y_in < height))[..., None]
  return jnp.where(inside, to_uint8(warp(image, matrix, offset), truncate=True), jnp.uint8(fill))


def rotation(degrees, height: int, width: int) -> tuple:
  """The `pil_affine` coefficients of Pillow's `Image.rotate(degrees)`: counter-clockwise about the centre
  (width / 2, height / 2), same size."""
  angle = -jnp.deg2rad(degrees)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  cx, cy = width / 2.0, height / 2.0
  return (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)


def rotate(image, degrees, *, fill):
  """Pillow's `Image.rotate(degrees, BILINEAR, fillcolor=fill)` of uint8 `[H, W, C]`."""
  return pil_affine(image, rotation(degrees, *image.shape[:2]), fill=fill)


def crop_box(key, height: int, width: int, scale, ratio, attempts: int = 10):
  """torchvision's / timm's `RandomResizedCrop.get_params`: up to `attempts` draws of an area share in `scale` and
  a log-uniform aspect ratio (width / height) in `ratio`; the first that fits the image is the crop, else a centre
  crop with the ratio clamped. Returns int32 (top, left, crop height, crop width)."""
  area = height * width
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  target = area * jax.random.uniform(k_area, (attempts,), minval=scale[0], maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(k_ratio, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1])))
  w = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(fits)
  # The centre fallback.
  in_ratio = width / height
  if in_ratio < min(ratio):
    fw, fh = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    fw, fh = int(round(height * max(ratio))), height
  else:
    fw, fh = width, height
  ok = fits.any()
  ch = jnp.where(ok, h[first], fh)
  cw = jnp.where(ok, w[first], fw)
  top = jnp.where(ok, jnp.floor(jax.random.uniform(k_top) * (height - ch + 1)).astype(jnp.int32), (height - fh) // 2)
  left = jnp.where(ok, jnp.floor(jax.random.uniform(k_left) * (width - cw + 1)).astype(jnp.int32), (width - fw) // 2)
  return top, left, ch, cw


def resized_crop(image, top, left, crop_height, crop_width, flip):
  """The box (top, left, crop_height, crop_width) of uint8 `image` `[H, W, C]` resized bilinearly (no antialias) to
  `[H, W]`, mirrored left-right where `flip` (a bool scalar); edges repeat. Output (r, c) reads input
  (top + (r + 0.5) h / H - 0.5, left + (c' + 0.5) w / W - 0.5) with c' = W - 1 - c when flipped."""
  height, width = image.shape[:2]
  sy = crop_height.astype(jnp.float32) / height
  sx = crop_width.astype(jnp.float32) / width
  sign = jnp.where(flip, -1.0, 1.0)
  col0 = jnp.where(flip, width - 1.0, 0.0)  # c' = col0 + sign * c
  matrix = jnp.array([[1.0, 0.0], [0.0, 0.0]], jnp.float32) * sy + jnp.array([[0.0, 0.0], [0.0, 1.0]]) * sx * sign
  offset = jnp.stack([top + 0.5 * sy - 0.5, left + (col0 + 0.5) * sx - 0.5])
  return to_uint8(warp(image, matrix, offset))


def random_resized_crop(key, image, *, scale, ratio, hflip: float):
  """timm's training crop of uint8 `image` `[H, W, C]`: `crop_box` resized back to `[H, W]`, then a left-right
  mirror with probability `hflip`."""
  k_box, k_flip = jax.random.split(key)
  top, left, ch, cw = crop_box(k_box, image.shape[0], image.shape[1], scale, ratio)
  return resized_crop(image, top, left, ch, cw, jax.random.uniform(k_flip) < hflip)


def random_flip(key, image, probability: float):
  """uint8 `image` `[H, W, C]` mirrored left-right with `probability`."""
  return jnp.where(jax.random.uniform(key) < probability, image[:, ::-1], image)
