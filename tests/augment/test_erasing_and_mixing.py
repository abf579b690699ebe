"""Random erasing changes one box of timm's sizes and nothing else; mixup and CutMix mix images and targets by the
same lam, CutMix's lam being the share left unchanged; targets are smoothed as timm smooths them."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax.augment import erasing
from cmtl_jax.augment import mixing


def _images(n=6, size=16):
  return np.random.default_rng(2).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_erasing_fills_one_box_of_timms_sizes_and_leaves_the_rest():
  image = np.full((32, 32, 3), 7, np.uint8)  # Noise is almost never exactly 7 on all 3 channels.
  shares, aspects = [], []
  erased = jax.jit(jax.vmap(lambda k: erasing.random_erasing(k, image, 1.0)))(jax.random.split(jax.random.key(0), 100))
  for x in np.asarray(erased):
    changed = np.any(x != 7, axis=-1)
    rows, cols = np.nonzero(changed)
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert changed.sum() >= 0.95 * h * w  # One filled rectangle.
    shares.append(h * w / 32 ** 2)
    aspects.append(h / w)
  assert min(shares) >= 0.02 * 0.7 and max(shares) <= 1 / 3 * 1.3
  assert min(aspects) >= 0.3 * 0.7 and max(aspects) <= 1 / 0.3 * 1.3


def test_erasing_probability_zero_leaves_the_image():
  image = _images(1)[0]
  np.testing.assert_array_equal(erasing.random_erasing(jax.random.key(0), image, 0.0), image)


def test_smoothed_targets_are_timms():
  targets = mixing.smooth_targets(jnp.array([2, 0]), 4, 0.1)
  np.testing.assert_allclose(targets, [[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]], rtol=1e-6)


@functools.lru_cache(maxsize=None)
def _mixer(**kw):
  args = dict(mixup_alpha=0.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, smoothing=0.0)
  args.update(kw)
  return jax.jit(functools.partial(mixing.mix, num_classes=5, **args))


def _mix(key, images, labels, **kw):
  return _mixer(**kw)(key, images, labels)


def test_mixup_mixes_images_and_targets_by_one_lam():
  images, labels = _images(), jnp.array([0, 1, 2, 3, 4, 0])
  out, targets = _mix(jax.random.key(1), images, labels, mixup_alpha=0.8)
  lam = float(targets[1, 1])  # Example 1 (class 1) is paired with example 4 (class 4).
  expected = np.round(images * lam + images[::-1].astype(np.float64) * (1 - lam))
  assert np.abs(np.asarray(out, int) - expected).max() <= 1
  np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(targets[1, 4], 1 - lam, rtol=1e-5)  # Example 1's partner is example 4.


def test_cutmix_pastes_a_box_and_lam_is_the_unchanged_share():
  images, labels = _images(), jnp.array([0, 1, 2, 3, 4, 0])
  for k in jax.random.split(jax.random.key(2), 5):
    out, targets = _mix(k, images, labels, cutmix_alpha=1.0)
    from_partner = np.all(np.asarray(out[1]) == images[4], axis=-1) & np.any(images[1] != images[4], axis=-1)
    np.testing.assert_allclose(targets[1, 1], 1 - from_partner.mean(), atol=0.02)
    kept = ~from_partner
    np.testing.assert_array_equal(np.asarray(out[1])[kept], images[1][kept])


def test_no_mixing_at_probability_zero_but_targets_still_smoothed():
  images, labels = _images(), jnp.array([0, 1, 2, 3, 4, 0])
  out, targets = _mix(jax.random.key(3), images, labels, mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.0,
                      smoothing=0.1)
  np.testing.assert_array_equal(out, images)
  np.testing.assert_allclose(targets, mixing.smooth_targets(labels, 5, 0.1), rtol=1e-6)


@pytest.mark.parametrize('switch_prob,cutmix_share', [(0.0, 0.0), (1.0, 1.0)])
def test_the_switch_probability_chooses_cutmix_or_mixup(switch_prob, cutmix_share):
  images, labels = _images(), jnp.array([0, 1, 2, 3, 4, 0])
  cut = 0
  for k in jax.random.split(jax.random.key(4), 20):
    out, _ = _mix(k, images, labels, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=switch_prob)
    # CutMix copies pixels exactly (where it pastes, the partner's; elsewhere the original).
    cut += bool(np.all((np.asarray(out) == images) | (np.asarray(out) == images[::-1])))
  assert cut / 20 == cutmix_share
