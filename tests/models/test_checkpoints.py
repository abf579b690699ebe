"""Checkpoints: every format loads to the same tree; damaged or mismatched checkpoints give one clear error; casts
and resizes are applied and reported; hub ids go through `snapshot_download`; the resize formulas by hand."""

import json
import os
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization
from safetensors import flax as safetensors_flax
from safetensors import numpy as safetensors_numpy

from cmtl_jax import config as config_lib
from cmtl_jax import resolve
from cmtl_jax.models import build as model_lib
from cmtl_jax.errors import ConfigError, MissingPathError
from cmtl_jax.models import checkpoints
from cmtl_jax.models import resize
from cmtl_jax.models.configs import BeitConfig, BertConfig
from tests.helpers import TINY_BEIT
from tests import make_reference
from tests.helpers import max_abs_diff

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BERT_DIR = os.path.join(make_reference.REFERENCE, 'bert_tiny')
BEIT_DIR = os.path.join(make_reference.REFERENCE, 'beit_absolute_1ch')  # 8 px, patch 4, 1 channel.


def _copy(source, tmp_path, name='ckpt') -> str:
  directory = str(tmp_path / name)
  shutil.copytree(source, directory, ignore=shutil.ignore_patterns('reference.npz'))
  return directory


def _tensors(directory) -> dict:
  with open(os.path.join(directory, 'model.safetensors'), 'rb') as f:
    return dict(safetensors_numpy.load(f.read()))


def _load(directory, config_cls=BertConfig):
  return checkpoints.load_params(directory, checkpoints.read_config(directory, config_cls, 'x'))


def test_the_name_map_covers_every_tensor_the_model_has():
  params, report = _load(BERT_DIR)
  assert len(report.loaded) == len(jax.tree.leaves(params)) == 2 + 2 * 16 and not report.fresh
  # What BERT's encoder does not use: word / position / token-type embeddings and the pooler.
  assert sorted(report.unused) == ['embeddings.position_embeddings.weight', 'embeddings.token_type_embeddings.weight',
                                   'embeddings.word_embeddings.weight', 'pooler.dense.bias', 'pooler.dense.weight']
  kernel = params['encoder']['layer']['1']['attention']['self']['query']['kernel']
  np.testing.assert_array_equal(kernel, _tensors(BERT_DIR)['encoder.layer.1.attention.self.query.weight'].T)
  beit, _ = _load(BEIT_DIR, BeitConfig)
  conv = _tensors(BEIT_DIR)['embeddings.patch_embeddings.projection.weight']  # [D, C, p, p]
  np.testing.assert_array_equal(beit['embeddings']['patch_embeddings']['projection']['kernel'],
                                conv.transpose(2, 3, 1, 0))


def test_flax_msgpack_and_sharded_safetensors_load_to_the_same_tree(tmp_path):
  reference, _ = _load(BERT_DIR)
  tensors = _tensors(BERT_DIR)
  # Sharded: three files and the index transformers writes beside them.
  sharded = _copy(BERT_DIR, tmp_path, 'sharded')
  os.remove(os.path.join(sharded, 'model.safetensors'))
  names = sorted(tensors)
  weight_map = {}
  for i, part in enumerate(np.array_split(np.array(names), 3)):
    shard = f'model-{i + 1:05d}-of-00003.safetensors'
    safetensors_numpy.save_file({n: tensors[n] for n in part}, os.path.join(sharded, shard))
    weight_map.update({n: shard for n in part})
  with open(os.path.join(sharded, checkpoints.SAFETENSORS_INDEX), 'w') as f:
    json.dump({'metadata': {}, 'weight_map': weight_map}, f)
  # Flax: transformers' FlaxBertModel layout (with the tensors our encoder does not use), msgpack'd.
  flax_dir = _copy(BERT_DIR, tmp_path, 'flax')
  os.remove(os.path.join(flax_dir, 'model.safetensors'))
  tree = jax.tree.map(np.asarray, reference)
  tree['embeddings']['word_embeddings'] = {'embedding': tensors['embeddings.word_embeddings.weight']}
  tree['pooler'] = {'dense': {'kernel': tensors['pooler.dense.weight'].T, 'bias': tensors['pooler.dense.bias']}}
  with open(os.path.join(flax_dir, checkpoints.FLAX_MSGPACK), 'wb') as f:
    f.write(serialization.msgpack_serialize(tree))
  for directory in (sharded, flax_dir):
    loaded, report = _load(directory)
    assert jax.tree.structure(loaded) == jax.tree.structure(reference)
    assert max_abs_diff(loaded, reference) == 0.0
  assert len(_load(sharded)[1].files) == 3


