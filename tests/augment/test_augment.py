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


def test_the_default_spec_builds_no_augmentation():
  assert augment_lib.make_augment(spec(), 10) is None
  assert augment_lib.make_augment(spec(smoothing=0.1), 10) is None  # Smoothing alone: the plain loss applies it.
  assert augment_lib.make_augment(spec(hflip=0.5), 10) is not None


def test_each_model_of_a_stack_draws_its_own_augmentation():
  # That a model trained in a stack sees what it sees alone is tests/search/test_engine.py's (the whole recipe,
  # trained); RandAugment's vmap equality is tests/augment/test_randaugment.py's.
  augment = augment_lib.make_augment(spec(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, reprob=0.25), 10)
  images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
  keys = jax.random.split(jax.random.key(7), 3)  # Three models' step keys.
  stacked, targets = jax.jit(jax.vmap(augment, in_axes=(0, None, None)))(keys, images, np.arange(4))
  assert not np.array_equal(stacked[0], stacked[1]) and not np.array_equal(stacked[1], stacked[2])
  assert not np.array_equal(stacked[0], images)
  np.testing.assert_array_equal(targets[0], np.eye(10)[np.arange(4)])  # No smoothing, no mixing: one-hot.


def test_random_augment_strings_are_checked_when_the_run_is_resolved():
  c = config_lib.base_config()
  c.augment.auto_augment = 'original-mstd0.5'
  with pytest.raises(ConfigError, match='only RandAugment'):
    resolve.resolve(c, 'train')
