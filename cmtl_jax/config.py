"""The full set of config keys with their defaults, and the checks run on them before anything compiles.

Configs in `experiments/configs/` start from `base_config()` and override what their experiment needs, so a key
has one default in one place.
"""

import difflib

import ml_collections

from cmtl_jax.errors import ConfigError
from cmtl_jax.models.configs import BeitConfig

VARIANTS = ('hybrid', 'beit')
OPTIMIZERS = ('sgdm', 'adam')
POOLINGS = ('mean', 'cls')
DECAYS = ('cosine', 'linear', 'constant')
DTYPES = ('float32', 'bfloat16')
SEARCHES = ('exhaustive', 'halving')
METRICS = ('accuracy', 'f1', 'precision', 'recall')  # The scorers (metrics.METRICS), refit choices.
RESIZE_MODES = ('crop', 'pad')  # How folder images reach image_size (cmtl_jax/data/folder.py).
ON_BAD_IMAGE = ('error', 'skip')


def base_config() -> ml_collections.ConfigDict:
  """Every key the library reads, with its default."""
  c = ml_collections.ConfigDict()
  # Data.
  c.dataset = 'digits'          # 'digits', 'fashion_mnist', 'folder' (your images in data_dir), any TFDS dataset
                                # prepared as array_record, or 'synthetic' (random images of digits' shape:
                                # benchmarks without data).
  c.data_dir = ''               # TFDS data dir ('' = ~/tensorflow_datasets); for 'folder' the image folder:
                                # PATH/<class>/<image>, or PATH/train/<class>/... + PATH/test/<class>/...
  c.manual_dir = ''             # Where raw files live for builders that need them ('' = builder default).
  c.image_key = 'image'         # Feature names for TFDS datasets other than ours.
  c.label_key = 'label'
  c.test_fraction = 0.2         # Held-out test share for datasets without a test split.
  c.val_fraction = 0.1          # Validation share of the training split (single-model training).
  c.split_seed = 0              # Fixes the test split independently of the training seed.
  c.train_per_class = 0         # Keep at most this many training images per class (0 = all).
  c.gray_to_rgb = False         # Repeat a single image channel to match a 3-channel BEiT.
  c.data_memory_fraction = 0.5  # Largest share of the device's memory the staged images may take (checked first).
  # Image folders (dataset='folder'; decoding rules in cmtl_jax/data/folder.py).
  c.image_size = 0              # Images are stored image_size x image_size (0 = beit.image_size).
  c.channels = 0                # 1 (grey) or 3 (RGB); 0 = beit.num_channels. Alpha is composited on white.
  c.resize = 'crop'             # 'crop': shorter side to image_size, centre square; 'pad': longer side, black bars.
  c.on_bad_image = 'error'      # A file that does not decode: 'error' (one line) or 'skip' (listed in metrics.json).
  c.prepared_dir = ''           # Where folders are prepared as array_record ('' = ~/tensorflow_datasets).

  # Model.
  c.variant = 'hybrid'          # 'hybrid' (BEiT -> BERT layers) or 'beit' (BEiT alone, the ablation baseline).
  c.bert_path = ''              # Hub id or local dir; '' = the packaged all-MiniLM-L6-v2.
  c.bert_layers = 0             # Keep the first k BERT encoder layers (0 = all).
  c.bert_pretrained = True      # False: BERT's architecture with fresh random weights (the ablation's control).
  c.freeze_bert = False         # Freeze BERT's attention and MLP weights (its LayerNorms still train).
  c.beit_path = ''              # Hub id or local dir; '' = a fresh BEiT built from `beit` below.
  c.beit_pretrained = True      # False: beit_path's architecture with fresh random weights (the ablation's control).
  c.beit = ml_collections.ConfigDict(dict(
      image_size=16, patch_size=4, num_channels=1, hidden_size=192, num_hidden_layers=2,
      num_attention_heads=3, intermediate_size=768, hidden_dropout_prob=0.0,
      attention_probs_dropout_prob=0.0, drop_path_rate=0.1, use_absolute_position_embeddings=True,
      use_relative_position_bias=False, use_mean_pooling=True, use_shared_relative_position_bias=False,
      layer_scale_init_value=0.1, use_mask_token=False, hidden_act='gelu', layer_norm_eps=1e-12,
      initializer_range=0.02))      # Every BeitConfig field (models/configs.py); with beit_path, a key changed
                                    # from its default must agree with the checkpoint (image_size: resized).
  c.pooling = 'mean'            # 'mean' over all tokens or the 'cls' token.
  c.bridge_norm = True          # LayerNorm between BEiT's output and BERT's first layer.

  # Optimisation.
  c.optimizer = 'adam'          # 'sgdm' or 'adam'.
  c.learning_rate = 1e-4        # Peak LR of pretrained weights; fresh weights get `fresh_lr_multiplier` x this.
  c.fresh_lr_multiplier = 10.0
  c.momentum = 0.9              # SGDM only.
  c.weight_decay = 0.0
  c.grad_clip = 1.0             # Global-norm clip (0 = off).
  c.warmup_fraction = 0.1
  c.decay = 'cosine'
  c.batch_size = 32
  c.num_epochs = 10
  c.schedule_epochs = 0         # Epochs the warmup + decay schedule spans (0 = num_epochs); training stops at
                                # num_epochs. Nested CV's final fits stop at the chosen epoch of this schedule.
  c.label_smoothing = 0.0
  c.seed = 0
  c.eval_batch_size = 256
  c.dtype = 'float32'           # Computation dtype: 'float32' or 'bfloat16' (params and optimiser stay float32).

  # Grid search (experiments.grid_search): lists of values per config key, searched with `cv`-fold CV.
  c.grid = ml_collections.ConfigDict()
  c.cv = 5
  c.refit = 'accuracy'          # Metric that picks the best cell (and refits it on all training data).
  c.score_epoch = 'last'        # A fit's score: its 'last' epoch, or its 'best' epoch of the refit metric.
  c.models_per_program = 0      # Models stacked in one compiled program (0 = as many as memory allows).
  c.vmap_width = -1             # Models of a program vectorised together (0 = all; -1 = all on GPU/TPU or over
                                # several devices, 1 on a single CPU).
  c.num_devices = 0             # Devices the stacked models are sharded over (0 = all, in every process).
  c.search = 'exhaustive'       # 'exhaustive' (GridSearchCV) or 'halving' (successive halving over epochs).
  c.halving_factor = 3          # Halving: keep the best 1/factor of the cells each round, train them factor x longer.
  c.halving_min_epochs = 0      # Halving: epochs of the first round (0 = num_epochs / factor^(rounds - 1)).

  # Ablation (experiments.ablation): nested CV. Outer stratified `cv` folds give the paired comparison; inside each
  # outer training set every arm picks its own cell of `grid` (the search space, the same for every arm) and its
  # training length (the best epoch up to the maximum) on `inner_cv` inner folds; the outer fold only scores.
  c.arms = ('beit', 'hybrid', 'hybrid_random_bert', 'hybrid_frozen_bert')
  c.inner_cv = 1                # Inner folds (>= 2), or 1 = one stratified split holding out `val_fraction`.
  c.min_steps = 0               # Maximum training length: num_epochs epochs, or enough epochs for min_steps
                                # optimiser steps where that is longer (small training sets).
  c.curve_sizes = ()            # Training images per class at each learning-curve point (empty = no curve).
  c.curve_arms = ('beit', 'hybrid', 'hybrid_random_bert')

  # BEiT pretraining (experiments.pretrain): masked image modelling on the dataset's training images, labels unused
  # (Bao et al. 2021). The model is `beit` above (its layer_scale_init_value and drop_path_rate are BEiT's 0.1);
  # batch_size, seed, warmup_fraction, decay, grad_clip and dtype are the keys above.
  c.pretrain = ml_collections.ConfigDict(dict(
      mask_ratio=0.4,           # Share of the patch grid masked per image (BEiT: 75 of 196 patches, ~40 %).
      min_block_patches=4,      # Smallest block the masking draws, in patches (BEiT: 16 on its 14 x 14 grid).
      vocab_size=256,           # Visual tokens: k-means centroids over normalised patches (BEiT: 8192 dVAE codes).
      tokenizer_patches=20000,  # Patches sampled from the training images to fit the k-means tokenizer.
      learning_rate=1.5e-3,     # AdamW peak LR (BEiT's), warmup + decay as `warmup_fraction` / `decay` say.
      weight_decay=0.05,        # AdamW weight decay on matrices (BEiT's).
      num_epochs=10))
  return c


