"""Shared fixtures: a private TFDS data dir, the packaged MiniLM loaded once, a stand-in BERT cut from it, and tiny
configs."""

import atexit
import copy
import json
import os
import shutil
import tempfile
import textwrap

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One XLA compilation cache per test session, shared with the CLI subprocesses the tests start: many tests compile
# the same tiny programs (compilation is most of a tiny test's time). Set before jax is imported; removed when the
# session ends (a run leaves ~25 MB), unless the caller chose the directory.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='cmtl_jax_xla_cache_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

from cmtl_jax.models import checkpoints  # pylint: disable=g-import-not-at-top
from cmtl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
from cmtl_jax.search import grid  # pylint: disable=g-import-not-at-top

FAKE_DEVICES = 4  # CPU devices of every test process: sharding is tested in-process; `tiny_config` uses one.


# Test programs are tiny and run for milliseconds, so optimising them costs more than it saves: the tests compile as
# jax's `jax_disable_most_optimizations` says (XLA:CPU's LLVM backend at level 0, no expensive passes), which halves
# each compilation (the tests are compile-bound) and keeps every HLO pass. CMTL_TEST_OPTIMIZED=1 compiles as users
# do; the slow tier reruns the numerics tests so (test_compile_levels.py).
OPTIMIZED = os.environ.get('CMTL_TEST_OPTIMIZED') == '1'


def pytest_configure(config):
  """Before any test touches a backend (importing the library compiles nothing): `FAKE_DEVICES` CPU devices, and
  the compile level above."""
  del config
  jax.config.update('jax_num_cpu_devices', FAKE_DEVICES)
  jax.config.update('jax_disable_most_optimizations', not OPTIMIZED)
  # Every program into the session's cache (jax keeps only those over 1 s by default): the two test processes
  # compile many of the same small programs.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


TINY_BEIT = dict(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                 num_attention_heads=2, intermediate_size=64, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0, drop_path_rate=0.1, use_absolute_position_embeddings=True,
                 use_relative_position_bias=False, use_mean_pooling=True)


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='session')
def _minilm():
  return checkpoints.load_bert('')


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
  """Digits, a 1-layer 32-wide BEiT at 8x8 and the stand-in BERT's first layer: trains in seconds. For what the
  model is does not matter to (search, resume, chunking, reliability). One device of the `FAKE_DEVICES`."""
  c = config_lib.base_config()
  c.data_dir = data_dir
  c.bert_path = stand_in_bert
  c.num_devices = 1
  c.beit.update(TINY_BEIT)
  c.bert_layers = 1
  c.num_epochs = 1
  c.batch_size = 64
  return c


@pytest.fixture
def digits(tiny_config):
  """Digits split as `tiny_config` splits it (train / val / held-out test)."""
  from cmtl_jax import data  # pylint: disable=g-import-not-at-top
  return data.load_dataset(tiny_config)


def count_compilations(monkeypatch):
  """(names, stop): a list that collects the name of every function jax compiles (or takes from the persistent
  compilation cache) from now on, and the function that stops collecting. Empties the grid's program cache, so
  that programs compiled by earlier tests count again."""
  names = []
  listener = lambda event, seconds, **kw: names.append(kw.get('fun_name', '')) if event.endswith(
      'backend_compile_duration') else None
  jax.monitoring.register_event_duration_secs_listener(listener)
  monkeypatch.setattr(grid, '_PROGRAMS', {})  # Nothing compiled by earlier tests.
  return names, lambda: jax.monitoring.unregister_event_duration_listener(listener)


def write_tiny_grid_config(path, data_dir: str, grid: dict, **overrides) -> str:
  """A config file for the grid CLI: the tiny model (1-layer BEiT, first MiniLM layer), 1 epoch, 2 folds, `grid`
  ({key: values}) and `overrides` ({key: value}). Returns its path."""
  lines = [f'c.{k} = {v!r}' for k, v in overrides.items()] + [f'c.grid.{k} = {tuple(v)!r}' for k, v in grid.items()]
  body = '\n'.join('  ' + line for line in lines)
  with open(path, 'w') as f:
    f.write(textwrap.dedent(f"""
        from cmtl_jax import config as config_lib

        def get_config():
          c = config_lib.base_config()
          c.data_dir = {str(data_dir)!r}
          c.beit.update({TINY_BEIT!r})
          c.bert_layers, c.num_epochs, c.cv = 1, 1, 2
        """) + body + '\n  return c\n')
  return str(path)


def cv_scores(workdir) -> dict:
  """The cells and their scores and ranks from a grid CLI run's cv_results.json (not its times)."""
  with open(os.path.join(workdir, 'cv_results.json')) as f:
    results = json.load(f)
  return {k: v for k, v in results.items() if k.startswith(('params', 'split', 'mean_test', 'std_test', 'rank'))}


def max_abs_diff(a, b) -> float:
  """The largest |a - b| over all leaves of two trees of the same structure."""
  return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)))


def train_loss_and_grads(model, params, pixels):
  """The jitted train-mode loss (dropout and drop-path on, fixed keys) of `model` on `pixels`, and its gradients:
  what tests compare between two ways of computing the same hybrid."""
  def loss(p):
    logits = model.apply({'params': p}, pixels, train=True,
                         rngs={'dropout': jax.random.key(2), 'droppath': jax.random.key(3)})
    return jnp.mean(jax.nn.log_softmax(logits)[:, 0])
  return jax.jit(jax.value_and_grad(loss))(params)
