"""RandAugment (Cubuk et al. 2020, arXiv:1909.13719) on uint8 images `[H, W, C]`, as timm's `rand-m{M}-n{N}-mstd{S}`
(`timm/data/auto_augment.py`): `N` ops drawn with replacement from the 15 below, each applied with probability 0.5
at magnitude `M` (of 10) plus Gaussian noise of std `S`, clipped to [0, 10]; `-inc1` (timm's and BEiT's default,
'rand-m9-mstd0.5-inc1') takes the variants of Posterize, Solarize and the enhance ops that grow with `M`.

The ops are Pillow's (`ImageOps`, `ImageEnhance`, `Image.transform`), which is what timm and the BEiT recipe apply;
`tests/augment/test_randaugment.py` compares each with Pillow. dm-pix's and augmax's colour ops follow TensorFlow's
definitions (per-channel contrast means, float images) instead, so only the warps use dm-pix (`geometric.warp`).
Geometric ops fill with grey 128 (timm's `_FILL`); they resample bilinearly (timm draws bilinear or bicubic).

Under `jax.vmap` a data-dependent choice evaluates every candidate, so a layer is computed as one look-up table, one
blend and one warp, each chosen per image: identity values (the identity table, blend factor 1, the identity warp)
leave an image bit-identical.
"""

import re

import jax
import jax.numpy as jnp

from cmtl_jax.augment import geometric
from cmtl_jax.errors import ConfigError

# timm's `_RAND_TRANSFORMS`, in its order.
OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd', 'Color', 'Contrast',
       'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
FILL = 128
_LUT_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Posterize', 'Solarize', 'SolarizeAdd')
_BLEND_OPS = ('Color', 'Contrast', 'Brightness', 'Sharpness')
_WARP_OPS = ('Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')


def parse(policy: str):
  """`(num_ops, magnitude, magnitude_std, increasing)` of a timm RandAugment string such as 'rand-m9-mstd0.5' or
  'rand-m9-n2-mstd0.5-inc1' (defaults n=2, m=10, mstd=0, inc=0; `inc1` uses timm's `_RAND_INCREASING_TRANSFORMS`,
  whose Posterize, Solarize and enhance ops grow stronger with the magnitude: BEiT's and timm's default).

  Raises:
    ConfigError: not of that form (timm's other policies, AutoAugment and AugMix, are not implemented).
  """
  parts = policy.split('-')
  if parts[0] != 'rand':
    raise ConfigError(f"augment.auto_augment {policy!r}: only RandAugment ('rand-m9-mstd0.5') is implemented.")
  values = {'n': 2, 'm': 10.0, 'mstd': 0.0, 'inc': 0}
  for part in parts[1:]:
    match = re.fullmatch(r'(mstd|m|n|inc)(\d+(?:\.\d*)?)', part)
    if not match:
      raise ConfigError(f"augment.auto_augment {policy!r}: unknown part {part!r} (known: m<magnitude>, n<ops>, "
                        'mstd<std>, inc<0 or 1>).')
    values[match.group(1)] = float(match.group(2))
  if values['m'] > 10:
    raise ConfigError(f'augment.auto_augment {policy!r}: the magnitude is at most 10 (timm clips larger ones).')
  return int(values['n']), values['m'], values['mstd'], bool(values['inc'])


# ---------------------------------------------------------------------------------------------------------------
# Look-up tables, per channel: uint8 [C, 256].

def _histogram(image):
  """Counts of each value per channel: int32 `[C, 256]`."""
  channels = image.shape[-1]
  flat = image.reshape(-1, channels).astype(jnp.int32)
  return jax.vmap(lambda v: jnp.zeros(256, jnp.int32).at[v].add(1), in_axes=1)(flat)


