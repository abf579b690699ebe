"""The resized crop equals a numpy implementation of its map; the crop box is torchvision's draw (inside the image,
its area share and aspect ratio in range, the centre crop when nothing fits); flips mirror."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax.augment import geometric


def _image():
  rng = np.random.default_rng(1)
  return rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)


def numpy_resized_crop(image, top, left, h, w, flip):
  """The reference: output (r, c) samples input (top + (r + .5) h / H - .5, left + (c' + .5) w / W - .5), c' the
  mirrored column when flipped, bilinearly with the edge repeated, rounded half up; in float64."""
  height, width, _ = image.shape
  out = np.zeros(image.shape, np.float64)
  x = image.astype(np.float64)
  for r in range(height):
    for c in range(width):
      cc = width - 1 - c if flip else c
      y_in = min(max(top + (r + 0.5) * h / height - 0.5, 0), height - 1)
      x_in = min(max(left + (cc + 0.5) * w / width - 0.5, 0), width - 1)
      y0, x0 = int(np.floor(y_in)), int(np.floor(x_in))
      y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
      dy, dx = y_in - y0, x_in - x0
      out[r, c] = ((1 - dy) * ((1 - dx) * x[y0, x0] + dx * x[y0, x1]) + dy * ((1 - dx) * x[y1, x0] + dx * x[y1, x1]))
  return np.clip(np.floor(out + 0.5), 0, 255)


_RESIZED_CROP = jax.jit(geometric.resized_crop)  # One program for every box.


@pytest.mark.parametrize('box,flip', [((0, 0, 12, 12), False), ((2, 3, 7, 5), False), ((2, 3, 7, 5), True),
                                      ((5, 0, 6, 12), True), ((1, 1, 3, 9), False)])
def test_the_resized_crop_equals_its_map_in_numpy(box, flip):
  image = _image()
  ours = _RESIZED_CROP(image, *(jnp.int32(v) for v in box), jnp.bool_(flip))
  diff = np.abs(np.asarray(ours, int) - numpy_resized_crop(image, *box, flip))
  assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float32 against float64 at the .5 of rounding.


def test_the_whole_image_unflipped_is_the_image_bit_for_bit():
  image = _image()
  np.testing.assert_array_equal(_RESIZED_CROP(image, 0, 0, jnp.int32(12), jnp.int32(12), False), image)


def test_crop_boxes_lie_inside_with_area_and_ratio_in_range():
  scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
  boxes = jax.vmap(lambda k: geometric.crop_box(k, 32, 48, scale, ratio))(jax.random.split(jax.random.key(0), 500))
  top, left, h, w = (np.asarray(v) for v in boxes)
  assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 48).all()
  area = h * w / (32 * 48)
  assert area.min() >= 0.08 * 0.8 and area.max() <= 1.0  # Rounding of the sides moves the share a little.
  assert (w / h).min() >= 3 / 4 * 0.8 and (w / h).max() <= 4 / 3 * 1.25
  assert len(set(zip(top, left, h, w))) > 400  # Draws differ.


def test_when_nothing_fits_the_crop_is_the_centre_with_the_ratio_clamped():
  # Aspect ratios 4-5 never fit a 32 x 16 (h x w) image at these areas: centre crop of width 16, height 16 / 4.
  top, left, h, w = geometric.crop_box(jax.random.key(0), 32, 16, (0.9, 1.0), (4.0, 5.0))
  assert (int(top), int(left), int(h), int(w)) == ((32 - 4) // 2, 0, 4, 16)


def test_flip_probability_one_mirrors_and_zero_does_not():
  image = _image()
  np.testing.assert_array_equal(geometric.random_flip(jax.random.key(0), image, 1.0), image[:, ::-1])
  np.testing.assert_array_equal(geometric.random_flip(jax.random.key(0), image, 0.0), image)
