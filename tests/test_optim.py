"""The optimisers: the injected learning rate and its per-leaf factors, clipping equal to optax's, the schedule,
weight decay's mask, frozen leaves that stay bit-identical, and `from_spec` reading a task's trees."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmtl_jax import optim
from cmtl_jax import resolve
from cmtl_jax.task import ClassifierTask
from tests.fake_task import FakeTask


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


def test_weight_decay_skips_vectors():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  tx = optim.make_optimizer('adam', 0.1, total_steps=10, warmup_fraction=0.0, decay='constant', weight_decay=0.5)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates['bias'], 0.0)
  np.testing.assert_allclose(updates['kernel'], -0.05)


def test_frozen_leaves_keep_negative_zero_and_every_bit():
  params = {'frozen': jnp.array([-0.0, 1.5, -2.25]), 'free': jnp.ones(3)}
  tx = optim.make_optimizer('adam', 0.1, total_steps=10, warmup_fraction=0.0,
                            frozen={'frozen': True, 'free': False})
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  moved = optax.apply_updates(params, updates)
  assert np.signbit(np.asarray(moved['frozen'])[0])  # -0.0 + (-0.0) stays -0.0; +0.0 would flip its sign.
  np.testing.assert_array_equal(np.asarray(moved['frozen']).view(np.uint32), np.asarray(params['frozen']).view(
      np.uint32))
  assert not np.allclose(moved['free'], params['free'])


def test_from_spec_reads_the_schedule_and_the_task_trees(tiny_config):
  tiny_config.optim.update(dict(optimizer='sgdm', momentum=0.0, warmup_fraction=0.0, decay='linear',
                                num_epochs=2, schedule_epochs=4, grad_clip=0.0, learning_rate=0.1))
  spec = resolve.resolve(tiny_config).optim
  task = FakeTask()
  task.pretrained = {'dense': {'kernel': True, 'bias': False}}
  tx = optim.from_spec(spec, steps_per_epoch=5, task=task)
  params = task.init(jax.random.key(0))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates['dense']['kernel'], -0.1)          # Pretrained: the peak LR.
  np.testing.assert_allclose(updates['dense']['bias'], -1.0, rtol=1e-6)  # Fresh: x fresh_lr_multiplier (10).
  for _ in range(9):  # The linear decay spans schedule_epochs (4 x 5 steps), not num_epochs (2 x 5): at the 10th
    updates, state = tx.update(grads, state, params)  # step (count 9) 1 - 9/20 of the peak, not 1 - 9/10.
  np.testing.assert_allclose(updates['dense']['kernel'], -0.1 * (1 - 9 / 20), rtol=1e-5)


def test_layer_ids_follow_beits_rule_through_the_hybrid(tiny_config):
  tiny_config.model.bert_layers = 2
  task = ClassifierTask(resolve.resolve(tiny_config).model, 10)  # BEiT 1 layer -> bridge -> BERT 2 layers.
  ids, num_layers = task.layer_ids
  assert num_layers == 1 + 2 + 1 + 2  # Embeddings, 1 BEiT layer, the bridge, 2 BERT layers, the top.
  assert ids['beit_embeddings']['cls_token'] == 0
  assert {ids['beit_embeddings']['patch_embeddings']['projection']['kernel']} == {0}
  assert set(jax.tree.leaves(ids['beit_encoder']['layer']['0'])) == {1}
  assert set(jax.tree.leaves(ids['adapter'])) == set(jax.tree.leaves(ids['adapter_norm'])) == {2}
  assert set(jax.tree.leaves(ids['bert_encoder']['layer']['0'])) == {3}
  assert set(jax.tree.leaves(ids['bert_encoder']['layer']['1'])) == {4}
  assert set(jax.tree.leaves(ids['head'])) == set(jax.tree.leaves(ids['pool_norm'])) == {5}
  tiny_config.model.variant = 'beit'  # BEiT alone: BEiT's own ids (embeddings 0, layer 1, top 2).
  ids, num_layers = ClassifierTask(resolve.resolve(tiny_config).model, 10).layer_ids
  assert num_layers == 3 and set(jax.tree.leaves(ids['head'])) == {2}


def test_layer_decay_scales_each_leafs_update_and_composes_with_the_injected_lr(tiny_config):
  tiny_config.optim.update(dict(optimizer='sgdm', momentum=0.0, warmup_fraction=0.0, decay='constant',
                                grad_clip=0.0, learning_rate=0.1, fresh_lr_multiplier=10.0))
  task = FakeTask()
  task.pretrained = {'dense': {'kernel': True, 'bias': False}}  # Layer ids: kernel 0, bias 1 of 2.
  params = task.init(jax.random.key(0))
  grads = jax.tree.map(jnp.ones_like, params)

  def first_update(layer_decay, learning_rate=None):
    spec = resolve.resolve(tiny_config).optim.replace(layer_decay=layer_decay)
    tx = optim.from_spec(spec, steps_per_epoch=5, task=task, learning_rate=learning_rate)
    return tx.update(grads, tx.init(params), params)[0]

  decayed = first_update(0.65)
  np.testing.assert_allclose(decayed['dense']['kernel'], -0.1 * 0.65, rtol=1e-6)  # Pretrained, one layer down.
  np.testing.assert_allclose(decayed['dense']['bias'], -0.1 * 10.0, rtol=1e-6)    # Fresh, on top: scale 1.
  np.testing.assert_allclose(first_update(1.0)['dense']['kernel'], -0.1, rtol=1e-6)  # 1 = off.
  # Another model's injected peak LR multiplies the same factors.
  np.testing.assert_allclose(first_update(0.65, learning_rate=0.02)['dense']['kernel'], -0.02 * 0.65, rtol=1e-6)
