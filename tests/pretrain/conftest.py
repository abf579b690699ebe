"""A pretraining run finished once per session, for the export and probe tests."""

import pytest

from cmtl_jax import config as config_lib
from cmtl_jax import data
from cmtl_jax import resolve
from cmtl_jax.pretrain import run as run_lib
from tests.helpers import TINY_BEIT

# 8 px at patch 2: a 4 x 4 patch grid, 6 of 16 patches masked at BEiT's 0.4.
PRETRAIN_BEIT = {**TINY_BEIT, 'patch_size': 2}


def pretraining_config(data_dir):
  c = config_lib.base_config()
  c.data.data_dir = data_dir
  c.data.train_per_class = 10
  c.model.beit.update(PRETRAIN_BEIT)
  c.pretrain.update(dict(batch_size=32, num_epochs=2, vocab_size=16, tokenizer_patches=2000, min_block_patches=2))
  return c


@pytest.fixture(scope='session')
def finished_run(data_dir, tmp_path_factory):
  """An uninterrupted 2-epoch pretraining run: (config, workdir, result)."""
  config = pretraining_config(data_dir)
  workdir = str(tmp_path_factory.mktemp('pretrain_whole'))
  return config, workdir, run_lib.pretrain(config, workdir, log=None)


@pytest.fixture(scope='session')
def digits_small(data_dir):
  return data.load_dataset(resolve.resolve(pretraining_config(data_dir)).data)
