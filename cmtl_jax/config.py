"""Every config key with its default, in groups, and the checks of names, types and ranges run before anything.

The groups (as big_vision nests `config.input` / `config.model` / `config.schedule`):

  seed       the training seed (init, data order, dropout; folds of a search)
  data       which images, how a folder is decoded, the held-out test split
  model      the hybrid: BEiT (`model.beit.*`, a checkpoint's `beit_path`), BERT, pooling, compute dtype
  optim      the optimiser, its schedule, batch size and training length
  augment    what the training step does to a batch besides the model (label smoothing)
  search     grid search: the grid (`search.grid`, shaped like the config), folds, scoring, halving
  ablation   nested cross-validation: arms, inner folds, learning curve
  pretrain   BEiT masked image modelling (`experiments.pretrain`)
  devices    how stacked models are laid out: devices, vectorisation width, models per program

A config is only data: `resolve.resolve(config)` turns it, once, into the frozen description of a run (the BEiT
and BERT configs read from the checkpoints, the decode size), which everything downstream reads. Configs in
`experiments/configs/` start from `base_config()` and set what their experiment needs, so a key has one default in
one place.
"""

import difflib

import ml_collections
from ml_collections import config_dict

from cmtl_jax.errors import ConfigError
from cmtl_jax.models.configs import BeitConfig

VARIANTS = ('hybrid', 'beit')
OPTIMIZERS = ('sgdm', 'adam')
POOLINGS = ('mean', 'cls')
DECAYS = ('cosine', 'linear', 'constant')
DTYPES = ('float32', 'bfloat16')
SEARCH_KINDS = ('exhaustive', 'halving')
METRICS = ('accuracy', 'f1', 'precision', 'recall')  # The scorers (metrics.METRICS), refit choices.
SCORE_EPOCHS = ('last', 'best')
RESIZE_MODES = ('crop', 'pad')  # How folder images reach image_size (cmtl_jax/data/folder.py).
ON_BAD_IMAGE = ('error', 'skip')

# A fresh BEiT (no `model.beit_path`) has these `BeitConfig` fields where `model.beit.*` leaves them unset: a CPU-sized
# BEiT for 16 px grey images. With a checkpoint, unset fields are the checkpoint's.
FRESH_BEIT = dict(
    image_size=16, patch_size=4, num_channels=1, hidden_size=192, num_hidden_layers=2, num_attention_heads=3,
    intermediate_size=768, hidden_act='gelu', hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    initializer_range=0.02, layer_norm_eps=1e-12, use_mask_token=False, use_absolute_position_embeddings=True,
    use_relative_position_bias=False, use_shared_relative_position_bias=False, layer_scale_init_value=0.1,
    drop_path_rate=0.1, use_mean_pooling=True)


def _unset_beit() -> ml_collections.ConfigDict:
  """`model.beit`: every `BeitConfig` field as a typed placeholder (None = not asked for: the checkpoint's value,
  or `FRESH_BEIT`'s), so that an explicit value, even one equal to a default, is always honoured or refused."""
  fields = {name: config_dict.placeholder(field.type) for name, field in BeitConfig.__dataclass_fields__.items()
            if name != 'model_type'}
  return ml_collections.ConfigDict(fields)


