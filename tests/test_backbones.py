"""Weights loaded through cmtl_jax compute what transformers computes with the same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from cmtl_jax import backbones
from cmtl_jax import model as model_lib
from cmtl_jax.errors import ConfigError, MissingPathError
from tests.conftest import TINY_BEIT, count_compilations


def _hybrid_with(bert, beit, num_classes=10):
  model = model_lib.build(beit.config, bert.config if bert else None, num_classes)
  params = model_lib.init_params(model, jax.random.key(0))
  params, pretrained = model_lib.load_pretrained(params, bert.params if bert else None, beit.params)
  return model, params, pretrained


@pytest.mark.parametrize('num_layers', [0, 2])
def test_minilm_encoder_matches_transformers(minilm, num_layers):
  reference = transformers.FlaxBertModel.from_pretrained(backbones.packaged_bert_path(), from_pt=True)
  bert = minilm
  if num_layers:
    bert = backbones.load_bert('', num_layers)
  model, params, _ = _hybrid_with(bert, backbones.load_beit('', TINY_BEIT))
  ids = jax.random.randint(jax.random.key(1), (3, 9), 1000, 5000)
  out = reference(ids, output_hidden_states=True)
  embedded = out.hidden_states[0]
  ours = model.apply({'params': params}, embedded, method=model_lib.HybridClassifier.encode_text_layers)
  want = out.hidden_states[num_layers or 6]
  assert ours.shape == want.shape
  assert float(jnp.max(jnp.abs(ours - want))) < 1e-5
  assert bert.source == f'packaged:{backbones.PACKAGED_BERT}'


def test_init_draws_only_fresh_subtrees_with_one_program_for_any_number_of_models(monkeypatch):
  bert = backbones.load_bert('', 1)
  model, loaded, pretrained = _hybrid_with(bert, backbones.load_beit('', TINY_BEIT))
  assert model_lib.checkpoint_subtrees(pretrained) == {'bert_encoder', 'adapter_norm'}
  rngs = jax.random.split(jax.random.key(3), 3)
  monkeypatch.setattr(model_lib, '_INIT_PROGRAMS', {})
  # First built under a trace, as `from_config` does: the cached program must not keep that trace's values.
  shapes = jax.eval_shape(lambda: model_lib.init_params(model, rngs[0], loaded, pretrained))
  names, stop = count_compilations(monkeypatch)
  try:
    three = model_lib.init_stacked(model, rngs, loaded, pretrained)
    two = model_lib.init_stacked(model, rngs[1:], loaded, pretrained)
  finally:
    stop()
  # One init program (without the checkpoint subtrees) for both stacks: a program over all M keys compiled again
  # for every M.
  assert sum(n == 'jit(init)' for n in names) == 1, names
  full_init = jax.jit(lambda rng: model.init(rng, jnp.zeros((1, 8, 8, 1)))['params'])  # Every subtree random.
  for i, rng in enumerate(rngs):
    reference = full_init(rng)
    # Model i alone, in the stack of three, and in the stack of two (which starts at key 1).
    models = [model_lib.init_params(model, rng, loaded, pretrained), jax.tree.map(lambda x: x[i], three)]
    models += [jax.tree.map(lambda x: x[i - 1], two)] if i else []
    for name in reference:
      want = loaded[name] if name in ('bert_encoder', 'adapter_norm') else reference[name]
      for got in models:
        jax.tree.map(np.testing.assert_array_equal, got[name], want)
  assert jax.tree.structure(three) == jax.tree.structure(reference) == jax.tree.structure(shapes)


def test_beit_save_pretrained_round_trip(tmp_path):
  config = transformers.BeitConfig(**TINY_BEIT)
  saved = transformers.FlaxBeitModel(config, seed=3)
  saved.save_pretrained(tmp_path)
  beit = backbones.load_beit(str(tmp_path))
  assert beit.pretrained and beit.source == f'local:{tmp_path}'
  # On the default device and not committed to one, as the packaged MiniLM's (safetensors) weights are.
  assert not any(leaf.committed for leaf in jax.tree.leaves(beit.params))
  model, params, pretrained = _hybrid_with(None, beit)
  assert all(jax.tree.leaves(pretrained['beit_encoder'])) and not any(jax.tree.leaves(pretrained['head']))
  pixels = jax.random.normal(jax.random.key(2), (2, 8, 8, 1))
  ours = model.apply({'params': params}, pixels, method=model_lib.HybridClassifier.encode_image)
  want = saved(jnp.transpose(pixels, (0, 3, 1, 2)), output_hidden_states=True).hidden_states[-1]
  # Identical weights; the patch projection runs as a matmul instead of a strided convolution (float32 rounding).
  np.testing.assert_allclose(np.asarray(ours), np.asarray(want), atol=1e-5)
  # The same hybrid built from the never-saved weights gives bit-identical outputs: saving and reloading lose nothing.
  in_memory = backbones.Backbone(config, saved.params, 'memory')
  model_b, params_b, _ = _hybrid_with(None, in_memory)
  np.testing.assert_array_equal(
      np.asarray(model_b.apply({'params': params_b}, pixels, method=model_lib.HybridClassifier.encode_image)),
      np.asarray(ours))
  assert jax.tree.map(np.shape, params['beit_embeddings']) == jax.tree.map(np.shape, saved.params['embeddings'])


def test_fresh_beit_is_reported_as_not_pretrained():
  beit = backbones.load_beit('', TINY_BEIT)
  assert not beit.pretrained and beit.describe() == {'pretrained': False, 'source': 'fresh'}


def test_beit_directory_given_as_bert_is_refused(tmp_path):
  transformers.FlaxBeitModel(transformers.BeitConfig(**TINY_BEIT)).save_pretrained(tmp_path)
  with pytest.raises(ConfigError, match="holds a 'beit' model, not 'bert'"):
    backbones.load_bert(str(tmp_path))


def test_missing_weights_path_is_refused():
  with pytest.raises(MissingPathError, match='does not exist'):
    backbones.load_beit('/no/such/beit')
  with pytest.raises(FileNotFoundError):
    backbones.load_bert('./no/such/bert')


def test_too_many_bert_layers_is_refused():
  with pytest.raises(ConfigError, match='has only 6 layers'):
    backbones.load_bert('', num_layers=7)


def test_load_pretrained_rejects_wrong_shapes(minilm):
  beit = backbones.load_beit('', TINY_BEIT)
  model = model_lib.build(beit.config, minilm.config, 10)
  params = model_lib.init_params(model, jax.random.key(0))
  broken = jax.tree.map(lambda x: x, minilm.params)
  broken['encoder']['layer']['0']['attention']['self']['query']['kernel'] = jnp.zeros((384, 12))
  with pytest.raises(ConfigError, match='do not fit'):
    model_lib.load_pretrained(params, broken, None)
