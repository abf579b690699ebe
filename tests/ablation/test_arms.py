"""The arms with the real hybrid: the frozen arm's BERT weights never move, the others' all do; each fresh-BEiT
twin is its arm's model with random BEiT weights; fresh arms need a checkpoint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax import optim
from cmtl_jax import resolve
from cmtl_jax import task as task_lib
from cmtl_jax.ablation import arms as arms_lib
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import checkpoints
from cmtl_jax.models.configs import BeitConfig
from cmtl_jax.train import classification
from cmtl_jax.train import core


def _arm(config, arm, **changes):
  run = resolve.resolve(resolve.with_keys(config, {**arms_lib.ARMS[arm], **changes}))
  return run, task_lib.ClassifierTask(run.model, 10)


def _bits(tree):
  return jax.tree.map(lambda x: np.asarray(x).view(np.uint32).copy(), tree)


def _bert_leaves(tree, layer_norm):
  leaves = jax.tree_util.tree_leaves_with_path(tree['bert_encoder'])
  return [v for path, v in leaves if ('LayerNorm' in jax.tree_util.keystr(path)) == layer_norm]


def test_the_frozen_arm_keeps_bert_weights_bit_identical(tiny_config, digits):
  """An epoch of the training core (4 steps on digits) of the frozen arm keeps every bit of BERT's attention and MLP
  weights and moves its LayerNorms; two optimiser updates from random gradients move every BERT weight of the
  hybrid; the random-BERT arm's BERT starts fresh (its leaves get the fresh weights' learning-rate factor)."""
  run, task = _arm(tiny_config, 'hybrid_frozen_bert', **{'optim.warmup_fraction': 0.0})
  params = task.init(core.model_rngs(run.seed, 0)[0])
  tx = optim.from_spec(run.optim, steps_per_epoch=4, task=task)
  epoch = jax.jit(classification.make_train_epoch(task, tx, batch_size=8, steps=4))
  state, _ = epoch(core.init_state(params, tx), jax.random.key_data(jax.random.key(1)), np.int32(1), digits.images,
                   digits.labels, digits.train[:32])
  changed = jax.tree.map(lambda b, a: not np.array_equal(b, a), _bits(params), _bits(state['params']))
  assert not any(_bert_leaves(changed, layer_norm=False))  # Attention and MLP weights: every bit the same.
  assert all(_bert_leaves(changed, layer_norm=True))         # BERT's LayerNorms train.
  assert all(jax.tree.leaves(changed['head'])) and any(jax.tree.leaves(changed['beit_encoder']))

  run, task = _arm(tiny_config, 'hybrid', **{'optim.warmup_fraction': 0.0})
  params = task.init(core.model_rngs(run.seed, 0)[0])
  tx = optim.from_spec(run.optim, steps_per_epoch=10, task=task)
  state, after = tx.init(params), params
  for step in range(2):
    leaves, tree = jax.tree.flatten(after)
    grads = jax.tree.unflatten(tree, [jax.random.normal(jax.random.key(step * 100 + i), x.shape)
                                      for i, x in enumerate(leaves)])
    updates, state = jax.jit(tx.update)(grads, state, after)
    after = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), after, updates)
  changed = jax.tree.map(lambda b, a: not np.array_equal(b, a), _bits(params), _bits(after))
  assert all(_bert_leaves(changed, layer_norm=False)) and all(_bert_leaves(changed, layer_norm=True))
  assert all(jax.tree.leaves(task.pretrained['bert_encoder'])) and task.sources['bert']['pretrained']
  _, random_bert = _arm(tiny_config, 'hybrid_random_bert')
  assert not any(jax.tree.leaves(random_bert.pretrained['bert_encoder'])) and random_bert.frozen is None
  assert not random_bert.sources['bert']['pretrained']


def test_each_fresh_beit_twin_is_its_arms_model_with_random_beit_weights(tiny_config, tmp_path):
  # The checkpoint's architecture differs from the config's BEiT in a field the config leaves unset (relative
  # position bias), so a twin built from the config instead of the checkpoint's config.json would differ.
  beit = BeitConfig.from_dict({**{k: v for k, v in tiny_config.model.beit.items() if v is not None},
                               'use_relative_position_bias': True})
  tiny_config.model.beit.use_relative_position_bias = None  # Unset: the checkpoint's.
  weights = beit_lib.BeitModel(beit).init(jax.random.key(5), jnp.zeros((1, 8, 8, 1)))['params']
  checkpoints.save_beit(str(tmp_path / 'beit'), beit, weights)
  tiny_config.model.beit_path = str(tmp_path / 'beit')
  counts = {arm: task_lib.param_count(_arm(tiny_config, arm)[1])
            for arm in ('beit', 'hybrid', 'fresh_beit', 'hybrid_fresh_beit')}
  assert counts['fresh_beit']['params_total'] == counts['beit']['params_total']
  assert counts['hybrid_fresh_beit']['params_total'] == counts['hybrid']['params_total']
  beit_size = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(weights))
  pooler = 2 * beit.hidden_size  # The BEiT pooler's LayerNorm: the hybrid does not use it.
  assert counts['hybrid']['params_transferred'] - counts['hybrid_fresh_beit']['params_transferred'] >= (
      beit_size - pooler)
  assert counts['fresh_beit']['params_transferred'] == 0 < counts['beit']['params_transferred']
  model = _arm(tiny_config, 'fresh_beit')[0].model
  assert arms_lib.pretrained_sides(model, 'fresh_beit')['beit'].startswith('fresh (random init, architecture of')
  assert arms_lib.pretrained_sides(model, 'beit')['beit'].startswith('pretrained')


def test_fresh_beit_arms_need_a_pretrained_beit_to_differ_from():
  with pytest.raises(ConfigError, match='fresh_beit, which differ from their twins only by a fresh BEiT.*'
                                        'set --config.model.beit_path'):
    arms_lib.validate_arms(('beit', 'fresh_beit'), 'ablation.arms', '')
  with pytest.raises(ConfigError, match='repeats an arm'):
    arms_lib.validate_arms(('beit', 'beit'), 'ablation.arms', '')
