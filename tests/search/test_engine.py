"""The engine on the fake task: a stack equals its models trained alone, programs compile once, states are donated,
the model axis shards over devices, groups split into chunks, divergence stays in its model, fits continue, and a
killed run resumes to the uninterrupted results."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from cmtl_jax import metrics as metrics_lib
from cmtl_jax import resolve
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.errors import ConfigError
from cmtl_jax.search import engine as engine_lib
from cmtl_jax.search import stacked
from tests.fake_task import FakeTask
from tests.helpers import count_compilations

KEYS = ('loss', *metrics_lib.METRICS)
DIVERGING_LR = 1e38  # x10 for fresh weights: the SGD update overflows float32.


@pytest.fixture
def run(tiny_config):
  tiny_config.optim.num_epochs = 2
  return resolve.resolve(tiny_config, 'search')


def make_fits(run, digits, members, task=None, folds=3):
  """Fits of the fake task: `members` are (learning rate, fold) pairs; fold k draws from stream k."""
  task = task or FakeTask()
  pairs = folds_lib.fold_indices(digits.labels, digits.pool, folds, run.seed)
  return [engine_lib.Fit(f'lr{lr}/fold{k}', task, run.optim.replace(learning_rate=lr), run.augment, *pairs[k],
                         run.seed, k) for lr, k in members]


def devices(run, **changes):
  return run.devices.replace(**changes)


def test_a_stack_equals_each_model_trained_alone(run, digits, monkeypatch):
  fits = make_fits(run, digits, [(1e-3, 0), (1e-3, 2), (3e-2, 0), (3e-2, 2)])
  staged = (digits.images, digits.labels)
  names, stop = count_compilations(monkeypatch)
  try:  # All 4 vectorised (the accelerator path), and the single-model program run model after model (the CPU's).
    stacks = {width: engine_lib.Engine(*staged, devices(run, vmap_width=width)).train(fits) for width in (0, 1)}
  finally:
    stop()
  # Each program compiled once for both epochs: the second epoch's state (the first's output) must not look
  # different to jit (it did when injected learning rates stayed uncommitted beside committed weights).
  assert sum('train_epoch' in n for n in names) == 2
  for fit in fits:
    alone = engine_lib.Engine(*staged, resolve.ONE_DEVICE).train([fit])[fit.name]
    for key in KEYS:  # The single-model program, in a stack or alone: one computation, equal bit for bit.
      np.testing.assert_array_equal(stacks[1][fit.name][key], alone[key], err_msg=key)
      # Vectorised, the matmuls are batched: another program, equal up to float32 rounding.
      np.testing.assert_allclose(stacks[0][fit.name][key], alone[key], atol=5e-3, err_msg=key)
  # The learning rates and the streams really differ between the models of the stack.
  losses = [stacks[1][f.name]['loss'][-1] for f in fits]
  assert len(set(losses)) == 4


RECIPE = dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, auto_augment='rand-m9-mstd0.5', reprob=0.25,
              mixup=0.8, cutmix=1.0, smoothing=0.1)


def test_a_stack_with_the_recipe_equals_each_model_trained_alone(run, digits):
  recipe = run.augment.replace(**RECIPE)
  fits = [dataclasses.replace(f, augment=recipe) for f in make_fits(run, digits, [(1e-3, 0), (1e-3, 1), (3e-2, 2)])]
  stack = engine_lib.Engine(digits.images, digits.labels, devices(run, vmap_width=1)).train(fits)
  for fit in fits:
    alone = engine_lib.Engine(digits.images, digits.labels, resolve.ONE_DEVICE).train([fit])[fit.name]
    for key in KEYS:
      np.testing.assert_array_equal(stack[fit.name][key], alone[key], err_msg=key)
  # The augmentation is really on: the same model without it trains to other losses.
  plain = engine_lib.Engine(digits.images, digits.labels, resolve.ONE_DEVICE).train(
      [dataclasses.replace(fits[0], augment=run.augment)])[fits[0].name]
  assert not np.array_equal(plain['loss'], stack[fits[0].name]['loss'])


def test_with_an_ema_the_ema_is_scored_and_returned_and_the_raw_weights_scored_beside(run, digits):
  fits = [dataclasses.replace(f, optim=f.optim.replace(ema_decay=0.9))
          for f in make_fits(run, digits, [(3e-2, 0), (3e-2, 1)])]
  engine = engine_lib.Engine(digits.images, digits.labels, devices(run, vmap_width=1))
  stack = engine.train(fits)
  alone = engine_lib.Engine(digits.images, digits.labels, resolve.ONE_DEVICE).train([fits[1]])[fits[1].name]
  for key in (*KEYS, 'raw_accuracy'):
    np.testing.assert_array_equal(stack[fits[1].name][key], alone[key], err_msg=key)
  plain = engine_lib.Engine(digits.images, digits.labels, resolve.ONE_DEVICE).train(
      [dataclasses.replace(fits[1], optim=run.optim.replace(learning_rate=3e-2))])[fits[1].name]
  np.testing.assert_array_equal(alone['raw_accuracy'], plain['accuracy'])  # The raw weights train as without EMA.
  assert not np.array_equal(alone['accuracy'], plain['accuracy'])        # ... and the EMA is what is scored.
  task = fits[0].task
  returned = engine.params(fits[0].name)
  val = np.asarray(fits[0].val_idx)
  logits = task.apply(returned, digits.images[val])
  np.testing.assert_allclose((np.argmax(logits, -1) == digits.labels[val]).mean(), stack[fits[0].name]['accuracy'][-1],
                             atol=1e-6)  # The weights returned are the ones scored: the EMA.


def test_a_planted_stream_swap_is_caught(run, digits):
  """The equality above can fail: two models whose PRNG streams are swapped train differently."""
  fit, = make_fits(run, digits, [(1e-3, 0)])
  swapped = dataclasses.replace(fit, stream=1)
  a = engine_lib.Engine(digits.images, digits.labels, resolve.ONE_DEVICE).train([fit])[fit.name]
  b = engine_lib.Engine(digits.images, digits.labels, resolve.ONE_DEVICE).train([swapped])[fit.name]
  assert not np.array_equal(a['loss'], b['loss'])


def test_equal_groups_share_one_compiled_program(run, digits, monkeypatch):
  fits = make_fits(run, digits, [(1e-3, 0), (1e-3, 1)])
  other_seed = [dataclasses.replace(f, name=f.name + '/seed1', seed=1) for f in fits]
  names, stop = count_compilations(monkeypatch)
  try:
    engine_lib.Engine(digits.images, digits.labels, run.devices).train(fits + other_seed)
    same = sum('train_epoch' in n for n in names)
    names.clear()
    # The control: two new batch sizes are two programs (batch 64, the first call's, is reused).
    batches = [dataclasses.replace(f, name=f'{f.name}/b{b}', optim=f.optim.replace(batch_size=b))
               for b in (16, 32, 64) for f in fits]
    engine_lib.Engine(digits.images, digits.labels, run.devices).train(batches)
    different = sum('train_epoch' in n for n in names)
  finally:
    stop()
  assert (same, different) == (1, 2)


def test_a_stacked_epoch_donates_the_state(run, digits):
  task = FakeTask()
  for width in (1, 0):
    fit, = make_fits(run, digits, [(1e-3, 0)], task)
    programs = engine_lib.programs_for(fit, steps=2, width=width, mesh=None)
    params = [task.init(jax.random.key(0))] if width == 1 else task.init_stacked([jax.random.key(0)])
    stack = stacked.Stack(programs, params, np.array([1e-3]),
                          digits.train[None, :200], digits.val[None], jax.random.split(jax.random.key(0), 1))
    before = jax.tree.leaves(stack._chunks[0]['state'])
    stack.train(1, digits.images, digits.labels)
    assert all(leaf.is_deleted() for leaf in before)  # Donated: updated in place, no second copy of the state.


def test_a_group_sharded_over_4_devices_gives_the_one_device_results(run, digits):
  """6 models (2 learning rates x 3 folds) over the 4 fake CPU devices, padded to 8, 2 per device, against all 6
  vectorised on one device."""
  assert jax.device_count() == 4
  fits = make_fits(run, digits, [(lr, k) for lr in (1e-3, 3e-3) for k in range(3)])
  results = {}
  for count in (4, 1):
    engine = engine_lib.Engine(digits.images, digits.labels, devices(run, num_devices=count, vmap_width=0))
    assert (engine.mesh.size if engine.mesh is not None else 1) == count
    results[count] = engine.train(fits)
  for fit in fits:
    for key in KEYS:
      np.testing.assert_allclose(results[4][fit.name][key], results[1][fit.name][key], atol=1e-6, err_msg=key)


def test_auto_models_per_program_counts_states_and_activations():
  gib = 2 ** 30
  # 8 GiB budget (half of 16), 100 MiB of state per model (x4), 1 GiB of activations per model.
  assert engine_lib.auto_models_per_program(100 * 2 ** 20, gib, vectorised=True, total_bytes=16 * gib) == 5
  assert engine_lib.auto_models_per_program(100 * 2 ** 20, gib, vectorised=False, total_bytes=16 * gib) == 17
  assert engine_lib.auto_models_per_program(10 * gib, gib, vectorised=True, total_bytes=16 * gib) == 1  # Never 0.


def test_a_group_that_does_not_fit_runs_in_chunks_with_the_same_results(run, digits, monkeypatch):
  fits = make_fits(run, digits, [(1e-3, k) for k in range(5)], folds=5)
  whole = engine_lib.Engine(digits.images, digits.labels, devices(run, models_per_program=5))
  whole_results = whole.train(fits)
  original = engine_lib.auto_models_per_program

  def two_models_fit(per_model, activation, vectorised, total_bytes=None, fraction=0.5, devices=1):
    del total_bytes, fraction, devices  # A device with room for two models' states besides one's activations.
    return original(per_model, activation, vectorised, total_bytes=2 * (activation + 10 * per_model))

  monkeypatch.setattr(engine_lib, 'auto_models_per_program', two_models_fit)
  chunked = engine_lib.Engine(digits.images, digits.labels, run.devices)
  chunked_results = chunked.train(fits)
  assert whole.models_per_program_ == {0: 5} and chunked.models_per_program_ == {0: 2}  # 3 programs: 2 + 2 + 1.
  for fit in fits:
    for key in KEYS:
      np.testing.assert_array_equal(chunked_results[fit.name][key], whole_results[fit.name][key], err_msg=key)


def test_a_batch_larger_than_a_split_is_refused(run, digits):
  fit, = make_fits(run, digits, [(1e-3, 0)])
  tiny = dataclasses.replace(fit, train_idx=fit.train_idx[:10])
  with pytest.raises(ConfigError, match='larger than a training split'):
    engine_lib.Engine(digits.images, digits.labels, run.devices).train([tiny])


@pytest.mark.parametrize('vmap_width', [1, 0])
def test_a_diverging_model_does_not_touch_its_neighbours(run, digits, vmap_width):
  optim = run.optim.replace(optimizer='sgdm', grad_clip=0.0)
  run = run.replace(optim=optim)
  good = [(1e-3, 0), (3e-3, 2)]
  engine = lambda: engine_lib.Engine(digits.images, digits.labels, devices(run, vmap_width=vmap_width))
  with_bad = engine().train(make_fits(run, digits, [good[0], (DIVERGING_LR, 1), good[1]]))
  if vmap_width == 1:  # Models run one by one: compare with the run that does not have the bad model at all.
    without = engine().train(make_fits(run, digits, good))
  else:  # Vectorised: a stack of another size may sum in another order, so compare with the bad model made good.
    without = engine().train(make_fits(run, digits, [good[0], (1e-3, 1), good[1]]))
  bad = with_bad[f'lr{DIVERGING_LR}/fold1']
  assert np.isnan(bad['loss']).all() and np.isnan(bad['accuracy']).all()
  for lr, k in good:  # Its neighbours: bit for bit what they are without it.
    for key in KEYS:
      np.testing.assert_array_equal(with_bad[f'lr{lr}/fold{k}'][key], without[f'lr{lr}/fold{k}'][key], err_msg=key)


@pytest.mark.parametrize('vmap_width', [1, 0])
def test_fits_continue_where_an_earlier_call_left_them(run, digits, vmap_width):
  """Successive halving's mechanics: 3 fits to epoch 1, then 2 of them (in another order) to epoch 2, equal the
  same 2 trained to epoch 2 at once."""
  run = run.replace(optim=run.optim.replace(num_epochs=2))
  fits = make_fits(run, digits, [(1e-3, 0), (3e-3, 1), (1e-2, 2)])
  engine = engine_lib.Engine(digits.images, digits.labels, devices(run, vmap_width=vmap_width))
  engine.train(fits, until_epoch=1)
  kept = engine.train([fits[2], fits[0]], until_epoch=2)
  straight = engine_lib.Engine(digits.images, digits.labels, devices(run, vmap_width=vmap_width)).train(
      [fits[2], fits[0]])
  for fit in (fits[2], fits[0]):
    for key in KEYS:
      compare = np.testing.assert_array_equal if vmap_width == 1 else (
          lambda a, b, err_msg: np.testing.assert_allclose(a, b, atol=5e-3, err_msg=err_msg))
      compare(kept[fit.name][key], straight[fit.name][key], err_msg=key)
  assert set(engine._stacks) == {fits[2].name, fits[0].name}  # The dropped fit is no longer held.


class Interrupt(Exception):
  pass


@pytest.mark.parametrize('vmap_width', [1, 0])
def test_a_killed_run_resumes_to_the_uninterrupted_results(run, digits, tmp_path, vmap_width):
  """Two calls as successive halving makes them (4 fits in 2 groups to epoch 1, then 2 of them to epoch 3),
  interrupted in the second call's second group: the rerun reads back what finished and trains the rest from the
  saved states, to the results of a run never stopped."""
  run = run.replace(optim=run.optim.replace(num_epochs=3))
  one = make_fits(run, digits, [(1e-3, 0), (3e-3, 1)])
  two = make_fits(run, digits, [(1e-3, 0), (3e-3, 1)], task=FakeTask(tag='other'))
  two = [dataclasses.replace(f, name='other/' + f.name) for f in two]
  layout = devices(run, vmap_width=vmap_width)

  def calls(engine, on_epoch=None):
    first = engine.train(one + two, until_epoch=1)
    second = engine.train([one[1], two[0]], until_epoch=3, on_epoch=on_epoch)
    return first, second

  def stop_in_second_group(names, epoch, row):
    del epoch, row
    if names[0].startswith('other/'):
      raise Interrupt()

  workdir = str(tmp_path / 'run')
  fingerprint = {'test': 1}
  engine = lambda: engine_lib.Engine(digits.images, digits.labels, layout, workdir=workdir, fingerprint=fingerprint)
  with pytest.raises(Interrupt):
    calls(engine(), stop_in_second_group)
  resumed_engine = engine()
  resumed = calls(resumed_engine)
  assert resumed_engine.units_resumed_ == [0, 1, 2] and resumed_engine.units_trained_ == [3]
  fresh = calls(engine_lib.Engine(digits.images, digits.labels, layout))
  for got, want in zip(resumed, fresh):
    for name in want:
      for key in KEYS:
        np.testing.assert_array_equal(got[name][key], want[name][key], err_msg=f'{name} {key}')
  again = engine()
  calls(again)
  assert again.units_trained_ == []  # Everything finished: nothing trains.
  with pytest.raises(ConfigError, match='another run'):
    engine_lib.Engine(digits.images, digits.labels, layout, workdir=workdir, fingerprint={'test': 2})
  with open(os.path.join(workdir, 'progress', '0.json'), 'w') as f:
    f.write('{"fits": ')  # A unit's file cut short by hand (the store writes atomically).
  with pytest.raises(ConfigError, match='0.json .*the workdir is damaged'):
    calls(engine())