def test_pytorch_bin_loads_with_torch_and_is_refused_without(tmp_path, monkeypatch):
  directory = _copy(BERT_DIR, tmp_path)
  os.remove(os.path.join(directory, 'model.safetensors'))
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
  if torch is not None:
    torch.save({k: torch.from_numpy(v.copy()) for k, v in _tensors(BERT_DIR).items()},
               os.path.join(directory, checkpoints.TORCH_BIN))
    assert max_abs_diff(_load(directory)[0], _load(BERT_DIR)[0]) == 0.0
  else:
    open(os.path.join(directory, checkpoints.TORCH_BIN), 'wb').close()
  monkeypatch.setitem(sys.modules, 'torch', None)  # As on a machine without torch.
  with pytest.raises(ConfigError, match='PyTorch pickle, readable only with torch installed: install torch, or '
                                        'convert it to safetensors'):
    _load(directory)


def test_a_bfloat16_checkpoint_is_cast_to_float32_and_reported(tmp_path):
  directory = _copy(BERT_DIR, tmp_path)
  tensors = _tensors(BERT_DIR)
  safetensors_flax.save_file({k: jnp.asarray(v, jnp.bfloat16) for k, v in tensors.items()},
                             os.path.join(directory, 'model.safetensors'))
  bert = checkpoints.load_bert(directory)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bert.params))
  want = np.asarray(jnp.asarray(tensors['encoder.layer.0.output.dense.weight'], jnp.bfloat16).astype(jnp.float32))
  np.testing.assert_array_equal(bert.params['encoder']['layer']['0']['output']['dense']['kernel'], want.T)
  used = len(bert.report.loaded)  # The unused tensors (word embeddings, pooler) are not kept, hence not cast.
  assert used == 34 and bert.report.cast == {'bfloat16': used}
  assert f'{used} bfloat16 tensors cast to float32' in bert.describe()['notes']
  # A Flax checkpoint in bfloat16, with a tensor the encoder does not use: only the kept tensors are cast.
  os.remove(os.path.join(directory, 'model.safetensors'))
  tree = jax.tree.map(lambda x: np.asarray(x.astype(jnp.bfloat16)), bert.params)
  tree['pooler'] = {'dense': {'kernel': np.zeros((32, 32), jnp.bfloat16)}}
  with open(os.path.join(directory, checkpoints.FLAX_MSGPACK), 'wb') as f:
    f.write(serialization.msgpack_serialize(tree))
  flax_bert = checkpoints.load_bert(directory)
  assert flax_bert.report.cast == {'bfloat16': used} and flax_bert.report.unused == ['pooler.dense.kernel']
  assert max_abs_diff(flax_bert.params, bert.params) == 0.0


def test_a_config_that_does_not_match_its_weights_names_the_file_and_tensors(tmp_path):
  directory = _copy(BERT_DIR, tmp_path)
  config_file = os.path.join(directory, 'config.json')
  with open(config_file) as f:
    config = json.load(f)
  with open(config_file, 'w') as f:
    json.dump({**config, 'hidden_size': 64}, f)
  with pytest.raises(ConfigError) as error:
    checkpoints.load_bert(directory)
  message = str(error.value)
  assert os.path.join(directory, 'model.safetensors') in message and '\n' not in message
  assert 'mismatched: embeddings.LayerNorm.bias is [32], the config asks for [64]' in message
  assert 'encoder.layer.1.output.dense.weight' in message  # Every mismatched tensor is named.


def test_a_truncated_weights_file_names_the_first_cut_tensor(tmp_path):
  directory = _copy(BERT_DIR, tmp_path)
  path = os.path.join(directory, 'model.safetensors')
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(ConfigError, match=rf"cannot read {path}: it is truncated: tensor '[\w.]+' ends at byte"):
    checkpoints.load_bert(directory)


