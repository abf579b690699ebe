"""The classifier task the engine trains: stacked init equals each model's, preprocessing is inside `apply`, equal
specs are equal tasks, bf16 computes in bf16 with float32 params."""

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax import data
from cmtl_jax import resolve
from cmtl_jax import task as task_lib


def _task(config, num_classes=10):
  return task_lib.ClassifierTask(resolve.resolve(config).model, num_classes)


def test_stacked_init_is_each_models_init_and_checkpoints_are_placed(tiny_config):
  task = _task(tiny_config)
  rngs = jax.random.split(jax.random.key(0), 3)
  stacked = task.init_stacked(rngs)
  for i, rng in enumerate(rngs):
    jax.tree.map(lambda s, one: np.testing.assert_array_equal(s[i], one), stacked, task.init(rng))
  assert all(jax.tree.leaves(task.pretrained['bert_encoder'])) and not any(jax.tree.leaves(task.pretrained['head']))
  # Checkpoint subtrees are the same in every model; random ones differ.
  np.testing.assert_array_equal(stacked['bert_encoder']['layer']['0']['output']['dense']['kernel'][0],
                                stacked['bert_encoder']['layer']['0']['output']['dense']['kernel'][2])
  kernel = stacked['beit_encoder']['layer']['0']['attention']['attention']['query']['kernel']
  assert not np.array_equal(kernel[0], kernel[2])


def test_apply_preprocesses_uint8_images_itself(tiny_config):
  task = _task(tiny_config)
  params = jax.tree.map(lambda x: x + 0.01, task.init(jax.random.key(0)))
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)), jnp.uint8)
  pixels = data.preprocess(images, 8, 1)
  np.testing.assert_allclose(task.apply(params, images), task.model.apply({'params': params}, pixels), atol=1e-6)
  assert task.key == _task(tiny_config).key and task == _task(tiny_config) and hash(task) == hash(_task(tiny_config))
  assert task != _task(tiny_config, num_classes=3)
  counts = task_lib.param_count(task)
  assert counts['params_total'] == sum(x.size for x in jax.tree.leaves(params))
  assert 0 < counts['params_transferred'] < counts['params_total'] == counts['params_trained']


def test_bfloat16_computes_in_bf16_and_keeps_float32_params(tiny_config, digits):
  tiny_config.model.dtype = 'bfloat16'
  task = _task(tiny_config)
  params = task.init(jax.random.key(0))
  images = jnp.asarray(digits.images[:4])
  jaxpr = str(jax.make_jaxpr(lambda p: task.apply(p, images))(params))
  assert 'bf16' in jaxpr and 'dot_general' in jaxpr
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  tiny_config.model.dtype = 'float32'
  reference = _task(tiny_config).apply(params, images)
  logits = task.apply(params, images)
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, reference, atol=0.05 * float(jnp.abs(reference).max()) + 1e-3)
  # Training in bf16 (float32 params, a falling loss): tests/test_experiment.py's beit-bfloat16 run.
