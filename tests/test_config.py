"""Config keys in groups: every key is validated before anything is read; an unknown key names where a key of the
flat config went, or the nearest keys; a group given a value is one line."""

import ml_collections
import pytest

from cmtl_jax import config as config_lib
from cmtl_jax.errors import ConfigError


def _set(config, key, value):
  *parents, last = key.split('.')
  for parent in parents:
    config = config[parent]
  config[last] = value


BAD_CONFIG = [
    ('no_such_key', 1, "unknown config key 'no_such_key'"),
    ('model.beit.no_such_field', 1, "unknown config key 'model.beit.no_such_field': nearest valid keys: model.beit."),
    ('optim.batch_size', 32.5, 'optim.batch_size must be an integer, got 32.5'),
    ('optim.learning_rate', '1e-3', "optim.learning_rate must be a number, got '1e-3'"),
    ('model.freeze_bert', 1, 'model.freeze_bert must be True or False, got 1'),
    ('model.beit.image_size', 8.5, 'model.beit.image_size must be an integer, got 8.5'),
    ('ablation.arms', 'beit', "ablation.arms must be a list, got 'beit'"),
    ('search.cv', 1, 'search.cv must be >= 2 folds'),
    ('devices.vmap_width', -2, 'devices.vmap_width must be >= -1'),
    ('devices.models_per_program', -1, 'devices.models_per_program must be >= 0'),
    ('search.refit', 'auc', "unknown search.refit 'auc'"),
    ('search.score_epoch', 'first', "unknown search.score_epoch 'first'"),
    ('search.kind', 'random', "unknown search.kind 'random': choose one of exhaustive, halving"),
    ('ablation.curve_sizes', (10, 0), 'ablation.curve_sizes must be positive integers'),
    ('augment.smoothing', 1.0, 'augment.smoothing must lie in \\[0, 1\\)'),
    ('model.variant', 'clip', "unknown model.variant 'clip': choose one of hybrid, beit"),
    ('optim.optimizer', 'rmsprop', "unknown optim.optimizer 'rmsprop': choose one of sgdm, adam"),
    ('optim.learning_rate', -0.1, 'optim.learning_rate must be a positive number'),
    ('optim.batch_size', 0, 'optim.batch_size must be a positive number'),
    ('optim.warmup_fraction', 1.0, 'optim.warmup_fraction must be < 1'),
    ('data.resize', 'stretch', "unknown data.resize 'stretch': choose one of crop, pad"),
    ('data.on_bad_image', 'ignore', "unknown data.on_bad_image 'ignore': choose one of error, skip"),
    ('data.channels', 2, 'data.channels must be 1 \\(grey\\), 3 \\(RGB\\) or 0'),
    ('data.image_size', -8, 'data.image_size must be >= 0'),
    ('data.memory_fraction', 0.0, 'data.memory_fraction must lie in \\(0, 1\\]'),
    ('data.memory_fraction', 1.5, 'data.memory_fraction must lie in \\(0, 1\\]'),
    ('pretrain.mask_ratio', 1.0, 'pretrain.mask_ratio must lie strictly between 0 and 1'),
    ('pretrain.vocab_size', 1, 'pretrain.vocab_size must be >= 2'),
    ('pretrain.batch_size', 0, 'pretrain.batch_size must be >= 1'),
    ('pretrain.decay', 'step', "unknown pretrain.decay 'step'"),
    ('search.halving_factor', 1, 'halving needs search.halving_factor >= 2'),
    ('ablation.inner_cv', 0, 'ablation.inner_cv must be >= 2 inner folds, or 1'),
]


@pytest.mark.parametrize('key,value,message', BAD_CONFIG)
def test_every_config_key_is_validated_up_front(tiny_config, key, value, message):
  # Built from a plain dict (as from JSON or a grid cell): ConfigDict's own assignment type check is not in play.
  raw = tiny_config.to_dict()
  _set(raw, key, value)
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(ml_collections.ConfigDict(raw))


def test_freezing_bert_without_bert_is_refused(tiny_config):
  tiny_config.model.variant, tiny_config.model.freeze_bert = 'beit', True
  with pytest.raises(ConfigError, match='model.freeze_bert needs model.variant hybrid'):
    config_lib.validate(tiny_config)


@pytest.mark.parametrize('key,message', [
    ('learning_rat', "unknown config key 'learning_rat': nearest valid keys: optim.learning_rate"),
    ('variant', "config key 'variant' is now 'model.variant' \\(keys are grouped\\): use --config.model.variant=..."),
    ('beit.image_size', "config key 'beit.image_size' is now 'model.beit.image_size'"),
    ('grid_search', "nearest valid keys"),
    ('batch_size', "config key 'batch_size' is now one of optim.batch_size, pretrain.batch_size"),
    ('data_dir', "config key 'data_dir' is now 'data.data_dir'"),
])
def test_a_key_of_the_flat_config_names_its_group(key, message):
  assert config_lib.key_exists(key) is False
  with pytest.raises(ConfigError, match=message):
    raise ConfigError(config_lib.unknown_key_message(key))
  if '.' not in key:  # The same line from validation.
    with pytest.raises(ConfigError, match=message):
      config_lib.validate(ml_collections.ConfigDict({**config_lib.base_config().to_dict(), key: 1}))


def test_a_group_given_a_value_names_its_keys():
  raw = config_lib.base_config().to_dict()
  raw['search'] = 'halving'
  with pytest.raises(ConfigError, match=r'search is a group of keys \(search.cv, search.grid, .*search.kind.*\), not a value: set one of its keys'):
    config_lib.validate(ml_collections.ConfigDict(raw))


def test_suggestions_name_keys_not_groups():
  message = config_lib.unknown_key_message('pretrain.epochs')
  names = message.split('nearest valid keys: ')[1].rstrip('.').split(', ')
  assert 'pretrain.num_epochs' in names
  assert all(config_lib.key_exists(name) for name in names), names
  groups = config_lib.key_names(groups=True)
  assert not set(names) & (set(groups) - set(config_lib.key_names(groups=False))), names


def test_beit_fields_are_unset_until_asked_for():
  beit = config_lib.base_config().model.beit
  assert all(v is None for v in beit.values())
  c = config_lib.base_config()
  c.model.beit.image_size = 16  # Equal to FRESH_BEIT's: still a request, honoured or refused by `resolve`.
  assert c.model.beit.image_size == 16 and config_lib.FRESH_BEIT['image_size'] == 16
  with pytest.raises(TypeError):
    c.model.beit.image_size = 'large'