def base_config() -> ml_collections.ConfigDict:
  """Every key the library reads, with its default."""
  c = ml_collections.ConfigDict()
  c.seed = 0                    # Init, data order and dropout of a run; the fold streams of a search.

  c.data = ml_collections.ConfigDict(dict(
      dataset='digits',         # 'digits', 'fashion_mnist', 'folder' (your images in data_dir), any TFDS dataset
                                # prepared as array_record, or 'synthetic' (random images of digits' shape).
      data_dir='',              # TFDS data dir ('' = ~/tensorflow_datasets); for 'folder' the image folder:
                                # PATH/<class>/<image>, or PATH/train/<class>/... + PATH/test/<class>/...
      manual_dir='',            # Where raw files live for builders that need them ('' = builder default).
      image_key='image',        # Feature names for TFDS datasets other than ours.
      label_key='label',
      test_fraction=0.2,        # Held-out test share for datasets without a test split.
      val_fraction=0.1,         # Validation share of the training split (single-model training, inner splits).
      split_seed=0,             # Fixes the test split independently of the training seed.
      train_per_class=0,        # Keep at most this many training images per class (0 = all).
      gray_to_rgb=False,        # Repeat a single image channel to match a 3-channel BEiT.
      memory_fraction=0.5,      # Largest share of the device's memory the staged images may take (checked first).
      image_size=0,             # Folders: images are stored image_size x image_size (0 = the model's BEiT's).
      channels=0,               # Folders: 1 (grey) or 3 (RGB); 0 = the model's BEiT's. Alpha on white.
      resize='crop',            # 'crop': shorter side to image_size, centre square; 'pad': longer side, black bars.
      on_bad_image='error',     # A file that does not decode: 'error' (one line) or 'skip' (listed in metrics.json).
      prepared_dir=''))         # Where folders are prepared as array_record ('' = ~/tensorflow_datasets).

  c.model = ml_collections.ConfigDict(dict(
      variant='hybrid',         # 'hybrid' (BEiT -> BERT layers) or 'beit' (BEiT alone, the ablation baseline).
      bert_path='',             # Hub id or local dir; '' = the packaged all-MiniLM-L6-v2.
      bert_layers=0,            # Keep the first k BERT encoder layers (0 = all).
      bert_pretrained=True,     # False: BERT's architecture with fresh random weights (the ablation's control).
      freeze_bert=False,        # Freeze BERT's attention and MLP weights (its LayerNorms still train).
      beit_path='',             # Hub id or local dir; '' = a fresh BEiT (FRESH_BEIT with model.beit.* applied).
      beit_pretrained=True,     # False: beit_path's architecture with fresh random weights (the ablation's control).
      beit=_unset_beit(),       # BeitConfig fields asked for (unset = the checkpoint's, or FRESH_BEIT's). With
                                # beit_path: image_size resizes the position parameters, dropout and drop path rates
                                # replace the checkpoint's, any other field must equal the checkpoint's.
      pooling='mean',           # 'mean' over all tokens or the 'cls' token.
      bridge_norm=True,         # LayerNorm between BEiT's output and BERT's first layer.
      dtype='float32'))         # Computation dtype: 'float32' or 'bfloat16' (params and optimiser stay float32).

  c.optim = ml_collections.ConfigDict(dict(
      optimizer='adam',         # 'sgdm' or 'adam' (AdamW when weight_decay > 0).
      learning_rate=1e-4,       # Peak LR of pretrained weights; fresh weights get fresh_lr_multiplier x this.
      fresh_lr_multiplier=10.0,
      momentum=0.9,             # SGDM only.
      weight_decay=0.0,
      grad_clip=1.0,            # Global-norm clip (0 = off).
      warmup_fraction=0.1,
      decay='cosine',           # After warmup: 'cosine' or 'linear' to 0, or 'constant'.
      batch_size=32,
      num_epochs=10,
      layer_decay=1.0,          # Layer-wise LR decay (BEiT): a layer's LR x layer_decay^(depth - its id); 1 = off.
      ema_decay=0.0,            # EMA of the weights (timm --model-ema-decay); 0 = off. On: the EMA is scored.
      schedule_epochs=0,        # Epochs the warmup + decay schedule spans (0 = num_epochs); training stops at
                                # num_epochs. Nested CV's final fits stop at the chosen epoch of this schedule.
      eval_batch_size=256))

  # The fine-tuning recipe's data side, on the device inside the training step, named as timm's train.py names it
  # (README, "The fine-tuning recipe"; `recipe.beit_finetune` gives BEiT's published values). All off by default.
  c.augment = ml_collections.ConfigDict(dict(
      scale=(1.0, 1.0),         # Random resized crop: area share range (timm 0.08-1); (1, 1) with ratio (1, 1) = off.
      ratio=(1.0, 1.0),         # Random resized crop: aspect-ratio range (timm 3/4-4/3).
      hflip=0.0,                # Left-right flip probability (timm 0.5; keep 0 where orientation carries the class).
      auto_augment='',          # RandAugment as timm writes it, e.g. 'rand-m9-mstd0.5' ('' = off).
      reprob=0.0,               # Random erasing probability (timm 0.25 in BEiT's recipe).
      mixup=0.0,                # Mixup alpha (0 = off; BEiT 0.8).
      cutmix=0.0,               # CutMix alpha (0 = off; BEiT 1.0).
      mixup_prob=1.0,           # Probability a batch is mixed when mixup or cutmix is on.
      mixup_switch_prob=0.5,    # Probability of CutMix rather than mixup when both are on.
      smoothing=0.0))           # Label smoothing: targets (1 - s) one-hot + s / classes (BEiT 0.1).

  c.search = ml_collections.ConfigDict(dict(
      grid=ml_collections.ConfigDict(),  # Values to search, shaped like the config: grid.optim.learning_rate=(...).
      cv=5,                     # Stratified folds of the training pool.
      refit='accuracy',         # Metric that picks the best cell (and refits it on all training data).
      score_epoch='last',       # A fit's score: its 'last' epoch, or its 'best' epoch of the refit metric.
      kind='exhaustive',        # 'exhaustive' (GridSearchCV) or 'halving' (successive halving over epochs).
      halving_factor=3,         # Halving: keep the best 1/factor of the cells each round, train them factor x longer.
      halving_min_epochs=0))    # Halving: epochs of the first round (0 = num_epochs / factor^(rounds - 1)).

  # Nested CV: outer stratified `search.cv` folds give the paired comparison; inside each outer training set every
  # arm picks its own cell of `search.grid` (the same space for every arm) and its training length (the best epoch
  # up to the maximum) on `inner_cv` inner folds; the outer fold only scores.
  c.ablation = ml_collections.ConfigDict(dict(
      arms=('beit', 'hybrid', 'hybrid_random_bert', 'hybrid_frozen_bert'),
      inner_cv=1,               # Inner folds (>= 2), or 1 = one stratified split holding out data.val_fraction.
      min_steps=0,              # Maximum training length: optim.num_epochs, or enough epochs for min_steps
                                # optimiser steps where that is longer (small training sets).
      curve_sizes=(),           # Training images per class at each learning-curve point (empty = no curve).
      curve_arms=('beit', 'hybrid', 'hybrid_random_bert')))

  # BEiT masked image modelling on the dataset's training images, labels unused (Bao et al. 2021). The model is
  # `model.beit` (fresh; LayerScale and drop path as BEiT's, 0.1), in `model.dtype`.
  c.pretrain = ml_collections.ConfigDict(dict(
      mask_ratio=0.4,           # Share of the patch grid masked per image (BEiT: 75 of 196 patches, ~40 %).
      min_block_patches=4,      # Smallest block the masking draws, in patches (BEiT: 16 on its 14 x 14 grid).
      vocab_size=256,           # Visual tokens: k-means centroids over normalised patches (BEiT: 8192 dVAE codes).
      tokenizer_patches=20000,  # Patches sampled from the training images to fit the k-means tokenizer.
      learning_rate=1.5e-3,     # AdamW peak LR (BEiT's).
      weight_decay=0.05,        # AdamW weight decay on matrices (BEiT's).
      batch_size=32,
      num_epochs=10,
      warmup_fraction=0.1,
      decay='cosine',
      grad_clip=1.0,
      scale=(1.0, 1.0),         # Random resized crop of each image (BEiT: 0.08-1); (1, 1) with ratio (1, 1) = off.
      ratio=(1.0, 1.0),         # Its aspect-ratio range (BEiT: 3/4-4/3).
      hflip=0.0))               # Left-right flip probability (BEiT: 0.5).

  c.devices = ml_collections.ConfigDict(dict(
      num_devices=0,            # Devices the stacked models are sharded over (0 = all, in every process).
      vmap_width=-1,            # Models of a program vectorised together (0 = all; -1 = all on GPU/TPU or over
                                # several devices, 1 on a single CPU).
      models_per_program=0))    # Models stacked in one compiled program (0 = as many as memory allows).
  return c


