"""The resolved run: the BEiT and decode size decided once from the config and the checkpoint's config.json, every
explicit key honoured or refused, and the keys a purpose reads."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import cmtl_jax
from cmtl_jax import config as config_lib
from cmtl_jax import data
from cmtl_jax import resolve
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import checkpoints
from cmtl_jax.models.configs import BeitConfig
from tests.helpers import TINY_BEIT


def _checkpoint(path, **fields) -> BeitConfig:
  """A tiny BEiT checkpoint written as transformers writes one (config.json + model.safetensors)."""
  beit = BeitConfig.from_dict({**TINY_BEIT, **fields})
  pixels = jnp.zeros((1, beit.image_size, beit.image_size, beit.num_channels))
  checkpoints.save_beit(str(path), beit, beit_lib.BeitModel(beit).init(jax.random.key(1), pixels)['params'])
  return beit


def _unset_beit(config):
  for key in config.model.beit:
    config.model.beit[key] = None


def test_a_folder_with_a_beit_path_is_decoded_at_the_checkpoints_size_and_channels(tiny_config, tmp_path):
  """The data were once loaded before the model was known: a folder run with a 16 px RGB checkpoint decoded its
  images at the unset `image_size`'s fallback (then 16 px grey), to be upsampled and repeated to RGB."""
  _checkpoint(tmp_path / 'beit', image_size=16, num_channels=3)
  for c, name in enumerate(('cat', 'dog')):
    (tmp_path / 'photos' / name).mkdir(parents=True)
    for i in range(12):
      colour = np.full((20, 24, 3), (40 + 150 * c, 90, 200 - 150 * c), np.uint8) + np.uint8(i)
      Image.fromarray(colour).save(tmp_path / 'photos' / name / f'{i}.png')
  (tmp_path / 'photos' / 'cat' / 'broken.png').write_bytes(b'')  # Skipped, and listed in metrics.json.
  config = tiny_config
  _unset_beit(config)
  config.data.update(dict(dataset='folder', data_dir=str(tmp_path / 'photos'), prepared_dir=str(tmp_path / 'tfds'),
                          on_bad_image='skip'))
  config.model.update(dict(beit_path=str(tmp_path / 'beit'), variant='beit'))
  config.optim.batch_size = 8
  run = resolve.resolve(config)
  assert (run.data.image_size, run.data.channels) == (16, 3) == (run.model.beit.image_size,
                                                                 run.model.beit.num_channels)
  assert resolve.resolve(config, 'ablation').model.beit.image_size == 16  # What the pixel reference rows read.
  results = cmtl_jax.train_and_evaluate(config, str(tmp_path / 'run'), log=None)
  assert results['dataset']['image_shape'] == [16, 16, 3] == results['dataset']['model_input']
  written = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
  assert written['run']['data']['image_size'] == 16 and written['run']['data']['channels'] == 3
  assert written['dataset']['skipped'] == [[os.path.join('cat', 'broken.png'), 'empty file (0 bytes)']]
  assert sum(written['dataset'][k] for k in ('train', 'val', 'test')) == 24
  assert cmtl_jax.Classifier.load(str(tmp_path / 'run')).decoding == {'image_size': 16, 'channels': 3,
                                                                       'resize': 'crop'}


def test_an_explicit_beit_image_size_equal_to_the_default_is_applied(tiny_config, tmp_path):
  """A `beit.*` key equal to its default was once taken for "not asked": 16 px with a 32 px checkpoint ran at 32
  while metrics.json said 16."""
  _checkpoint(tmp_path / 'beit', image_size=32)
  _unset_beit(tiny_config)
  tiny_config.model.beit_path = str(tmp_path / 'beit')
  assert resolve.resolve(tiny_config).model.beit.image_size == 32  # Unset: the checkpoint's.
  tiny_config.model.beit.image_size = config_lib.FRESH_BEIT['image_size']  # 16, asked for.
  tiny_config.data.train_per_class, tiny_config.optim.batch_size = 20, 32  # A short epoch.
  run = resolve.resolve(tiny_config)
  assert run.model.beit.image_size == 16
  results = cmtl_jax.train_and_evaluate(tiny_config, str(tmp_path / 'run'), log=None)
  assert results['run']['model']['beit']['image_size'] == 16 and results['dataset']['model_input'][0] == 16
  assert any('32 px -> 16 px' in note for note in results['pretrained']['beit']['notes'])
  assert cmtl_jax.Classifier.load(str(tmp_path / 'run')).model.beit_config.image_size == 16


