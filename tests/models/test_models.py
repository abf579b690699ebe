"""Our BERT layers and BEiT compute what transformers 5's PyTorch models compute with the same checkpoint: against
the outputs stored in tests/golden/reference/ (tests/make_reference.py), and live where torch is installed; with the
CPU forms of the maths on and off, and with GPU/TPU's attention (`jax.nn.dot_product_attention`)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax.models import bert as bert_lib
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import checkpoints
from cmtl_jax.models import layers
from cmtl_jax.models.configs import BeitConfig, BertConfig
from tests import make_reference

TOLERANCE = 1e-5
BEIT_CASES = [name for name, case in make_reference.CASES.items() if case['kind'] == 'beit']
MATHS = {'cpu_forms': layers.Maths(), 'plain': layers.Maths(False, False, False)}


def _torch_available() -> bool:
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return int(transformers.__version__.split('.')[0]) >= 5


needs_torch = pytest.mark.skipif(not _torch_available(), reason='live comparison needs torch and transformers >= 5')


@pytest.fixture(params=['cpu_forms', 'plain', 'fused_attention'])
def maths(request, monkeypatch):
  """Each way our layers compute: the CPU forms, the plain forms, and the GPU/TPU attention (forced here)."""
  if request.param == 'fused_attention':
    monkeypatch.setattr(layers, 'fused_platform', lambda: True)
    return layers.Maths()
  return MATHS[request.param]


def _stored(name):
  directory = os.path.join(make_reference.REFERENCE, name)
  return directory, dict(np.load(os.path.join(directory, 'reference.npz')))


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _ours_bert(directory, embedded, maths):
  config = checkpoints.read_config(directory, BertConfig, 'BERT')
  params, _ = checkpoints.load_params(directory, config)
  return bert_lib.BertEncoder(config, maths).apply({'params': params['encoder']}, jnp.asarray(embedded))


def _ours_beit(directory, pixels, maths):
  config = checkpoints.read_config(directory, BeitConfig, 'BEiT')
  params, report = checkpoints.load_params(directory, config, image_size=pixels.shape[1])
  config = config.replace(image_size=pixels.shape[1])
  return beit_lib.BeitModel(config, maths).apply({'params': params}, jnp.asarray(pixels)), report


def test_bert_layers_equal_the_stored_transformers_outputs(maths):
  directory, ref = _stored('bert_tiny')
  assert _max_diff(_ours_bert(directory, ref['embedded'], maths), ref['last_hidden_state']) <= TOLERANCE


def test_packaged_minilm_equals_the_stored_transformers_outputs(maths):
  _, ref = _stored('minilm')
  ours = _ours_bert(checkpoints.packaged_bert_path(), ref['embedded'], maths)
  assert ours.shape == (2, 7, 384)
  assert _max_diff(ours, ref['last_hidden_state']) <= TOLERANCE


@pytest.mark.parametrize('name', BEIT_CASES)
def test_beit_equals_the_stored_transformers_outputs(name, maths):
  directory, ref = _stored(name)
  (tokens, pooled), _ = _ours_beit(directory, ref['inputs'], maths)
  assert tokens.shape == ref['last_hidden_state'].shape
  assert _max_diff(tokens, ref['last_hidden_state']) <= TOLERANCE
  assert _max_diff(pooled, ref['pooled']) <= TOLERANCE


def test_a_wrong_layer_is_caught(monkeypatch):
  """Planted fault: the relative position index's CLS rows swapped; the BEiT with biases must then disagree."""
  directory, ref = _stored('beit_shared_3ch')
  true_index = layers.relative_position_index

  def swapped(window):
    index = true_index(window).copy()
    index[0, 1:], index[1:, 0] = index[1:, 0].copy(), index[0, 1:].copy()
    return index

  monkeypatch.setattr(layers, 'relative_position_index', swapped)
  (tokens, _), _ = _ours_beit(directory, ref['inputs'], layers.Maths())
  assert _max_diff(tokens, ref['last_hidden_state']) > 10 * TOLERANCE


@needs_torch
@pytest.mark.parametrize('name', ['bert_tiny'] + BEIT_CASES)
def test_live_transformers_equal_ours_and_the_stored_outputs(name, tmp_path):
  """transformers run now: the same model as the stored checkpoint (their outputs are those stored), and ours
  equals it."""
  case = make_reference.CASES[name]
  torch_model = make_reference.build_case(name, str(tmp_path))
  directory, ref = _stored(name)
  live = make_reference.reference_outputs(torch_model, case['kind'], ref['inputs'])
  for key, value in live.items():
    assert _max_diff(value, ref[key]) <= TOLERANCE, key
  if case['kind'] == 'bert':
    assert _max_diff(_ours_bert(str(tmp_path), live['embedded'], layers.Maths()), live['last_hidden_state']) <= TOLERANCE
  else:
    (tokens, pooled), _ = _ours_beit(str(tmp_path), ref['inputs'], layers.Maths())
    assert _max_diff(tokens, live['last_hidden_state']) <= TOLERANCE
    assert _max_diff(pooled, live['pooled']) <= TOLERANCE


@needs_torch
def test_live_minilm_equals_ours():
  ids, live = make_reference.minilm_reference()
  _, ref = _stored('minilm')
  np.testing.assert_array_equal(ids, ref['inputs'])
  ours = _ours_bert(checkpoints.packaged_bert_path(), live['embedded'], layers.Maths())
  assert _max_diff(ours, live['last_hidden_state']) <= TOLERANCE


def test_the_224_px_checkpoint_at_112_px_reports_its_resize():
  directory, ref = _stored('beit_224_at_112')
  _, report = _ours_beit(directory, ref['inputs'], layers.Maths())
  assert len(report.resized) == 3  # Absolute positions, the shared table, layer 0's table.
  assert any('embeddings.position_embeddings [1, 197, 16] -> [1, 50, 16]' in r for r in report.resized)
  assert any('[732, 2] -> [172, 2]' in r for r in report.resized)


def test_gradients_of_the_cpu_forms_equal_the_plain_ones():
  """Train mode (dropout, attention dropout and drop path on, the same keys): loss and gradients of our BEiT with
  every CPU form equal the plain forms' to rounding."""
  config = BeitConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=48, hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.2, drop_path_rate=0.2, use_relative_position_bias=True,
                      use_shared_relative_position_bias=True, use_absolute_position_embeddings=True)
  pixels = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  params = beit_lib.BeitModel(config).init(jax.random.key(0), pixels)['params']
  params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(2), x.shape), params)

  def loss_and_grads(maths):
    def loss(p):
      tokens, pooled = beit_lib.BeitModel(config, maths).apply(
          {'params': p}, pixels, deterministic=False, rngs={'dropout': jax.random.key(3),
                                                            'droppath': jax.random.key(4)})
      return jnp.sum(jnp.sin(tokens)) + jnp.sum(pooled ** 2)
    return jax.jit(jax.value_and_grad(loss))(params)

  fast, plain = loss_and_grads(layers.Maths()), loss_and_grads(MATHS['plain'])
  diffs = jax.tree.leaves(jax.tree.map(_max_diff, fast, plain))
  assert max(diffs) < 1e-4
  table = fast[1]['encoder']['relative_position_bias']['relative_position_bias_table']
  assert float(jnp.max(jnp.abs(table))) > 0  # The shared bias gets its gradient.
