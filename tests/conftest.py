"""Shared fixtures: a private TFDS data dir, the packaged MiniLM loaded once, a stand-in BERT cut from it, tiny
configs, and the fake task orchestration tests train (tests/fake_task.py)."""

import atexit
import copy
import json
import os
import shutil
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One XLA compilation cache per test session, shared with the CLI subprocesses the tests start: many tests compile
# the same tiny programs (compilation is most of a tiny test's time). Set before jax is imported; removed when the
# session ends (a run leaves ~25 MB), unless the caller chose the directory.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='cmtl_jax_xla_cache_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)

# Test programs are tiny and run for milliseconds, so optimising them costs more than it saves: the tests compile as
# jax's `jax_disable_most_optimizations` says (XLA:CPU's LLVM backend at level 0, no expensive passes) and with
# XLA:CPU's older elementwise emitters (`--xla_cpu_use_fusion_emitters=false`), which together take a tiny hybrid's
# epoch program from ~7 s to ~2 s to compile (the tests are compile-bound) and keep every HLO pass.
# CMTL_TEST_OPTIMIZED=1 compiles as users do; the system tier reruns the numerics tests so
# (tests/system/test_compile_levels.py). Set before jax reads XLA_FLAGS.
OPTIMIZED = os.environ.get('CMTL_TEST_OPTIMIZED') == '1'
_TEST_FLAG = '--xla_cpu_use_fusion_emitters=false'
_flags = os.environ.get('XLA_FLAGS', '').replace(_TEST_FLAG, '').split()  # Subprocesses inherit the parent's.
os.environ['XLA_FLAGS'] = ' '.join(_flags if OPTIMIZED else _flags + [_TEST_FLAG])

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

from cmtl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
from cmtl_jax import data  # pylint: disable=g-import-not-at-top
from cmtl_jax import resolve  # pylint: disable=g-import-not-at-top
from cmtl_jax.models import checkpoints  # pylint: disable=g-import-not-at-top
from tests import fake_task  # pylint: disable=g-import-not-at-top
from tests.helpers import TINY_BEIT  # pylint: disable=g-import-not-at-top

FAKE_DEVICES = 4  # CPU devices of every test process: sharding is tested in-process; `tiny_config` uses one.


def pytest_configure(config):
  """Before any test touches a backend (importing the library compiles nothing): `FAKE_DEVICES` CPU devices, and
  the compile level above."""
  del config
  jax.config.update('jax_num_cpu_devices', FAKE_DEVICES)
  jax.config.update('jax_disable_most_optimizations', not OPTIMIZED)
  # Every program into the session's cache (jax keeps only those over 1 s by default): the two test processes
  # compile many of the same small programs.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='session')
def _minilm():
  return checkpoints.load_bert('', checkpoints.bert_config(''))


@pytest.fixture
def minilm(_minilm):
  """The packaged all-MiniLM-L6-v2 (all 6 layers); a copy, so tests may modify it."""
  return copy.deepcopy(_minilm)


# The stand-in BERT: MiniLM's first two layers cut to width 48 (3 heads of 16; unlike the tiny BEiT's 32, so the
# hybrid keeps its adapter), MLP width 96, a 64-token vocabulary and 16 positions. Slicing every axis of a size in
# `_CUT` keeps Hugging Face's names and layout, so it loads through the real checkpoint reader; it trains ~25x
# cheaper than MiniLM's 384-wide layer.
_CUT = {384: 48, 1536: 96, 30522: 64, 512: 16}
_STAND_IN = dict(hidden_size=48, num_attention_heads=3, intermediate_size=96, num_hidden_layers=2, vocab_size=64,
                 max_position_embeddings=16)


@pytest.fixture(scope='session')
def stand_in_bert(tmp_path_factory) -> str:
  """A local Hugging Face BERT directory (config.json + model.safetensors): the stand-in above."""
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  source = checkpoints.packaged_bert_path()
  directory = tmp_path_factory.mktemp('stand_in_bert')
  with open(os.path.join(source, 'config.json')) as f:
    config = {**json.load(f), **_STAND_IN}
  with open(directory / 'config.json', 'w') as f:
    json.dump(config, f)
  tensors = safetensors_numpy.load_file(os.path.join(source, 'model.safetensors'))
  kept = {name: t[tuple(slice(_CUT.get(n, n)) for n in t.shape)] for name, t in tensors.items()
          if not name.startswith('encoder.layer.') or int(name.split('.')[2]) < _STAND_IN['num_hidden_layers']}
  safetensors_numpy.save_file(kept, str(directory / 'model.safetensors'))
  return str(directory)


@pytest.fixture
def tiny_config(data_dir, stand_in_bert):
  """Digits, a 1-layer 32-wide BEiT at 8x8 and the stand-in BERT's first layer: trains in seconds. One device of
  the `FAKE_DEVICES`; 2 folds."""
  c = config_lib.base_config()
  c.data.data_dir = data_dir
  c.model.bert_path = stand_in_bert
  c.model.bert_layers = 1
  c.model.beit.update(TINY_BEIT)
  c.optim.num_epochs = 1
  c.optim.batch_size = 64
  c.search.cv = 2
  c.devices.num_devices = 1
  return c


@pytest.fixture
def digits(tiny_config):
  """Digits split as `tiny_config` splits it (train / val / held-out test)."""
  return data.load_dataset(resolve.resolve(tiny_config).data)


@pytest.fixture
def fake():
  """`build_task` for searches and the ablation: the fake task (a linear model on pixels) of a model spec."""
  return fake_task.FakeTask