def test_a_field_the_checkpoint_fixes_otherwise_is_refused_in_one_line(tiny_config, tmp_path):
  _checkpoint(tmp_path / 'beit')
  _unset_beit(tiny_config)
  tiny_config.model.beit_path = str(tmp_path / 'beit')
  tiny_config.model.beit.hidden_size = 64
  with pytest.raises(ConfigError, match='model.beit.hidden_size=64 but the checkpoint at .* has hidden_size=32'):
    resolve.resolve(tiny_config)
  tiny_config.model.beit.hidden_size = 32  # The checkpoint's value, asked for: honoured.
  tiny_config.model.beit.drop_path_rate = 0.3  # A training key: replaces the checkpoint's.
  assert resolve.resolve(tiny_config).model.beit.drop_path_rate == 0.3
  tiny_config.model.beit.image_size = 10
  with pytest.raises(ConfigError, match="image_size 10 is not a multiple of the checkpoint's patch_size 4"):
    resolve.resolve(tiny_config)


def test_a_fresh_beit_is_fresh_beit_with_the_fields_asked_for(tiny_config):
  _unset_beit(tiny_config)
  assert resolve.resolve(tiny_config).model.beit == BeitConfig.from_dict(config_lib.FRESH_BEIT)
  tiny_config.model.beit.update(dict(hidden_size=64, num_attention_heads=3))
  with pytest.raises(ConfigError, match='hidden_size 64 is not divisible by num_attention_heads 3'):
    resolve.resolve(tiny_config)


def test_the_run_is_frozen_and_hashable_and_the_model_spec_keys_caches(tiny_config):
  run = resolve.resolve(tiny_config)
  with pytest.raises(AttributeError):
    run.seed = 3
  other = resolve.resolve(resolve.with_keys(tiny_config, {'model.beit_pretrained': False}))
  assert run.model != other.model and hash(run.model) != hash(other.model)
  assert run.optim.program_key() == run.optim.replace(learning_rate=1.0, num_epochs=99).program_key()
  assert run.optim.schedule_epochs == run.optim.num_epochs  # 0 resolved.
  assert run.devices is None and resolve.resolve(tiny_config, 'search').devices.num_devices == 1


def test_each_purpose_reads_its_keys_and_refuses_overrides_of_the_others(tiny_config):
  pretraining = resolve.resolve(tiny_config, 'pretrain')
  assert 'pretrain.num_epochs' in pretraining.reads and 'model.beit.image_size' in pretraining.reads
  assert not any(key.startswith(('optim.', 'search.', 'ablation.', 'devices.')) for key in pretraining.reads)
  assert resolve.unread_overrides(pretraining, ['pretrain.num_epochs', 'data.train_per_class']) is None
  assert resolve.unread_overrides(pretraining, ['optim.num_epochs']) == (
      'pretraining does not read --config.optim.num_epochs: did you mean --config.pretrain.num_epochs?')
  assert 'model.variant' not in pretraining.reads
  training = resolve.resolve(tiny_config, 'train')
  assert resolve.unread_overrides(training, ['search.cv']).startswith('training one model does not read')
  assert resolve.unread_overrides(training, ['model.beit.image_size', 'model.beit', 'optim.num_epochs']) is None
  ablation = resolve.resolve(tiny_config, 'ablation')
  assert resolve.unread_overrides(ablation, ['search.cv', 'ablation.arms']) is None
  assert resolve.unread_overrides(ablation, ['search.kind']) is not None  # The selection is always exhaustive.
  with pytest.raises(ConfigError, match='pretraining starts a fresh BEiT'):
    resolve.resolve(resolve.with_keys(tiny_config, {'model.beit_path': '/x'}), 'pretrain')


def test_the_dataset_is_read_from_the_resolved_spec(tiny_config):
  run = resolve.resolve(tiny_config)
  dataset = data.load_dataset(run.data)
  assert dataset.images.shape[1:] == (8, 8, 1) and len(dataset.pool) == len(dataset.train) + len(dataset.val)
  assert os.path.isdir(run.data.data_dir)
