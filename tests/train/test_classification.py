"""Classification on the core, with the real hybrid: training on one batch drives the loss down; scoring counts
only valid indices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax import optim
from cmtl_jax import resolve
from cmtl_jax.task import ClassifierTask
from cmtl_jax.train import classification
from cmtl_jax.train import core


def _task(config, variant='hybrid', num_classes=4):
  config.model.variant = variant
  return ClassifierTask(resolve.resolve(config).model, num_classes)


@pytest.mark.parametrize('variant,optimizer', [('hybrid', 'adam'), ('beit', 'sgdm')])
def test_steps_on_one_batch_drive_the_loss_down(tiny_config, variant, optimizer):
  task = _task(tiny_config, variant)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (8, 8, 8, 1)), jnp.uint8)
  labels = jnp.asarray(np.arange(8) % 4, jnp.int32)
  lr = 1e-3 if optimizer == 'adam' else 1e-2
  tx = optim.make_optimizer(optimizer, lr, total_steps=30, warmup_fraction=0.0, decay='constant', grad_clip=1.0,
                            lr_multipliers=optim.lr_multipliers(task.pretrained, 3.0))
  epoch = jax.jit(classification.make_train_epoch(task, tx, batch_size=8, steps=1))
  state = core.init_state(task.init(jax.random.key(0)), tx)
  raw = jax.random.key_data(jax.random.key(0))
  losses = []
  for i in range(30):
    state, metrics = epoch(state, raw, np.int32(i), images, labels, jnp.arange(8))
    losses.append(float(metrics['loss']))
  assert losses[-1] < 0.3 * losses[0], losses


def test_scores_count_only_valid_indices(tiny_config):
  task = _task(tiny_config)
  params = task.init(jax.random.key(0))
  images = jnp.zeros((5, 8, 8, 1), jnp.uint8)
  labels = jnp.array([0, 1, 2, 3, 0], jnp.int32)
  confusion = jax.jit(classification.make_confusion(task, batch_size=2))
  cm = confusion(params, images, labels, jnp.array([0, 1, 2, -1, -1], jnp.int32))
  assert float(cm.sum()) == 3.0
  np.testing.assert_array_equal(np.asarray(cm.sum(axis=1)), [1, 1, 1, 0])
  scores = classification.evaluate(task, params, images, labels, np.array([0, 1, 2]), batch_size=2)
  assert scores['accuracy'] == pytest.approx(float(np.trace(np.asarray(cm))) / 3)
  assert len(scores['per_class']['recall']) == 4