def _without(source, name, tmp_path) -> str:
  """A copy of the checkpoint `source` without its tensor `name`."""
  directory = _copy(source, tmp_path)
  tensors = _tensors(source)
  del tensors[name]
  safetensors_numpy.save_file(tensors, os.path.join(directory, 'model.safetensors'))
  return directory


def test_a_missing_tensor_is_named(tmp_path):
  directory = _without(BERT_DIR, 'encoder.layer.1.attention.output.dense.weight', tmp_path)
  with pytest.raises(ConfigError, match=r'1 missing: encoder\.layer\.1\.attention\.output\.dense\.kernel'):
    checkpoints.load_bert(directory)


def test_a_missing_optional_tensor_starts_fresh_and_is_reported(tmp_path):
  beit = checkpoints.load_beit(_without(BEIT_DIR, 'pooler.layernorm.weight', tmp_path))
  assert beit.report.fresh == ['pooler.layernorm.scale']
  assert 'not in the checkpoint, started fresh: pooler.layernorm.scale' in beit.describe()['notes']


def test_a_bert_directory_given_as_beit_path_is_refused():
  with pytest.raises(ConfigError, match="holds a 'bert' model, not 'beit': check which path goes to bert_path"):
    checkpoints.load_beit(BERT_DIR)
  with pytest.raises(MissingPathError, match='does not exist'):
    checkpoints.load_beit('/no/such/beit')


def test_too_many_bert_layers_is_refused():
  with pytest.raises(ConfigError, match='model.bert_layers=7 but the BERT at .* has only 6 layers'):
    checkpoints.bert_config('', 7)


def test_hub_ids_download_only_config_and_one_weights_format(tmp_path, monkeypatch):
  """`snapshot_download` mocked: config.json alone first (resolving the run reads no weights), then safetensors; a
  repo with only Flax weights is asked again."""
  flax_only = _copy(BERT_DIR, tmp_path)
  os.remove(os.path.join(flax_only, 'model.safetensors'))
  with open(os.path.join(flax_only, checkpoints.FLAX_MSGPACK), 'wb') as f:
    f.write(serialization.msgpack_serialize(jax.tree.map(np.asarray, _load(BERT_DIR)[0])))
  calls = []

  def fake_download(repo_id, allow_patterns):
    calls.append((repo_id, allow_patterns))
    if repo_id == 'someone/flax-only':
      directory = str(tmp_path / f'snapshot{len(calls)}')
      os.makedirs(directory)
      shutil.copy(os.path.join(flax_only, 'config.json'), directory)
      if checkpoints.FLAX_MSGPACK in allow_patterns:
        shutil.copy(os.path.join(flax_only, checkpoints.FLAX_MSGPACK), directory)
      return directory
    if repo_id == 'someone/tiny-bert':
      return BERT_DIR
    raise OSError('404 Client Error: Repository Not Found')

  import huggingface_hub  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(huggingface_hub, 'snapshot_download', fake_download)
  bert = checkpoints.load_bert('someone/tiny-bert')
  assert bert.source == 'hub:someone/tiny-bert' and bert.pretrained
  assert calls == [('someone/tiny-bert', ['config.json']),
                   ('someone/tiny-bert', ['config.json', 'model.safetensors', 'model.safetensors.index.json',
                                          'model-*-of-*.safetensors'])]
  calls.clear()
  assert max_abs_diff(checkpoints.load_bert('someone/flax-only').params, bert.params) == 0.0
  assert [patterns for _, patterns in calls][1:] == [calls[1][1], ['config.json', 'flax_model.msgpack']]
  calls.clear()
  architecture = checkpoints.load_bert('someone/tiny-bert', pretrained=False)
  assert calls == [('someone/tiny-bert', ['config.json'])] and architecture.params is None
  with pytest.raises(ConfigError, match="could not download BERT 'someone/missing' from the Hugging Face hub"):
    checkpoints.load_bert('someone/missing')


