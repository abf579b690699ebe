"""RandAugment's ops equal Pillow's (the definitions timm applies), the level maps and the op dispatch are timm's,
and a layer under `vmap` equals the same layer image by image."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from cmtl_jax.augment import geometric
from cmtl_jax.augment import randaugment as ra
from cmtl_jax.errors import ConfigError


def _images():
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
  # A narrow range, so that autocontrast and equalize really move values.
  narrow = rng.integers(60, 140, (20, 24, 3), dtype=np.uint8)
  grey = rng.integers(0, 256, (20, 24, 1), dtype=np.uint8)
  # Equalize's step is (pixels - ...) // 255: large images give steps > 1, which the small ones do not.
  large = rng.integers(30, 200, (64, 80, 3), dtype=np.uint8)
  return {'rgb': noise, 'narrow': narrow, 'grey': grey, 'large': large}


IMAGES = _images()


def _pil(image):
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _array(pil, channels):
  x = np.asarray(pil)
  return x[..., None] if channels == 1 else x


LUT_CASES = {
    'AutoContrast': (lambda x: ra.autocontrast_lut(x), ImageOps.autocontrast),
    'Equalize': (lambda x: ra.equalize_lut(x), ImageOps.equalize),
    'Invert': (lambda x: ra.invert_lut(x.shape[-1]), ImageOps.invert),
    'Posterize3': (lambda x: ra.posterize_lut(3, x.shape[-1]), lambda p: ImageOps.posterize(p, 3)),
    'Posterize1': (lambda x: ra.posterize_lut(1, x.shape[-1]), lambda p: ImageOps.posterize(p, 1)),
    'Solarize': (lambda x: ra.solarize_lut(100, x.shape[-1]), lambda p: ImageOps.solarize(p, 100)),
}


@pytest.mark.parametrize('image', sorted(IMAGES))
@pytest.mark.parametrize('op', sorted(LUT_CASES))
def test_table_ops_equal_pillow(op, image):
  x = IMAGES[image]
  ours, theirs = LUT_CASES[op]
  ours, theirs = ra.apply_lut(x, ours(x)), _array(theirs(_pil(x)), x.shape[-1])
  if op == 'AutoContrast':  # Pillow's doubles land just under some exact integers (255 -> 254.99999 -> 254).
    _close_to_pillow(ours, theirs)
  else:
    np.testing.assert_array_equal(ours, theirs)


def test_solarize_add_is_timms_table():
  x = IMAGES['rgb']
  expected = np.where(x < 128, np.minimum(x.astype(int) + 50, 255), x)
  np.testing.assert_array_equal(ra.apply_lut(x, ra.solarize_add_lut(50, 3)), expected)


BLENDS = {'Color': (ra.color_degenerate, ImageEnhance.Color),
          'Contrast': (ra.contrast_degenerate, ImageEnhance.Contrast),
          'Brightness': (lambda x: jnp.zeros(x.shape, jnp.float32), ImageEnhance.Brightness),
          'Sharpness': (ra.sharpness_degenerate, ImageEnhance.Sharpness)}


@pytest.mark.parametrize('image', ['grey', 'narrow', 'rgb'])
@pytest.mark.parametrize('factor', [0.1, 0.73, 1.9])
@pytest.mark.parametrize('op', sorted(BLENDS))
def test_enhance_ops_equal_pillow(op, factor, image):
  x = IMAGES[image]
  degenerate, enhancer = BLENDS[op]
  np.testing.assert_array_equal(ra.blend(x, degenerate(x), factor),
                                _array(enhancer(_pil(x)).enhance(factor), x.shape[-1]))


def _smooth():
  rows, cols = np.mgrid[0:20, 0:24]
  return np.stack([rows * 12, cols * 10, (rows + cols) * 5], -1).astype(np.uint8)


def _close_to_pillow(ours, theirs, share=0.02):
  """Within one grey level, on at most `share` of the pixels (Pillow truncates doubles, we float32s)."""
  diff = np.abs(np.asarray(ours, int) - np.asarray(theirs, int))
  assert diff.max() <= 1 and (diff > 0).mean() <= share, (diff.max(), (diff > 0).mean())


@pytest.mark.parametrize('coefficients', [ra.shear_x(0.27), ra.shear_x(-0.3), ra.shear_y(0.2), ra.shear_y(-0.11),
                                          ra.translate_x(-7.2), ra.translate_y(4.5)])
def test_affine_warps_equal_pillow(coefficients):
  x = _smooth()
  theirs = _pil(x).transform((24, 20), Image.AFFINE, coefficients, resample=Image.BILINEAR,
                             fillcolor=(ra.FILL,) * 3)
  _close_to_pillow(geometric.pil_affine(x, coefficients, fill=ra.FILL), theirs)


@pytest.mark.parametrize('degrees', [17.0, -27.0, 90.0])
def test_rotation_equals_pillow(degrees):
  x = _smooth()
  theirs = _pil(x).rotate(degrees, resample=Image.BILINEAR, fillcolor=(ra.FILL,) * 3)
  _close_to_pillow(geometric.rotate(x, degrees, fill=ra.FILL), theirs)


def _timm_op(name, magnitude, sign, pil, increasing=False):
  """The op as timm's `AugmentOp` applies it (its level maps, `_FILL`, bilinear), on a Pillow image; `increasing`:
  its `*Increasing` variants of Posterize, Solarize and the enhance ops."""
  level = magnitude / 10
  enhance = max(0.1, 1.0 + sign * level * 0.9) if increasing else level * 1.8 + 0.1
  bits = 4 - int(level * 4) if increasing else int(level * 4)
  threshold = 256 - int(level * 256) if increasing else int(level * 256)
  fill = dict(resample=Image.BILINEAR, fillcolor=(ra.FILL,) * 3)
  w, h = pil.size
  return {
      'AutoContrast': lambda: ImageOps.autocontrast(pil),
      'Equalize': lambda: ImageOps.equalize(pil),
      'Invert': lambda: ImageOps.invert(pil),
      'Rotate': lambda: pil.rotate(sign * level * 30, **fill),
      'Posterize': lambda: ImageOps.posterize(pil, bits),
      'Solarize': lambda: ImageOps.solarize(pil, threshold),
      'SolarizeAdd': lambda: pil.point([min(255, i + int(level * 110)) if i < 128 else i for i in range(256)] * 3),
      'Color': lambda: ImageEnhance.Color(pil).enhance(enhance),
      'Contrast': lambda: ImageEnhance.Contrast(pil).enhance(enhance),
      'Brightness': lambda: ImageEnhance.Brightness(pil).enhance(enhance),
      'Sharpness': lambda: ImageEnhance.Sharpness(pil).enhance(enhance),
      'ShearX': lambda: pil.transform(pil.size, Image.AFFINE, (1, sign * level * 0.3, 0, 0, 1, 0), **fill),
      'ShearY': lambda: pil.transform(pil.size, Image.AFFINE, (1, 0, 0, sign * level * 0.3, 1, 0), **fill),
      'TranslateXRel': lambda: pil.transform(pil.size, Image.AFFINE, (1, 0, sign * level * 0.45 * w, 0, 1, 0),
                                             **fill),
      'TranslateYRel': lambda: pil.transform(pil.size, Image.AFFINE, (1, 0, 0, 0, 1, sign * level * 0.45 * h),
                                             **fill),
  }[name]()


_APPLY_OP = jax.jit(ra.apply_op, static_argnums=4)


@pytest.mark.parametrize('increasing', [False, True])
@pytest.mark.parametrize('name', ra.OPS)
def test_each_op_by_number_is_timms_op_at_its_level(name, increasing):
  """The dispatch (op number -> op) and the level maps, at magnitude 9 with a negative sign."""
  x = _smooth()
  ours = _APPLY_OP(x, jnp.int32(ra.OPS.index(name)), jnp.float32(9.0), jnp.float32(-1.0), increasing)
  # The enhance factor 0.9 x 1.8 + 0.1 computed in float32 is not Python's 1.72, and truncation shows it.
  _close_to_pillow(ours, _timm_op(name, 9.0, -1.0, _pil(x), increasing), share=0.1)


def test_no_op_leaves_the_image_bit_identical():
  x = IMAGES['rgb']
  np.testing.assert_array_equal(ra.apply_op(x, jnp.int32(-1), jnp.float32(9.0), jnp.float32(1.0)), x)


def test_posterize_to_no_bits_is_black():  # timm's level for magnitudes < 2.5; Pillow 12+ refuses 0 bits.
  np.testing.assert_array_equal(ra.apply_lut(IMAGES['rgb'], ra.posterize_lut(0, 3)), 0)


def test_a_vmapped_layer_equals_the_same_layer_image_by_image():
  images = np.stack([IMAGES['rgb'], IMAGES['narrow'], _smooth(), IMAGES['rgb'][::-1]])
  keys = jax.random.split(jax.random.key(3), len(images))
  augment = lambda k, x: ra.rand_augment(k, x, num_ops=2, magnitude=9.0, magnitude_std=0.5)
  batched = jax.jit(jax.vmap(augment))(keys, images)
  one = jax.jit(augment)
  for i in range(len(images)):
    np.testing.assert_array_equal(batched[i], one(keys[i], images[i]))
  # Different keys draw different ops: the 4 images do not all come back unchanged.
  assert any(not np.array_equal(batched[i], images[i]) for i in range(len(images)))


@pytest.mark.parametrize('policy,expected', [('rand-m9-mstd0.5', (2, 9.0, 0.5, False)),
                                             ('rand-m7-n3', (3, 7.0, 0.0, False)), ('rand', (2, 10.0, 0.0, False)),
                                             ('rand-m9-mstd0.5-inc1', (2, 9.0, 0.5, True))])
def test_policy_strings_parse_as_timm_reads_them(policy, expected):
  assert ra.parse(policy) == expected


@pytest.mark.parametrize('policy', ['v0', 'augmix-m5', 'rand-x9', 'rand-m9-w0', 'rand-m40'])
def test_other_policies_are_refused_in_one_line(policy):
  with pytest.raises(ConfigError, match='augment.auto_augment'):
    ra.parse(policy)
