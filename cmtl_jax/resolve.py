"""Config -> the frozen description of a run, decided once, before any data is read or anything compiles.

`resolve(config, purpose)` validates the config, reads the checkpoints' `config.json` (no weights) and returns a
`Run`: the BEiT and BERT configs the model will have, the size and channels a folder is decoded to, and the training,
search, ablation or pretraining settings the purpose uses. Data loading, model building, the train step, the
program cache, the reference rows, the reports and `metrics.json` read the `Run`, never the raw keys.

A key given explicitly is honoured or refused with one line: `model.beit.*` fields are unset (None) unless asked for,
so a value equal to a default is as much a request as any other. `Run.reads` lists the config keys the purpose read;
an entry point refuses command-line overrides of any other key (`unread_overrides`).
"""

import copy
import dataclasses
from typing import Optional

import ml_collections

from cmtl_jax import config as config_lib
from cmtl_jax.augment import randaugment
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import checkpoints
from cmtl_jax.models.configs import BEIT_TRAINING_KEYS, BeitConfig, BertConfig

PURPOSES = ('train', 'search', 'ablation', 'pretrain')


class _Spec:
  """`replace` and `to_dict` for the frozen specs below."""

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata.get('record', True)}

  def fingerprint(self) -> dict:
    """`to_dict` without what a resumed run may change: how models are laid out on devices."""
    return {k: v for k, v in self.to_dict().items() if k != 'devices'}


def _plain(value):
  if hasattr(value, 'to_dict'):
    return value.to_dict()
  if isinstance(value, tuple):
    return [_plain(v) for v in value]
  return value


@dataclasses.dataclass(frozen=True)
class DataSpec(_Spec):
  """`config.data` with a folder's decode size and channels resolved (`image_size`, `channels`: the BEiT's input
  where the config says 0). For other datasets the images keep their own shape; the model resizes them."""
  dataset: str
  data_dir: str
  manual_dir: str
  image_key: str
  label_key: str
  test_fraction: float
  val_fraction: float
  split_seed: int
  train_per_class: int
  gray_to_rgb: bool
  memory_fraction: float
  image_size: int
  channels: int
  resize: str
  on_bad_image: str
  prepared_dir: str


@dataclasses.dataclass(frozen=True)
class ModelSpec(_Spec):
  """The classifier: `beit` is the BEiT it runs (the checkpoint's config with the fields asked for, or a fresh one),
  `bert` the BERT layers it keeps (None for the BEiT-only variant). Hashable: a model cache keys on it."""
  variant: str
  beit: BeitConfig
  bert: Optional[BertConfig]
  beit_path: str
  beit_pretrained: bool
  bert_path: str
  bert_layers: int
  bert_pretrained: bool
  freeze_bert: bool
  pooling: str
  bridge_norm: bool
  dtype: str


@dataclasses.dataclass(frozen=True)
class OptimSpec(_Spec):
  """`config.optim`, with `schedule_epochs` resolved (the epochs the warmup + decay schedule spans)."""
  optimizer: str
  learning_rate: float
  fresh_lr_multiplier: float
  momentum: float
  weight_decay: float
  grad_clip: float
  warmup_fraction: float
  decay: str
  batch_size: int
  num_epochs: int
  schedule_epochs: int
  eval_batch_size: int
  layer_decay: float
  ema_decay: float

  def program_key(self) -> 'OptimSpec':
    """What of the optimisation shapes a compiled program: everything but the peak learning rate (injected into
    each model's optimiser state as an array) and `num_epochs` (the host loop's bound; the schedule's length is
    `schedule_epochs`)."""
    return self.replace(learning_rate=0.0, num_epochs=0)


@dataclasses.dataclass(frozen=True)
class AugmentSpec(_Spec):
  """`config.augment`: the training-time augmentation `cmtl_jax.augment.make_augment` builds (timm's names)."""
  scale: tuple
  ratio: tuple
  hflip: float
  auto_augment: str
  reprob: float
  mixup: float
  cutmix: float
  mixup_prob: float
  mixup_switch_prob: float
  smoothing: float


@dataclasses.dataclass(frozen=True)
class SearchSpec(_Spec):
  """`config.search`; `grid` as `((dotted key, values), ...)` in sorted key order."""
  grid: tuple
  cv: int
  refit: str
  score_epoch: str
  kind: str
  halving_factor: int
  halving_min_epochs: int

  @property
  def param_grid(self) -> dict:
    """scikit-learn's `param_grid`: `{dotted key: [values]}`."""
    return {key: list(values) for key, values in self.grid}

  def to_dict(self) -> dict:
    return {**super().to_dict(), 'grid': self.param_grid}


@dataclasses.dataclass(frozen=True)
class AblationSpec(_Spec):
  arms: tuple
  inner_cv: int
  min_steps: int
  curve_sizes: tuple
  curve_arms: tuple