def _beit_run(**beit):
  c = config_lib.base_config()
  c.model.beit_path = BEIT_DIR
  c.model.beit.update(beit)
  return resolve.resolve(c)


def test_beit_keys_a_checkpoint_fixes_are_refused_and_image_size_is_applied():
  with pytest.raises(ConfigError, match=r"model.beit.hidden_size=64 but the checkpoint at '.*' has hidden_size=32, "
                                        r'which its weights fix'):
    _beit_run(hidden_size=64)
  with pytest.raises(ConfigError, match='model.beit.use_relative_position_bias=True but the checkpoint'):
    _beit_run(use_relative_position_bias=True)
  # Unset fields take the checkpoint's values; image_size resizes; drop path is a training setting.
  run = _beit_run(image_size=32, drop_path_rate=0.3)
  model, params, _, sources = model_lib.build_model(run.model, 10, jax.random.key(0))
  assert (model.beit_config.image_size, model.beit_config.hidden_size) == (32, 32)
  assert model.beit_config.drop_path_rate == 0.3
  assert params['beit_embeddings']['position_embeddings'].shape == (1, 1 + 8 * 8, 32)
  assert any('resized embeddings.position_embeddings [1, 5, 32] -> [1, 65, 32] (8 px -> 32 px)' in note
             for note in sources['beit']['notes'])
  assert model.apply({'params': params}, jnp.zeros((2, 32, 32, 1))).shape == (2, 10)
  with pytest.raises(ConfigError, match="image_size 30 is not a multiple of the checkpoint's patch_size 4"):
    _beit_run(image_size=30)


def test_a_224_px_checkpoint_runs_at_112_px_in_the_hybrid():
  c = config_lib.base_config()
  c.model.beit_path = os.path.join(make_reference.REFERENCE, 'beit_224_at_112')
  c.model.beit.image_size, c.model.bert_layers = 112, 1
  model, params, pretrained, _ = model_lib.build_model(resolve.resolve(c).model, 10, jax.random.key(0))
  assert model.beit_config.image_size == 112 and model.beit_config.num_channels == 3
  assert all(jax.tree.leaves(pretrained['beit_encoder']))
  assert params['beit_encoder']['relative_position_bias']['relative_position_bias_table'].shape == (13 * 13 + 3, 2)
  logits = model.apply({'params': params}, jnp.ones((1, 112, 112, 3)))
  assert logits.shape == (1, 10) and bool(jnp.all(jnp.isfinite(logits)))


def test_bicubic_resize_by_hand():
  """[0, 1] upsampled 2 -> 4 (align_corners False, taps clamped at the edges, a = -0.75): output 0 sits at input
  x = -0.25, taps -2..1 at distances 1.75, 0.75, 0.25, 1.25, and only tap 1 holds 1, so it is
  W(1.25) = ((a t - 5a) t + 8a) t - 4a = -0.10546875; output 1 (x = 0.25) is W(0.75) + W(1.75) = 0.26171875 -
  0.03515625 = 0.2265625; outputs 2 and 3 mirror them."""
  want = np.array([-0.10546875, 0.2265625, 0.7734375, 1.10546875])
  grid = np.array([[0.0, 1.0], [0.0, 1.0]])[..., None]
  out = resize.resize_grid(grid, 4, 'bicubic')[..., 0]
  np.testing.assert_allclose(out, np.stack([want] * 4), atol=1e-7)
  table = np.concatenate([np.zeros((1, 1)), grid.reshape(4, 1)])[None].repeat(3, axis=2)  # [1, 1 + 2*2, 3].
  resized = resize.resize_position_embeddings(table, 4)
  assert resized.shape == (1, 17, 3) and resized[0, 0, 0] == 0  # The CLS entry kept.
  np.testing.assert_allclose(resized[0, 1:5, 1], want, atol=1e-7)