# ---------------------------------------------------------------------------------------------------------------
# Names.

def key_names(config=None, prefix: str = '', groups: bool = True) -> list:
  """Every key of `config` (default: the base config) as a dotted name ('model.beit.image_size'); with `groups`
  False, only the keys that hold values (no 'model'). `search.grid` holds any keys and is not listed inside."""
  config = base_config() if config is None else config
  names = []
  for key, value in config.items():
    is_group = isinstance(value, ml_collections.ConfigDict)
    if groups or not is_group:
      names.append(prefix + key)
    if is_group and prefix + key != 'search.grid':
      names += key_names(value, prefix + key + '.', groups)
  return names


# Keys renamed inside their group.
RENAMED = {'augment.label_smoothing': 'augment.smoothing'}


def key_exists(name: str) -> bool:
  """Whether a dotted config key ('seed', 'model.beit.image_size', 'search.grid.<anything>') exists."""
  return name.startswith('search.grid.') or name in key_names()


def unknown_key_message(name: str) -> str:
  """The one line for a dotted key that names no config key: where it moved when it is a key of the flat config
  the groups replaced ('learning_rate' -> 'optim.learning_rate'), else the nearest valid keys."""
  if name in RENAMED:
    return f'config key {name!r} is now {RENAMED[name]!r} (timm\'s name): use --config.{RENAMED[name]}=...'
  values = key_names(groups=False)
  moved = [key for key in values if key.endswith('.' + name)]
  if len(moved) == 1:
    return f'config key {name!r} is now {moved[0]!r} (keys are grouped): use --config.{moved[0]}=...'
  if moved:
    return f'config key {name!r} is now one of {", ".join(moved)} (keys are grouped): choose the one you mean.'
  nearest = difflib.get_close_matches(name, values, n=3, cutoff=0.5)
  hint = f'nearest valid keys: {", ".join(nearest)}' if nearest else 'see cmtl_jax/config.py for the keys'
  return f'unknown config key {name!r}: {hint}.'


