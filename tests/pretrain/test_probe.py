"""The linear probe: frozen features are the pooled output in order; the probe is scikit-learn's logistic regression
on them; a config's BEiT or a fresh one, and the checkpoint against its own architecture with random weights."""

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax import data
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import checkpoints
from cmtl_jax.pretrain import probe


def test_probe_features_are_the_pooled_output_in_order(finished_run):
  _, _, result = finished_run
  checkpoint = checkpoints.load_beit(result['beit_path'])
  images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 1)).astype(np.uint8)
  got = probe.features(checkpoint.config, checkpoint.params, images, batch_size=4)  # 4 + 3, the last padded.
  pixels = data.preprocess(jnp.asarray(images), 8, 1)
  want = beit_lib.BeitModel(checkpoint.config).apply({'params': checkpoint.params}, pixels)[1]
  np.testing.assert_allclose(got, np.asarray(want), atol=1e-6)


def test_the_linear_probe_scores_a_logistic_regression_on_frozen_features(finished_run, digits_small):
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  _, _, result = finished_run
  checkpoint = checkpoints.load_beit(result['beit_path'])
  scores = probe.linear_probe(checkpoint.config, checkpoint.params, digits_small)
  train = digits_small.pool
  x = probe.features(checkpoint.config, checkpoint.params, digits_small.images[train])
  by_hand = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=0))
  by_hand.fit(x, digits_small.labels[train])
  x_test = probe.features(checkpoint.config, checkpoint.params, digits_small.images[digits_small.test])
  assert scores['test_accuracy'] == by_hand.score(x_test, digits_small.labels[digits_small.test])
  assert scores['num_train'] == len(train) and scores['num_test'] == len(digits_small.test)


def test_probe_config_probes_the_checkpoint_or_a_fresh_beit(finished_run, digits_small):
  config, _, result = finished_run
  config = config.copy_and_resolve_references()
  config.model.beit_path = result['beit_path']
  scores = probe.probe_config(config, log=None)
  checkpoint = checkpoints.load_beit(result['beit_path'])
  assert scores == {**probe.linear_probe(checkpoint.config, checkpoint.params, digits_small),
                    'beit': f'local:{result["beit_path"]}'}
  config.model.beit_path = ''
  fresh = probe.probe_config(config, log=None)
  params = beit_lib.BeitModel(checkpoint.config.replace(use_mask_token=False)).init(
      jax.random.key(config.seed), jnp.zeros((1, 8, 8, 1)))['params']
  assert fresh == {**probe.linear_probe(checkpoint.config.replace(use_mask_token=False), params, digits_small),
                   'beit': 'fresh'}
  # The CLI's comparison: the checkpoint against its own architecture with random weights, and the margin.
  both = probe.compare_with_fresh(config, result['beit_path'], log=None)
  assert both['pretrained'] == scores
  params = beit_lib.BeitModel(checkpoint.config).init(jax.random.key(config.seed), jnp.zeros((1, 8, 8, 1)))['params']
  assert both['fresh'] == {**probe.linear_probe(checkpoint.config, params, digits_small),
                           'beit': f'fresh (architecture of local:{result["beit_path"]})'}
  assert both['test_accuracy_margin'] == scores['test_accuracy'] - both['fresh']['test_accuracy']