def _positive(config, key, kind=(int, float)):
  value = config[key]
  if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
    raise ConfigError(f'{key} must be a positive number, got {value!r}: set --config.{key}=<value > 0>.')


def _choice(config, key, allowed):
  if config[key] not in allowed:
    raise ConfigError(f'unknown {key} {config[key]!r}: choose one of {", ".join(allowed)} '
                      f'(--config.{key}=...).')


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


def _check_keys_and_types(config, defaults, prefix=''):
  """Every key of `config` exists in `defaults` (the base config) and has its type; `grid` holds any keys."""
  for key in config:
    name = prefix + key
    if key not in defaults:
      raise ConfigError(unknown_key_message(name))
    value, default = config[key], defaults[key]
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f'{name} must be a group of keys, got {value!r}.')
      if key != 'grid':
        _check_keys_and_types(value, default, name + '.')
      continue
    kinds, text = _kind(default)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
      raise ConfigError(f'{name} must be {text}, got {value!r}.')


def _key_names(config, prefix='', groups=True) -> list:
  """Every key of `config` as a dotted name, groups' keys included ('beit.image_size'); with `groups` False, the
  values' names only (no 'beit')."""
  names = []
  for key, value in config.items():
    is_group = isinstance(value, ml_collections.ConfigDict)
    if groups or not is_group:
      names.append(prefix + key)
    if is_group and key != 'grid':
      names += _key_names(value, prefix + key + '.', groups)
  return names