def test_bilinear_relative_table_resize_by_hand():
  """Window 3 -> 2: the 5 x 5 offset grid T[i, j] = 10 i + j resampled to 3 x 3 samples it at x = (k + 0.5) 5/3
  - 0.5 = 1/3, 2, 11/3, where bilinear interpolation of a linear function is exact: 10 x_a + x_b. The three CLS
  rows stay."""
  i, j = np.meshgrid(np.arange(5), np.arange(5), indexing='ij')
  cls_rows = np.array([[7.0], [8.0], [9.0]])
  table = np.concatenate([(10.0 * i + j).reshape(25, 1), cls_rows])
  x = np.array([1 / 3, 2.0, 11 / 3])
  want = (10 * x[:, None] + x[None, :]).reshape(9, 1)
  np.testing.assert_allclose(resize.resize_relative_position_table(table, 2), np.concatenate([want, cls_rows]),
                             atol=1e-5)


def test_resize_equals_torch_interpolate():
  torch = pytest.importorskip('torch')
  grid = np.random.default_rng(0).normal(size=(5, 5, 3)).astype(np.float32)
  source = torch.from_numpy(grid).permute(2, 0, 1)[None]
  for mode, size in (('bicubic', 3), ('bicubic', 8), ('bilinear', 3), ('bilinear', 9)):
    want = torch.nn.functional.interpolate(source, size=(size, size), mode=mode, align_corners=False)
    np.testing.assert_allclose(resize.resize_grid(grid, size, mode), want[0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_a_classifier_saved_with_transformers_flax_modules_still_loads():
  """tests/golden/classifier_af7b197: a tiny hybrid (BEiT with per-layer and shared relative position bias, a
  24-wide BERT layer) saved by cmtl_jax at af7b197, built from transformers 4.57's Flax modules, with its
  transformers config dicts, and the logits it computed then. Our modules give the same logits to float32 rounding
  (bit for bit on the CPU kind that wrote them; another kind rounds by ~2e-7), and the same predictions."""
  from cmtl_jax import classifier  # pylint: disable=g-import-not-at-top
  from cmtl_jax import data  # pylint: disable=g-import-not-at-top
  directory = os.path.join(REPO, 'tests', 'golden', 'classifier_af7b197')
  saved = classifier.Classifier.load(directory)
  assert saved.model.beit_config.use_shared_relative_position_bias and saved.model.bert_config.hidden_size == 24
  images = np.load(os.path.join(directory, 'images.npy'))
  logits = saved.model.apply({'params': saved.params}, data.preprocess(jnp.asarray(images), 8, 1))
  np.testing.assert_allclose(np.asarray(logits), np.load(os.path.join(directory, 'logits.npy')), atol=1e-5)
  assert saved.predict(images).tolist() == np.argmax(np.asarray(logits), -1).tolist()  # Predict is those logits'.


def test_every_beit_parameter_has_a_hugging_face_name_that_reads_back():
  config = BeitConfig.from_dict({**TINY_BEIT, 'patch_size': 2, 'use_mask_token': True, 'use_relative_position_bias': True,
                                 'use_shared_relative_position_bias': True, 'use_mean_pooling': False})
  for path in checkpoints.expected_shapes(config):
    name, permutation = checkpoints.hf_beit_name(path)
    assert checkpoints.map_name(name, 'beit')[0] == path
  assert checkpoints.hf_beit_name('embeddings.patch_embeddings.projection.kernel') == (
      'embeddings.patch_embeddings.projection.weight', (3, 2, 0, 1))


@pytest.mark.parametrize('reference', ['beit_absolute_1ch', 'beit_relative_3ch', 'beit_shared_3ch'])
def test_the_export_writes_the_names_and_tensors_transformers_wrote(reference, tmp_path):
  """Without torch: checkpoints that transformers' `BeitModel.save_pretrained` wrote (tests/make_reference.py), read
  and written back by `save_beit`, hold the same tensor names and values."""
  directory = os.path.join(make_reference.REFERENCE, reference)
  checkpoint = checkpoints.load_beit(directory)
  checkpoints.save_beit(str(tmp_path), checkpoint.config, checkpoint.params)
  theirs = safetensors_numpy.load_file(os.path.join(directory, 'model.safetensors'))
  ours = safetensors_numpy.load_file(str(tmp_path / 'model.safetensors'))
  assert sorted(ours) == sorted(theirs)
  for name, tensor in theirs.items():
    np.testing.assert_array_equal(ours[name], tensor, err_msg=name)