@dataclasses.dataclass(frozen=True)
class PretrainSpec(_Spec):
  mask_ratio: float
  min_block_patches: int
  vocab_size: int
  tokenizer_patches: int
  learning_rate: float
  weight_decay: float
  batch_size: int
  num_epochs: int
  warmup_fraction: float
  decay: str
  grad_clip: float
  scale: tuple
  ratio: tuple
  hflip: float


@dataclasses.dataclass(frozen=True)
class DevicesSpec(_Spec):
  num_devices: int
  vmap_width: int
  models_per_program: int


ONE_DEVICE = DevicesSpec(num_devices=1, vmap_width=1, models_per_program=1)  # How one model trains.


@dataclasses.dataclass(frozen=True)
class Run(_Spec):
  """Everything a run of one `purpose` uses; the groups it does not use are None. `reads`: the dotted config keys
  the purpose read (not part of the run's identity)."""
  purpose: str
  seed: int
  data: DataSpec
  model: ModelSpec
  devices: Optional[DevicesSpec] = None
  optim: Optional[OptimSpec] = None
  augment: Optional[AugmentSpec] = None
  search: Optional[SearchSpec] = None
  ablation: Optional[AblationSpec] = None
  pretrain: Optional[PretrainSpec] = None
  reads: frozenset = dataclasses.field(default=frozenset(), compare=False, metadata={'record': False})


# ---------------------------------------------------------------------------------------------------------------
# Reading the config: every key read is recorded.

class _Reader:
  """A config group seen through attribute access; every dotted key read (or every key beneath a group read
  whole, with `to_dict` / `items`) lands in `seen`."""

  def __init__(self, node: ml_collections.ConfigDict, prefix: str, seen: set):
    self._node, self._prefix, self._seen = node, prefix, seen

  def __getattr__(self, key):
    value = self._node[key]
    name = self._prefix + key
    if isinstance(value, ml_collections.ConfigDict):
      return _Reader(value, name + '.', self._seen)
    self._seen.add(name)
    return value

  def to_dict(self) -> dict:
    self._seen.update(self._prefix + k for k in config_lib.key_names(self._node))
    self._seen.add(self._prefix.rstrip('.'))
    return self._node.to_dict()

  def items(self):
    return self.to_dict().items()


def _fields(spec_cls, group: _Reader, **resolved):
  """`spec_cls` from the group's keys of the same names, `resolved` ones replaced."""
  return spec_cls(**{f.name: resolved[f.name] if f.name in resolved else getattr(group, f.name)
                     for f in dataclasses.fields(spec_cls)})


def _floats(values) -> tuple:
  return tuple(float(v) for v in values)


def _augment(group: _Reader) -> AugmentSpec:
  """The augmentation spec, ranges as tuples of floats; a RandAugment string that does not parse is refused."""
  spec = _fields(AugmentSpec, group, scale=_floats(group.scale), ratio=_floats(group.ratio))
  if spec.auto_augment:
    randaugment.parse(spec.auto_augment)
  return spec


def _flat_grid(grid: dict, prefix: str = '') -> tuple:
  """`search.grid` ({'optim': {'learning_rate': (...)}}) as sorted `((dotted key, tuple of values), ...)`."""
  flat = []
  for key, value in grid.items():
    if isinstance(value, dict):
      flat += _flat_grid(value, f'{prefix}{key}.')
    else:
      flat.append((prefix + key, tuple(value) if isinstance(value, (list, tuple)) else value))
  return tuple(sorted(flat))


# ---------------------------------------------------------------------------------------------------------------
# The model: the checkpoints' config.json files, no weights.

def beit_config(m: _Reader) -> BeitConfig:
  """The BEiT a model group describes. Without `beit_path`: `FRESH_BEIT` with every field asked for. With it: the
  checkpoint's config.json, `image_size` and the training keys (dropout, drop path) as asked; any other field asked
  for must equal the checkpoint's.

  Raises:
    ConfigError: a field the checkpoint fixes otherwise, an image size that is not a multiple of the patch size, a
      width the heads do not divide; anything `checkpoints.beit_config` refuses.
  """
  asked = {k: v for k, v in m.beit.items() if v is not None}
  path = m.beit_path
  if not path:
    config = BeitConfig.from_dict({**config_lib.FRESH_BEIT, **asked})
  else:
    checkpoint = checkpoints.beit_config(path)
    for key, value in asked.items():
      if key not in BEIT_TRAINING_KEYS and key != 'image_size' and getattr(checkpoint, key) != value:
        raise ConfigError(f'model.beit.{key}={value!r} but the checkpoint at {path!r} has {key}='
                          f'{getattr(checkpoint, key)!r}, which its weights fix: drop --config.model.beit.{key} '
                          f'(or set it to the checkpoint\'s value), or use another checkpoint.')
    config = checkpoint.replace(**asked)
  where = f"the checkpoint's " if path else ''
  if config.image_size % config.patch_size:
    raise ConfigError(f'model.beit.image_size {config.image_size} is not a multiple of {where}patch_size '
                      f'{config.patch_size}.')
  if config.hidden_size % config.num_attention_heads:
    raise ConfigError(f'model.beit.hidden_size {config.hidden_size} is not divisible by '
                      f'num_attention_heads {config.num_attention_heads}.')
  return config