def autocontrast_lut(image):
  """`ImageOps.autocontrast(image)`: each channel's [min, max] stretched to [0, 255] (truncated), identity where
  min == max. In exact integer arithmetic; Pillow's doubles land just under some integers (a range's maximum can map
  to 254), so a few values differ from Pillow's by one level."""
  hist = _histogram(image)
  values = jnp.arange(256)
  present = hist > 0
  lo = jnp.argmax(present, axis=1)[:, None]
  hi = (255 - jnp.argmax(present[:, ::-1], axis=1))[:, None]
  span = jnp.maximum(hi - lo, 1)
  stretched = jnp.clip(((values - lo) * 255) // span, 0, 255)
  return jnp.where(hi > lo, stretched, values).astype(jnp.uint8)


def equalize_lut(image):
  """`ImageOps.equalize(image)`: per channel, step = (pixels - count of the last present value) // 255; value i
  maps to (step // 2 + pixels below i) // step; identity where step is 0."""
  hist = _histogram(image)
  total = hist.sum(axis=1, keepdims=True)
  last = jnp.take_along_axis(hist, (255 - jnp.argmax(hist[:, ::-1] > 0, axis=1))[:, None], axis=1)
  step = (total - last) // 255
  below = jnp.cumsum(hist, axis=1) - hist
  mapped = jnp.clip((step // 2 + below) // jnp.maximum(step, 1), 0, 255)
  return jnp.where(step > 0, mapped, jnp.arange(256)).astype(jnp.uint8)


def _channel_lut(table, channels):
  return jnp.broadcast_to(table.astype(jnp.uint8), (channels, 256))


def invert_lut(channels):
  return _channel_lut(255 - jnp.arange(256), channels)


def posterize_lut(bits, channels):
  """`ImageOps.posterize(image, bits)`: keep the `bits` high bits (0..8; 0, timm's level below magnitude 2.5, is
  black, where Pillow 12+ refuses it)."""
  mask = (0xFF << (8 - bits)) & 0xFF
  return _channel_lut(jnp.arange(256) & mask, channels)


def solarize_lut(threshold, channels):
  """`ImageOps.solarize(image, threshold)`: values >= threshold inverted."""
  values = jnp.arange(256)
  return _channel_lut(jnp.where(values < threshold, values, 255 - values), channels)


def solarize_add_lut(add, channels, threshold=128):
  """timm's `solarize_add`: values below `threshold` raised by `add`, at most 255."""
  values = jnp.arange(256)
  return _channel_lut(jnp.where(values < threshold, jnp.minimum(values + add, 255), values), channels)


def apply_lut(image, lut):
  """uint8 `image` `[H, W, C]` through per-channel tables `[C, 256]`."""
  return jax.vmap(lambda plane, table: table[plane], in_axes=(2, 0), out_axes=2)(image.astype(jnp.int32), lut)


# ---------------------------------------------------------------------------------------------------------------
# ImageEnhance: blend(degenerate, image, factor) = degenerate + factor (image - degenerate), truncated to uint8.

def grey(image):
  """Pillow's `convert('L')` of RGB: (299 R + 587 G + 114 B) / 1000 in its fixed point, rounded; `[H, W, 1]`
  int32. A single-channel image is its own grey."""
  if image.shape[-1] == 1:
    return image.astype(jnp.int32)
  x = image.astype(jnp.int32)
  return (x[..., :1] * 19595 + x[..., 1:2] * 38470 + x[..., 2:3] * 7471 + 0x8000) >> 16


def color_degenerate(image):
  """`ImageEnhance.Color`'s: the grey image in every channel."""
  return jnp.broadcast_to(grey(image), image.shape).astype(jnp.float32)


def contrast_degenerate(image):
  """`ImageEnhance.Contrast`'s: the grey image's mean, rounded, everywhere."""
  mean = jnp.floor(grey(image).astype(jnp.float32).mean() + 0.5)
  return jnp.full(image.shape, mean, jnp.float32)


def sharpness_degenerate(image):
  """`ImageEnhance.Sharpness`'s: `ImageFilter.SMOOTH` (3 x 3 kernel of ones with 5 at the centre, / 13, rounded),
  the outermost pixels unchanged."""
  x = image.astype(jnp.float32)
  padded = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
  height, width = image.shape[:2]
  total = sum(padded[i:i + height, j:j + width] for i in range(3) for j in range(3)) + 4.0 * x
  smooth = jnp.floor(total / 13.0 + 0.5)
  inner = jnp.zeros((height, width, 1), bool).at[1:-1, 1:-1].set(True)
  return jnp.where(inner, smooth, x)


def blend(image, degenerate, factor):
  """`Image.blend(degenerate, image, factor)` in float32, clipped and truncated to uint8."""
  x = image.astype(jnp.float32)
  out = degenerate + jnp.asarray(factor, jnp.float32) * (x - degenerate)
  return jnp.clip(out, 0.0, 255.0).astype(jnp.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Warps, as Pillow's `Image.transform(size, AFFINE, ...)` coefficients.

def shear_x(factor):
  return (1.0, factor, 0.0, 0.0, 1.0, 0.0)


def shear_y(factor):
  return (1.0, 0.0, 0.0, factor, 1.0, 0.0)


def translate_x(pixels):
  return (1.0, 0.0, pixels, 0.0, 1.0, 0.0)


def translate_y(pixels):
  return (1.0, 0.0, 0.0, 0.0, 1.0, pixels)


# ---------------------------------------------------------------------------------------------------------------
# One layer: an op index, its level and sign -> the image.

def level_args(magnitude, sign, increasing: bool = False):
  """timm's level -> argument maps at `magnitude` (0..10) with the random sign of the signed ones: a dict of
  scalars, one per op family; `increasing`: its `*Increasing` maps for Posterize, Solarize and the enhance ops."""
  level = magnitude / 10.0
  args = {'degrees': sign * level * 30.0,                    # Rotate: [-30, 30].
          'bits': (level * 4.0).astype(jnp.int32),           # Posterize: keep 0..4 bits.
          'threshold': (level * 256.0).astype(jnp.int32),    # Solarize: [0, 256].
          'add': (level * 110.0).astype(jnp.int32),          # SolarizeAdd: [0, 110].
          'enhance': level * 1.8 + 0.1,                      # Color, Contrast, Brightness, Sharpness: [0.1, 1.9].
          'shear': sign * level * 0.3,                       # ShearX / ShearY: [-0.3, 0.3].
          'translate': sign * level * 0.45}                  # TranslateXRel / YRel: [-0.45, 0.45] of the size.
  if increasing:
    args.update(bits=4 - args['bits'],                       # Keep 4 down to 0 bits.
                threshold=256 - args['threshold'],           # Threshold 256 down to 0.
                enhance=jnp.maximum(0.1, 1.0 + sign * level * 0.9))  # 1 -/+ up to 0.9, at least 0.1.
  return args


def apply_op(image, op, magnitude, sign, increasing: bool = False):
  """Op number `op` (of `OPS`, an int32 scalar; -1 = none) of uint8 `image` `[H, W, C]` at `magnitude`, `sign`
  (+1 or -1) for the signed ones, with `level_args(..., increasing)`. Works under `vmap`: computes one table, one
  blend and one warp and chooses their arguments by `op`."""
  height, width, channels = image.shape
  args = level_args(magnitude, sign, increasing)
  is_op = {name: op == i for i, name in enumerate(OPS)}

  identity = _channel_lut(jnp.arange(256), channels)
  luts = {'AutoContrast': autocontrast_lut(image), 'Equalize': equalize_lut(image), 'Invert': invert_lut(channels),
          'Posterize': posterize_lut(args['bits'], channels), 'Solarize': solarize_lut(args['threshold'], channels),
          'SolarizeAdd': solarize_add_lut(args['add'], channels)}
  lut = identity
  for name in _LUT_OPS:
    lut = jnp.where(is_op[name], luts[name], lut)
  image = apply_lut(image, lut)

  degenerate = jnp.zeros(image.shape, jnp.float32)  # Brightness's.
  degenerate = jnp.where(is_op['Color'], color_degenerate(image), degenerate)
  degenerate = jnp.where(is_op['Contrast'], contrast_degenerate(image), degenerate)
  degenerate = jnp.where(is_op['Sharpness'], sharpness_degenerate(image), degenerate)
  is_blend = is_op['Color'] | is_op['Contrast'] | is_op['Brightness'] | is_op['Sharpness']
  image = blend(image, degenerate, jnp.where(is_blend, args['enhance'], 1.0))

  coefficients = jnp.array(translate_x(0.0))
  candidates = {'Rotate': geometric.rotation(args['degrees'], height, width), 'ShearX': shear_x(args['shear']),
                'ShearY': shear_y(args['shear']), 'TranslateXRel': translate_x(args['translate'] * width),
                'TranslateYRel': translate_y(args['translate'] * height)}
  for name in _WARP_OPS:
    coefficients = jnp.where(is_op[name], jnp.stack([jnp.asarray(v, jnp.float32) for v in candidates[name]]),
                             coefficients)
  is_warp = sum(is_op[name].astype(jnp.int32) for name in _WARP_OPS) > 0
  warped = geometric.pil_affine(image, tuple(coefficients[i] for i in range(6)), fill=FILL)
  return jnp.where(is_warp, warped, image)


def rand_augment(key, image, *, num_ops: int, magnitude: float, magnitude_std: float, increasing: bool = False,
                 probability: float = 0.5):
  """RandAugment of uint8 `image` `[H, W, C]`: `num_ops` layers, each an op drawn uniformly from `OPS` applied with
  `probability` at `magnitude` (+ N(0, magnitude_std) noise, clipped to [0, 10]) and a random sign; `increasing`:
  timm's increasing variants (`level_args`)."""
  def layer(image, k):  # One compiled layer, scanned over the layers' keys.
    k_op, k_apply, k_mag, k_sign = jax.random.split(k, 4)
    op = jax.random.randint(k_op, (), 0, len(OPS))
    op = jnp.where(jax.random.uniform(k_apply) < probability, op, -1)
    level = magnitude + magnitude_std * jax.random.normal(k_mag) if magnitude_std else jnp.float32(magnitude)
    level = jnp.clip(level, 0.0, 10.0)
    sign = jnp.where(jax.random.uniform(k_sign) < 0.5, -1.0, 1.0)
    return apply_op(image, op, level, sign, increasing), None

  return jax.lax.scan(layer, image, jax.random.split(key, num_ops))[0]