# ---------------------------------------------------------------------------------------------------------------
# Names and types.

def _kind(default):
  """What a value of a key whose default is `default` may be: an int is also a float, a list also a tuple."""
  if isinstance(default, bool):
    return (bool,), 'True or False'
  if isinstance(default, float):
    return (int, float), 'a number'
  if isinstance(default, int):
    return (int,), 'an integer'
  if isinstance(default, str):
    return (str,), 'a string'
  if isinstance(default, (tuple, list)):
    return (tuple, list), 'a list'
  return (type(default),), type(default).__name__


def _check_keys_and_types(config, defaults, prefix='') -> None:
  """Every key of `config` exists in `defaults` (the base config) and has its type; `search.grid` holds any keys;
  an unset `model.beit.*` field is None."""
  for key in config:
    name = prefix + key
    if key not in defaults:
      raise ConfigError(unknown_key_message(name))
    value, default = config[key], defaults[key]
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f'{name} is a group of keys ({", ".join(name + "." + k for k in default)}), not a value: '
                          f'set one of its keys.')
      if name != 'search.grid':
        _check_keys_and_types(value, default, name + '.')
      continue
    if name.startswith('model.beit.'):
      field = BeitConfig.__dataclass_fields__[key].type
      kinds, text = ((int, float), 'a number') if field is float else _kind(field())
    else:
      kinds, text = _kind(default)
    if value is None and name.startswith('model.beit.'):
      continue
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
      raise ConfigError(f'{name} must be {text}, got {value!r}.')


