"""Masked image modelling's loss and model: only masked positions count, the mask token replaces masked patch
embeddings, and weight decay spares what BEiT spares."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax import config as config_lib
from cmtl_jax import optim
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models.configs import BeitConfig
from cmtl_jax.pretrain import mim
from tests.helpers import build
from tests.pretrain.conftest import PRETRAIN_BEIT


def test_the_loss_counts_only_masked_positions():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 16, 8)), jnp.float32)
  targets = rng.integers(0, 8, (2, 16))
  mask = np.zeros((2, 16), bool)
  mask[0, [1, 2, 5]] = mask[1, [0, 15]] = True
  loss, _ = mim.masked_token_loss(logits, jnp.asarray(targets), jnp.asarray(mask))
  planted = targets.copy()
  planted[1, 7] = (planted[1, 7] + 1) % 8  # An unmasked patch's target.
  assert float(mim.masked_token_loss(logits, jnp.asarray(planted), jnp.asarray(mask))[0]) == float(loss)
  planted[1, 15] = (planted[1, 15] + 1) % 8  # A masked one's.
  assert float(mim.masked_token_loss(logits, jnp.asarray(planted), jnp.asarray(mask))[0]) != float(loss)
  # The value: mean cross-entropy over the five masked positions.
  log_p = jax.nn.log_softmax(np.asarray(logits))
  want = -np.mean([log_p[b, n, targets[b, n]] for b, n in zip(*np.nonzero(mask))])
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)


def test_the_mask_token_replaces_masked_patch_embeddings():
  config = BeitConfig.from_dict({**PRETRAIN_BEIT, 'use_mask_token': True})
  module = beit_lib.BeitEmbeddings(config)
  pixels = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 1)), jnp.float32)
  mask = np.zeros((2, 16), bool)
  mask[0, 3] = mask[1, [0, 9]] = True
  params = module.init(jax.random.key(0), pixels)['params']
  params['mask_token'] = jnp.full_like(params['mask_token'], 7.0)
  params['position_embeddings'] = jnp.asarray(np.random.default_rng(1).normal(size=(1, 17, 32)), jnp.float32)
  plain = module.apply({'params': params}, pixels)
  masked = module.apply({'params': params}, pixels, bool_masked_pos=jnp.asarray(mask))
  kept = np.concatenate([np.ones((2, 1), bool), ~mask], axis=1)
  np.testing.assert_array_equal(np.asarray(masked)[kept], np.asarray(plain)[kept])
  want = 7.0 + np.asarray(params['position_embeddings'])[0, 1:][None].repeat(2, 0)[mask]
  np.testing.assert_allclose(np.asarray(masked)[:, 1:][mask], want, rtol=1e-6)
  with pytest.raises(ConfigError, match='use_mask_token'):
    beit_lib.BeitEmbeddings(config.replace(use_mask_token=False)).apply(
        {'params': {k: v for k, v in params.items() if k != 'mask_token'}}, pixels, bool_masked_pos=mask)


def test_weight_decay_spares_what_beit_spares_in_pretraining_and_fine_tuning():
  config = BeitConfig.from_dict({**PRETRAIN_BEIT, 'use_mask_token': True})
  model = mim.MaskedImageModel(config, vocab_size=8)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 16), bool)))
  decayed = {'.'.join(k.key for k in path) for path, d in
             jax.tree_util.tree_flatten_with_path(optim.decay_mask(params['params']))[0] if d}
  assert 'beit.embeddings.mask_token' in decayed and 'lm_head.kernel' in decayed
  assert 'beit.encoder.layer.0.attention.attention.query.kernel' in decayed
  spared = {'beit.embeddings.cls_token', 'beit.embeddings.position_embeddings', 'lm_head.bias',
            'beit.encoder.layer.0.lambda_1', 'layernorm.scale'}
  assert not spared & decayed
  # Fine-tuning applies the same rule to the classifier's tree.
  classify = config_lib.base_config()
  classify.model.beit.update(PRETRAIN_BEIT)
  classify.model.bert_layers = 1
  model = build(classify)[0]
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))['params']
  decayed = {'.'.join(k.key for k in path) for path, d in
             jax.tree_util.tree_flatten_with_path(optim.decay_mask(params))[0] if d}
  assert 'beit_encoder.layer.0.attention.attention.query.kernel' in decayed
  assert not {'beit_embeddings.position_embeddings', 'beit_embeddings.cls_token'} & decayed


def test_a_flip_of_every_image_trains_as_the_flipped_images_would():
  """The crop-and-flip augmentation runs inside the epoch on the images before they are tokenized and masked:
  flipping every image (hflip 1) is the plain epoch on flipped images (no dropout or drop path, so the step's other
  draws do not matter)."""
  from cmtl_jax import augment as augment_lib  # pylint: disable=g-import-not-at-top
  from cmtl_jax.train import core  # pylint: disable=g-import-not-at-top
  config = BeitConfig.from_dict({**PRETRAIN_BEIT, 'use_mask_token': True, 'drop_path_rate': 0.0})
  model = mim.MaskedImageModel(config, vocab_size=8)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (8, 8, 8, 1)), jnp.uint8)
  centroids = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  masks = jnp.asarray(rng.random((2, 4, 16)) < 0.4)
  own = (jnp.arange(8, dtype=jnp.int32).reshape(2, 4), masks)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 16), bool))['params']
  tx = optim.make_optimizer('adam', 1e-3, total_steps=2, warmup_fraction=0.0, decay='constant')
  key = jax.random.key_data(jax.random.key(1))
  run = lambda epoch, pictures: jax.jit(epoch)(core.init_state(params, tx), key, np.int32(1), (pictures, centroids),
                                               own)[1]['loss']
  flipped = run(mim.make_epoch(model, tx, steps=2, hflip=1.0), images)
  np.testing.assert_array_equal(flipped, run(mim.make_epoch(model, tx, steps=2), images[:, :, ::-1]))
  assert float(flipped) != float(run(mim.make_epoch(model, tx, steps=2), images))
  assert augment_lib.make_crop_flip((1.0, 1.0), (1.0, 1.0), 0.0) is None  # Off by default: the plain epoch.