def key_exists(name: str) -> bool:
  """Whether a dotted config key ('seed', 'beit.image_size', 'grid.<anything>') exists."""
  return name.startswith('grid.') or name in _key_names(base_config())


def unknown_key_message(name: str) -> str:
  """'unknown config key 'x': nearest valid keys ...' for a dotted key name."""
  nearest = difflib.get_close_matches(name, _key_names(base_config(), groups=False), n=3, cutoff=0.5)
  hint = f'nearest valid keys: {", ".join(nearest)}' if nearest else 'see cmtl_jax/config.py for the keys'
  return f'unknown config key {name!r}: {hint}.'


def _check_beit_keys(beit) -> None:
  for key in beit:
    if key not in BeitConfig.field_names():
      raise ConfigError(unknown_key_message(f'beit.{key}'))


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` for the first bad value, before any data is read or anything compiles: unknown keys,
  wrong types, values out of range, and combinations that cannot work."""
  defaults = base_config()
  defaults.beit = ml_collections.ConfigDict({**defaults.beit.to_dict(), **{
      k: v for k, v in config.beit.items() if k not in defaults.beit}})  # Any BeitConfig field may be set.
  _check_beit_keys(config.beit)
  _check_keys_and_types(config, defaults)
  _choice(config, 'variant', VARIANTS)
  _choice(config, 'optimizer', OPTIMIZERS)
  _choice(config, 'pooling', POOLINGS)
  _choice(config, 'decay', DECAYS)
  _choice(config, 'dtype', DTYPES)
  _choice(config, 'search', SEARCHES)
  _choice(config, 'resize', RESIZE_MODES)
  _choice(config, 'on_bad_image', ON_BAD_IMAGE)
  if config.channels not in (0, 1, 3):
    raise ConfigError(f'channels must be 1 (grey), 3 (RGB) or 0 (beit.num_channels), got {config.channels!r}.')
  if config.image_size < 0:
    raise ConfigError(f'image_size must be >= 0 (0 = beit.image_size), got {config.image_size!r}.')
  if not 0 < config.data_memory_fraction <= 1:
    raise ConfigError(f'data_memory_fraction must lie in (0, 1], got {config.data_memory_fraction!r}.')
  if config.dataset == 'folder' and not config.data_dir:
    raise ConfigError('dataset folder needs --config.data_dir=PATH, a folder with one sub-folder of images per '
                      'class.')
  for key in ('learning_rate', 'fresh_lr_multiplier', 'eval_batch_size'):
    _positive(config, key)
  for key in ('batch_size', 'num_epochs', 'eval_batch_size'):
    _positive(config, key, int)
  for key in ('test_fraction', 'val_fraction'):
    if not 0 < config[key] < 1:
      raise ConfigError(f'{key} must lie strictly between 0 and 1, got {config[key]!r}.')
  for key in ('weight_decay', 'grad_clip', 'warmup_fraction', 'label_smoothing', 'bert_layers',
              'train_per_class', 'schedule_epochs', 'min_steps'):
    if config[key] < 0:
      raise ConfigError(f'{key} must be >= 0, got {config[key]!r}.')
  if config.freeze_bert and config.variant != 'hybrid':
    raise ConfigError(f'freeze_bert needs variant hybrid (there are no BERT layers in {config.variant!r}).')
  if config.cv < 2:
    raise ConfigError(f'cv must be >= 2 folds, got {config.cv}.')
  if config.models_per_program < 0:
    raise ConfigError(f'models_per_program must be >= 0 (0 = automatic), got {config.models_per_program}.')
  if config.num_devices < 0:
    raise ConfigError(f'num_devices must be >= 0 (0 = all), got {config.num_devices}.')
  if config.halving_factor < 2 or config.halving_min_epochs < 0 or config.halving_min_epochs > config.num_epochs:
    raise ConfigError(f'halving needs halving_factor >= 2 and 0 <= halving_min_epochs <= num_epochs, got '
                      f'{config.halving_factor} and {config.halving_min_epochs}.')
  if config.vmap_width < -1:
    raise ConfigError(f'vmap_width must be >= -1 (-1 = automatic, 0 = all models), got {config.vmap_width}.')
  _choice(config, 'refit', METRICS)
  _choice(config, 'score_epoch', ('last', 'best'))
  if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in config.curve_sizes):
    raise ConfigError(f'curve_sizes must be positive integers, got {config.curve_sizes!r}.')
  if config.inner_cv < 1:
    raise ConfigError(f'inner_cv must be >= 2 inner folds, or 1 for one stratified split, got {config.inner_cv}.')
  if config.schedule_epochs and config.schedule_epochs < config.num_epochs:
    raise ConfigError(f'schedule_epochs ({config.schedule_epochs}) must be 0 or >= num_epochs '
                      f'({config.num_epochs}).')
  if not 0 <= config.label_smoothing < 1:
    raise ConfigError(f'label_smoothing must lie in [0, 1), got {config.label_smoothing!r}.')
  if not 0 <= config.momentum < 1:
    raise ConfigError(f'momentum must lie in [0, 1), got {config.momentum!r}.')
  if config.warmup_fraction >= 1:
    raise ConfigError(f'warmup_fraction must be < 1, got {config.warmup_fraction!r}.')
  _validate_pretrain(config.pretrain)
  if not config.beit_path:
    beit = config.beit
    if beit.image_size % beit.patch_size:
      raise ConfigError(f'beit.image_size {beit.image_size} is not a multiple of beit.patch_size '
                        f'{beit.patch_size}.')
    if beit.hidden_size % beit.num_attention_heads:
      raise ConfigError(f'beit.hidden_size {beit.hidden_size} is not divisible by beit.num_attention_heads '
                        f'{beit.num_attention_heads}.')


def _validate_pretrain(pretrain) -> None:
  """The `pretrain.*` keys' ranges (their names and types are checked with every other key)."""
  if not 0 < pretrain.mask_ratio < 1:
    raise ConfigError(f'pretrain.mask_ratio must lie strictly between 0 and 1, got {pretrain.mask_ratio!r}.')
  for key in ('min_block_patches', 'tokenizer_patches', 'num_epochs'):
    if pretrain[key] < 1:
      raise ConfigError(f'pretrain.{key} must be >= 1, got {pretrain[key]!r}.')
  if pretrain.vocab_size < 2:
    raise ConfigError(f'pretrain.vocab_size must be >= 2 visual tokens, got {pretrain.vocab_size!r}.')
  if pretrain.learning_rate <= 0 or pretrain.weight_decay < 0:
    raise ConfigError(f'pretrain.learning_rate must be > 0 and pretrain.weight_decay >= 0, got '
                      f'{pretrain.learning_rate!r} and {pretrain.weight_decay!r}.')