# ---------------------------------------------------------------------------------------------------------------
# Ranges.

def _positive(name, value, kind=(int, float)):
  if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
    raise ConfigError(f'{name} must be a positive number, got {value!r}: set --config.{name}=<value > 0>.')


def _choice(name, value, allowed):
  if value not in allowed:
    raise ConfigError(f'unknown {name} {value!r}: choose one of {", ".join(allowed)} (--config.{name}=...).')


def _non_negative(group, prefix, keys):
  for key in keys:
    if group[key] < 0:
      raise ConfigError(f'{prefix}.{key} must be >= 0, got {group[key]!r}.')


def _validate_data(d) -> None:
  _choice('data.resize', d.resize, RESIZE_MODES)
  _choice('data.on_bad_image', d.on_bad_image, ON_BAD_IMAGE)
  if d.channels not in (0, 1, 3):
    raise ConfigError(f'data.channels must be 1 (grey), 3 (RGB) or 0 (the BEiT\'s), got {d.channels!r}.')
  _non_negative(d, 'data', ('image_size', 'train_per_class'))
  if not 0 < d.memory_fraction <= 1:
    raise ConfigError(f'data.memory_fraction must lie in (0, 1], got {d.memory_fraction!r}.')
  if d.dataset == 'folder' and not d.data_dir:
    raise ConfigError('dataset folder needs --config.data.data_dir=PATH, a folder with one sub-folder of images per '
                      'class.')
  for key in ('test_fraction', 'val_fraction'):
    if not 0 < d[key] < 1:
      raise ConfigError(f'data.{key} must lie strictly between 0 and 1, got {d[key]!r}.')


def _validate_model(m) -> None:
  _choice('model.variant', m.variant, VARIANTS)
  _choice('model.pooling', m.pooling, POOLINGS)
  _choice('model.dtype', m.dtype, DTYPES)
  _non_negative(m, 'model', ('bert_layers',))
  if m.freeze_bert and m.variant != 'hybrid':
    raise ConfigError(f'model.freeze_bert needs model.variant hybrid (there are no BERT layers in {m.variant!r}).')


def _validate_optim(o) -> None:
  _choice('optim.optimizer', o.optimizer, OPTIMIZERS)
  _choice('optim.decay', o.decay, DECAYS)
  for key in ('learning_rate', 'fresh_lr_multiplier'):
    _positive(f'optim.{key}', o[key])
  for key in ('batch_size', 'num_epochs', 'eval_batch_size'):
    _positive(f'optim.{key}', o[key], int)
  _non_negative(o, 'optim', ('weight_decay', 'grad_clip', 'warmup_fraction', 'schedule_epochs'))
  if o.schedule_epochs and o.schedule_epochs < o.num_epochs:
    raise ConfigError(f'optim.schedule_epochs ({o.schedule_epochs}) must be 0 or >= optim.num_epochs '
                      f'({o.num_epochs}).')
  if not 0 < o.layer_decay <= 1:
    raise ConfigError(f'optim.layer_decay must lie in (0, 1], got {o.layer_decay!r}.')
  if not 0 <= o.ema_decay < 1:
    raise ConfigError(f'optim.ema_decay must lie in [0, 1), got {o.ema_decay!r}.')
  if not 0 <= o.momentum < 1:
    raise ConfigError(f'optim.momentum must lie in [0, 1), got {o.momentum!r}.')
  if o.warmup_fraction >= 1:
    raise ConfigError(f'optim.warmup_fraction must be < 1, got {o.warmup_fraction!r}.')


def _validate_crop(a, group: str) -> None:
  for key in ('scale', 'ratio'):
    value = tuple(a[key])
    if len(value) != 2 or not 0 < value[0] <= value[1]:
      raise ConfigError(f'{group}.{key} must be two numbers 0 < low <= high, got {value!r}.')
  if a.scale[1] > 1:
    raise ConfigError(f'{group}.scale must lie within (0, 1], got {tuple(a.scale)!r}.')
  if not 0 <= a.hflip <= 1:
    raise ConfigError(f'{group}.hflip must lie in [0, 1], got {a.hflip!r}.')


