"""The composed augmentation: off means no augmentation function at all (the plain step); on, a stack of models
(`vmap` over their keys, as the engine runs them) draws what each model draws alone, and models draw differently."""

import jax
import numpy as np
import pytest

from cmtl_jax import augment as augment_lib
from cmtl_jax import config as config_lib
from cmtl_jax import resolve
from cmtl_jax.errors import ConfigError


def spec(**changes):
  c = config_lib.base_config()
  c.augment.update(changes)
  return resolve.resolve(c, 'train').augment


RECIPE = dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, auto_augment='rand-m9-mstd0.5', reprob=0.25,
              mixup=0.8, cutmix=1.0, smoothing=0.1)


def test_the_default_spec_builds_no_augmentation():
  assert augment_lib.make_augment(spec(), 10) is None
  assert augment_lib.make_augment(spec(smoothing=0.1), 10) is None  # Smoothing alone: the plain loss applies it.
  assert augment_lib.make_augment(spec(hflip=0.5), 10) is not None


def test_a_stack_of_models_draws_what_each_draws_alone_and_each_draws_its_own():
  augment = augment_lib.make_augment(spec(**RECIPE), 10)
  images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
  labels = np.arange(4)
  keys = jax.random.split(jax.random.key(7), 3)  # Three models' step keys.
  stacked_images, stacked_targets = jax.jit(jax.vmap(augment, in_axes=(0, None, None)))(keys, images, labels)
  alone = jax.jit(augment)
  for m in range(3):
    x, t = alone(keys[m], images, labels)
    np.testing.assert_array_equal(stacked_images[m], x)
    np.testing.assert_array_equal(stacked_targets[m], t)
  assert not np.array_equal(stacked_images[0], stacked_images[1])
  assert not np.array_equal(stacked_images[1], stacked_images[2])


def test_random_augment_strings_are_checked_when_the_run_is_resolved():
  c = config_lib.base_config()
  c.augment.auto_augment = 'original-mstd0.5'
  with pytest.raises(ConfigError, match='only RandAugment'):
    resolve.resolve(c, 'train')
