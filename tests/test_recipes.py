"""BEiT's fine-tuning recipe as config changes: its values land in the resolved run, overrides win, and a misspelt
override is refused when the run is resolved."""

import pytest

from cmtl_jax import config as config_lib
from cmtl_jax import recipes
from cmtl_jax import resolve
from cmtl_jax.errors import ConfigError


def test_beits_recipe_resolves_to_its_published_values():
  c = config_lib.base_config()
  recipes.beit_finetune(c)
  run = resolve.resolve(c, 'train')
  assert (run.optim.weight_decay, run.optim.layer_decay, run.optim.grad_clip) == (0.05, 0.65, 0.0)
  assert run.model.beit.drop_path_rate == 0.1
  assert run.augment.auto_augment == 'rand-m9-mstd0.5-inc1'
  assert (run.augment.mixup, run.augment.cutmix, run.augment.reprob, run.augment.smoothing) == (0.8, 1.0, 0.25, 0.1)
  assert run.augment.scale == (0.08, 1.0) and run.augment.hflip == 0.5


def test_overrides_win_and_a_misspelt_one_is_refused():
  c = config_lib.base_config()
  recipes.beit_finetune(c, augment__hflip=0.0)
  assert resolve.resolve(c, 'train').augment.hflip == 0.0
  recipes.beit_finetune(c, augment__hfilp=0.0)
  with pytest.raises(ConfigError, match='hfilp'):
    resolve.resolve(c, 'train')
