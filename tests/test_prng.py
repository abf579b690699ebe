"""`prng.UNROLLED_THREEFRY`: jax's default threefry bits, bit for bit, from the unrolled hash."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax import resolve
from cmtl_jax.task import ClassifierTask
from cmtl_jax.train import classification
from cmtl_jax.train import core
from cmtl_jax import optim
from cmtl_jax import prng

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('shape', [(), (7,), (3, 0), (5, 1, 1), (32, 17, 48)])
@pytest.mark.parametrize('width', [8, 16, 32])
def test_bits_equal_the_default_threefry_bits(shape, width):
  key = jax.random.key(42)
  dtype = jnp.dtype(f'uint{width}')
  theirs = jax.random.bits(key, shape, dtype)
  ours = jax.jit(lambda k: jax.random.bits(prng.unrolled(k), shape, dtype))(key)
  assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
  np.testing.assert_array_equal(ours, theirs)


def test_split_fold_in_and_vmap_follow_the_default_keys():
  keys = jax.random.split(jax.random.key(3), 4)

  def draws(k):
    a, b = jax.random.split(jax.random.fold_in(k, 7))
    return jax.random.bernoulli(a, 0.9, (6, 5)), jax.random.uniform(b, (3,))

  theirs = jax.vmap(draws)(keys)
  ours = jax.jit(jax.vmap(lambda k: draws(prng.unrolled(k))))(keys)
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)


def test_the_fallbacks_give_the_default_bits_too():
  key = jax.random.key(5)
  with jax.threefry_partitionable(False):  # jax's other layout of counters: deferred to jax's own.
    np.testing.assert_array_equal(jax.random.bits(prng.unrolled(key), (9, 4)), jax.random.bits(key, (9, 4)))


def test_a_key_of_another_implementation_is_left_alone():
  key = jax.random.key(0, impl='rbg')
  assert prng.unrolled(key) is key


def test_a_wrong_round_is_caught(monkeypatch):
  """Planted fault: one rotation constant changed; the bits must then differ."""
  key = jax.random.key(42)
  monkeypatch.setattr(prng, '_ROTATIONS', ((13, 15, 26, 6), (17, 29, 16, 25)))
  ours = jax.jit(lambda k: jax.random.bits(prng.unrolled(k), (64,), jnp.uint32))(key)
  assert not np.array_equal(ours, jax.random.bits(key, (64,), jnp.uint32))


def test_a_train_epoch_is_the_one_with_default_keys(tiny_config, monkeypatch):
  """The training epoch (dropout and drop-path bits from the unrolled keys) ends with the same parameters and
  loss, bit for bit, as the same epoch with jax's own threefry keys. With MiniLM's first layer: the two programs
  differ only in how the key bits are computed, and XLA may fuse the rest differently for other shapes (the
  stand-in BERT's differ in the last float32 bit)."""
  tiny_config.model.bert_path = ''  # The packaged MiniLM.
  run = resolve.resolve(tiny_config)
  task = ClassifierTask(run.model, 10)
  params = task.init(jax.random.key(0))
  assert task.model.bert_config.hidden_dropout_prob > 0 and run.model.beit.drop_path_rate > 0  # Bits are drawn.
  tx = optim.from_spec(run.optim, steps_per_epoch=3, task=task)
  images = jax.random.randint(jax.random.key(1), (48, 8, 8, 1), 0, 17).astype(jnp.uint8)
  labels = jnp.arange(48, dtype=jnp.int32) % 10
  idx = jnp.arange(48, dtype=jnp.int32)

  def epoch():
    train_epoch = jax.jit(classification.make_train_epoch(task, tx, batch_size=16, steps=3))
    return train_epoch(core.init_state(params, tx), jax.random.key_data(jax.random.key(2)), np.int32(1), images,
                       labels, idx)

  ours = epoch()
  monkeypatch.setattr(prng, 'unrolled', lambda key: key)
  theirs = epoch()
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)


def test_importing_the_library_compiles_nothing_and_loads_nothing_from_experiments():
  """The first compilation fixes jax's persistent cache directory, which the entry points set from a flag after
  their imports; `prng` once made a key at import and the CLI's --compilation_cache_dir was ignored. The same fresh
  process checks the layout's rule that importing the library loads no module of `experiments`."""
  code = ('import importlib, pkgutil, sys, jax\n'
          'events = []\n'
          'jax.monitoring.register_event_duration_secs_listener(lambda e, s, **kw: events.append(e))\n'
          'import cmtl_jax\n'
          'print(sorted(m for m in sys.modules if m.split(".")[0] == "experiments"))\n'
          'for m in pkgutil.iter_modules(cmtl_jax.__path__): importlib.import_module("cmtl_jax." + m.name)\n'
          'import experiments.cli\n'
          'print([e for e in events if e.endswith("backend_compile_duration")])\n')
  run = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  assert run.stdout.strip().splitlines()[-2:] == ['[]', '[]']