def _validate_augment(a) -> None:
  _validate_crop(a, 'augment')
  for key in ('reprob', 'mixup_prob', 'mixup_switch_prob'):
    if not 0 <= a[key] <= 1:
      raise ConfigError(f'augment.{key} must lie in [0, 1], got {a[key]!r}.')
  if not 0 <= a.smoothing < 1:
    raise ConfigError(f'augment.smoothing must lie in [0, 1), got {a.smoothing!r}.')
  _non_negative(a, 'augment', ('mixup', 'cutmix'))


def _validate_search(s, num_epochs: int) -> None:
  _choice('search.refit', s.refit, METRICS)
  _choice('search.score_epoch', s.score_epoch, SCORE_EPOCHS)
  _choice('search.kind', s.kind, SEARCH_KINDS)
  if s.cv < 2:
    raise ConfigError(f'search.cv must be >= 2 folds, got {s.cv}.')
  if s.halving_factor < 2 or not 0 <= s.halving_min_epochs <= num_epochs:
    raise ConfigError(f'halving needs search.halving_factor >= 2 and 0 <= search.halving_min_epochs <= '
                      f'optim.num_epochs, got {s.halving_factor} and {s.halving_min_epochs}.')


def _validate_ablation(a) -> None:
  if a.inner_cv < 1:
    raise ConfigError(f'ablation.inner_cv must be >= 2 inner folds, or 1 for one stratified split, got '
                      f'{a.inner_cv}.')
  _non_negative(a, 'ablation', ('min_steps',))
  if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in a.curve_sizes):
    raise ConfigError(f'ablation.curve_sizes must be positive integers, got {a.curve_sizes!r}.')


def _validate_pretrain(p) -> None:
  if not 0 < p.mask_ratio < 1:
    raise ConfigError(f'pretrain.mask_ratio must lie strictly between 0 and 1, got {p.mask_ratio!r}.')
  for key in ('min_block_patches', 'tokenizer_patches', 'num_epochs', 'batch_size'):
    if p[key] < 1:
      raise ConfigError(f'pretrain.{key} must be >= 1, got {p[key]!r}.')
  if p.vocab_size < 2:
    raise ConfigError(f'pretrain.vocab_size must be >= 2 visual tokens, got {p.vocab_size!r}.')
  if p.learning_rate <= 0:
    raise ConfigError(f'pretrain.learning_rate must be > 0, got {p.learning_rate!r}.')
  _non_negative(p, 'pretrain', ('weight_decay', 'grad_clip', 'warmup_fraction'))
  _choice('pretrain.decay', p.decay, DECAYS)
  _validate_crop(p, 'pretrain')
  if p.warmup_fraction >= 1:
    raise ConfigError(f'pretrain.warmup_fraction must be < 1, got {p.warmup_fraction!r}.')


def _validate_devices(d) -> None:
  _non_negative(d, 'devices', ('num_devices', 'models_per_program'))
  if d.vmap_width < -1:
    raise ConfigError(f'devices.vmap_width must be >= -1 (-1 = automatic, 0 = all models), got {d.vmap_width}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` for the first bad value, before any data is read or anything compiles: unknown keys
  (naming where a key of the old flat config went), wrong types, values out of range, and combinations that cannot
  work. The BEiT's own ranges (image size a multiple of the patch size, ...) are checked by `resolve`, once the
  checkpoint's fields are known."""
  _check_keys_and_types(config, base_config())
  _validate_data(config.data)
  _validate_model(config.model)
  _validate_optim(config.optim)
  _validate_augment(config.augment)
  _validate_search(config.search, config.optim.num_epochs)
  _validate_ablation(config.ablation)
  _validate_pretrain(config.pretrain)
  _validate_devices(config.devices)
