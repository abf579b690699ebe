"""The pure steps: training on one batch drives the loss down; shuffling, padding and LR injection behave."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmtl_jax.models import build as model_lib
from cmtl_jax import optim
from cmtl_jax import train
from cmtl_jax.models import checkpoints
from tests.conftest import TINY_BEIT


def _tiny_setup(bert_path, variant='hybrid'):
  """The tiny BEiT and (hybrid) the first layer of the stand-in BERT at `bert_path`, 4 classes."""
  beit = checkpoints.load_beit('', TINY_BEIT)
  bert = checkpoints.load_bert(bert_path, 1) if variant == 'hybrid' else None
  model = model_lib.build(beit.config, bert.config if bert else None, 4)
  params = model_lib.init_params(model, jax.random.key(0))
  params, pretrained = model_lib.load_pretrained(params, bert.params if bert else None, None)
  return model, params, pretrained


@pytest.mark.parametrize('variant,optimizer', [('hybrid', 'adam'), ('hybrid', 'sgdm'), ('beit', 'adam')])
def test_steps_on_one_batch_drive_the_loss_down(stand_in_bert, variant, optimizer):
  model, params, pretrained = _tiny_setup(stand_in_bert, variant)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (8, 8, 8, 1)), jnp.uint8)
  labels = jnp.asarray(np.arange(8) % 4, jnp.int32)
  lr = 1e-3 if optimizer == 'adam' else 1e-2
  tx = optim.make_optimizer(optimizer, lr, total_steps=30, warmup_fraction=0.0, decay='constant', grad_clip=1.0,
                            lr_multipliers=optim.lr_multipliers(pretrained, 3.0))
  train_epoch = jax.jit(train.make_train_epoch(model, tx, batch_size=8, steps=1))
  state = train.init_state(params, tx)
  losses = []
  for i in range(30):
    state, loss = train_epoch(state, jax.random.key(i), images, labels, jnp.arange(8))
    losses.append(float(loss))
  assert losses[-1] < 0.3 * losses[0], losses


def test_epoch_order_uses_each_valid_index_once_and_drops_padding():
  idx = jnp.array([5, 9, -1, 2, 7, -1, 11, 3], jnp.int32)
  order = train.epoch_order(jax.random.key(0), idx, steps=3, batch_size=2)
  assert order.shape == (3, 2)
  got = np.asarray(order).ravel()
  assert len(set(got.tolist())) == 6 and set(got.tolist()) <= {5, 9, 2, 7, 11, 3}
  other = train.epoch_order(jax.random.key(1), idx, steps=3, batch_size=2)
  assert not np.array_equal(np.asarray(other), np.asarray(order))


def test_learning_rate_is_an_injected_array_and_multipliers_scale_updates():
  params = {'fresh': jnp.ones((2, 2)), 'pretrained': jnp.ones((2, 2))}
  tx = optim.make_optimizer('sgdm', 0.5, total_steps=10, warmup_fraction=0.0, decay='constant', momentum=0.0,
                            lr_multipliers=optim.lr_multipliers({'fresh': False, 'pretrained': True}, 10.0))
  state = tx.init(params)
  assert state.hyperparams['learning_rate'].dtype == jnp.float32
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  np.testing.assert_allclose(updates['pretrained'], -0.5)
  np.testing.assert_allclose(updates['fresh'], -5.0)
  # Stacked states with different learning rates update differently under vmap.
  stacked = jax.vmap(lambda lr: optim.make_optimizer('sgdm', lr, total_steps=10, decay='constant',
                                                     warmup_fraction=0.0, momentum=0.0).init(params))(
                                                         jnp.array([0.1, 1.0]))
  tx_plain = optim.make_optimizer('sgdm', 0.0, total_steps=10, decay='constant', warmup_fraction=0.0,
                                  momentum=0.0)
  out, _ = jax.vmap(lambda s: tx_plain.update(grads, s, params))(stacked)
  np.testing.assert_allclose(out['fresh'][:, 0, 0], [-0.1, -1.0], rtol=1e-6)


@pytest.mark.parametrize('case', ['small', 'large', 'one_inf', 'nan'])
def test_clip_by_global_norm_is_optax_to_the_last_bit(case):
  grads = {'a': jax.random.normal(jax.random.key(0), (40, 30)), 'b': jnp.arange(7.0)}
  grads = {'small': jax.tree.map(lambda g: 0.01 * g, grads), 'large': jax.tree.map(lambda g: 3.0 * g, grads),
           'one_inf': {**grads, 'b': grads['b'].at[2].set(np.inf)},
           'nan': {**grads, 'b': grads['b'].at[2].set(np.nan)}}[case]
  ours, _ = jax.jit(optim.clip_by_global_norm(1.0).update)(grads, optax.EmptyState())
  theirs, _ = jax.jit(optax.clip_by_global_norm(1.0).update)(grads, optax.EmptyState())
  if case == 'small':  # Not clipped: passed through unchanged.
    assert optax.global_norm(grads) < 1.0
    jax.tree.map(np.testing.assert_array_equal, ours, grads)
  if case == 'large':
    np.testing.assert_allclose(optax.global_norm(ours), 1.0, rtol=1e-6)
  # A product by max_norm / norm instead of optax's quotient: the same to one rounding; an inf norm zeroes the
  # finite entries (and the inf one is NaN) and a NaN norm makes all NaN, in both.
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-7, atol=0), ours, theirs)


def test_schedule_warms_up_then_decays():
  shape = optim.lr_shape(100, 0.1, 'cosine')
  assert float(shape(0)) == 0.0 and float(shape(10)) == pytest.approx(1.0) and float(shape(100)) < 1e-6
  assert float(shape(5)) == pytest.approx(0.5)


def test_evaluate_counts_only_valid_indices(stand_in_bert):
  model, params, _ = _tiny_setup(stand_in_bert)
  images = jnp.zeros((5, 8, 8, 1), jnp.uint8)
  labels = jnp.array([0, 1, 2, 3, 0], jnp.int32)
  evaluate = jax.jit(train.make_evaluate(model, num_classes=4, batch_size=2))
  cm = evaluate(params, images, labels, jnp.array([0, 1, 2, -1, -1], jnp.int32))
  assert float(cm.sum()) == 3.0
  np.testing.assert_array_equal(np.asarray(cm.sum(axis=1)), [1, 1, 1, 0])


def test_weight_decay_skips_vectors():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  tx = optim.make_optimizer('adam', 0.1, total_steps=10, warmup_fraction=0.0, decay='constant', weight_decay=0.5)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates['bias'], 0.0)
  np.testing.assert_allclose(updates['kernel'], -0.05)
  assert isinstance(tx, optax.GradientTransformation)


def test_fit_takes_a_legacy_raw_key_as_its_typed_twin_and_other_prng_impls(stand_in_bert):
  model, params, pretrained = _tiny_setup(stand_in_bert)
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (96, 8, 8, 1)), jnp.uint8)
  labels = jnp.asarray(np.arange(96) % 4, jnp.int32)
  tx = optim.make_optimizer('adam', 1e-3, total_steps=4)

  def run(rng):
    return train.fit(model, tx, params, images, labels, np.arange(64), np.arange(64, 96), num_epochs=2,
                     batch_size=32, num_classes=4, rng=rng, log=None)

  typed_params, typed = run(jax.random.key(3))
  raw_params, raw = run(jax.random.PRNGKey(3))  # The same bits, untyped: the same training.
  assert raw == [dict(h, seconds=r['seconds']) for h, r in zip(typed, raw)]
  jax.tree.map(np.testing.assert_array_equal, raw_params, typed_params)
  rbg_params, rbg = run(jax.random.key(3, impl='rbg'))  # Another PRNG: its own dropout and shuffling.
  assert np.isfinite([h['loss'] for h in rbg]).all()
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, rbg_params, typed_params)))