def _model(m: _Reader) -> ModelSpec:
  bert = None
  if m.variant != 'beit':
    bert = checkpoints.bert_config(m.bert_path, m.bert_layers)
  return _fields(ModelSpec, m, beit=beit_config(m), bert=bert)


def _data(d: _Reader, beit: BeitConfig) -> DataSpec:
  return _fields(DataSpec, d, image_size=d.image_size or beit.image_size, channels=d.channels or beit.num_channels)


def _optim(o: _Reader) -> OptimSpec:
  return _fields(OptimSpec, o, schedule_epochs=o.schedule_epochs or o.num_epochs)


def _search(s: _Reader, purpose: str) -> SearchSpec:
  grid = _flat_grid(s.grid.to_dict())
  if purpose == 'ablation':  # The selection is an exhaustive search, every fit scored at its best epoch.
    return SearchSpec(grid=grid, cv=s.cv, refit=s.refit, score_epoch='best', kind='exhaustive', halving_factor=3,
                      halving_min_epochs=0)
  return _fields(SearchSpec, s, grid=grid)


def resolve(config: ml_collections.ConfigDict, purpose: str = 'train') -> Run:
  """The `Run` of `config` for one purpose: 'train' (one model), 'search' (a grid or halving search), 'ablation'
  (nested CV), 'pretrain' (masked image modelling, which reads only the data, the BEiT, `model.dtype`, `seed` and
  `pretrain`).

  Raises:
    ConfigError: any bad key or value (`config.validate`), or a checkpoint's config.json that does not fit.
  """
  if purpose not in PURPOSES:
    raise ValueError(f'unknown purpose {purpose!r}: one of {PURPOSES}')
  config_lib.validate(config)
  seen = set()
  c = _Reader(config, '', seen)
  if purpose == 'pretrain':
    if c.model.beit_path:
      raise ConfigError('pretraining starts a fresh BEiT from model.beit.*: drop --config.model.beit_path.')
    beit = beit_config(c.model).replace(use_mask_token=True)
    model = ModelSpec(variant='beit', beit=beit, bert=None, beit_path='', beit_pretrained=False, bert_path='',
                      bert_layers=0, bert_pretrained=False, freeze_bert=False, pooling='mean', bridge_norm=False,
                      dtype=c.model.dtype)
    pretrain = _fields(PretrainSpec, c.pretrain, scale=_floats(c.pretrain.scale), ratio=_floats(c.pretrain.ratio))
    return Run(purpose, c.seed, _data(c.data, beit), model, pretrain=pretrain, reads=frozenset(seen))
  model = _model(c.model)
  run = Run(purpose, c.seed, _data(c.data, model.beit), model, optim=_optim(c.optim),
            augment=_augment(c.augment))
  if purpose in ('search', 'ablation'):  # One model trains on one device; stacks of models are laid out.
    run = run.replace(search=_search(c.search, purpose), devices=_fields(DevicesSpec, c.devices))
  if purpose == 'ablation':
    a = c.ablation
    run = run.replace(ablation=AblationSpec(tuple(a.arms), a.inner_cv, a.min_steps, tuple(a.curve_sizes),
                                            tuple(a.curve_arms)))
  return run.replace(reads=frozenset(seen))


def with_keys(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """A copy of `config` with the dotted keys of `values` set (a grid cell, an ablation arm); floats stay floats.

  Raises:
    ConfigError: a key that is not a config key.
  """
  config = copy.deepcopy(config)
  for key, value in values.items():
    *parents, last = key.split('.')
    node = config
    for part in parents:
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise ConfigError(config_lib.unknown_key_message(key))
      node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or last not in node:
      raise ConfigError(config_lib.unknown_key_message(key))
    with node.unlocked():
      node[last] = float(value) if isinstance(node[last], float) and not isinstance(value, bool) else value
  return config


def unread_overrides(run: Run, overridden: list) -> Optional[str]:
  """The message for the first command-line override (dotted key) that `run`'s purpose does not read, or None."""
  for key in overridden:
    if key in run.reads or any(read.startswith(key + '.') for read in run.reads):
      continue
    leaf = key.split('.')[-1]
    namesakes = sorted(r for r in run.reads if r.split('.')[-1] == leaf)
    hint = f': did you mean --config.{namesakes[0]}?' if namesakes else ''
    return f'{_PURPOSE_NAMES[run.purpose]} does not read --config.{key}{hint}'
  return None


_PURPOSE_NAMES = {'train': 'training one model', 'search': 'the grid search', 'ablation': 'the ablation',
                  'pretrain': 'pretraining'}
