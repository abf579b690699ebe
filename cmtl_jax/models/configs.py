"""BERT's and BEiT's architectures as frozen dataclasses, read from a Hugging Face `config.json` (or its dict).

The field names and defaults are Hugging Face's (`BertConfig`, `BeitConfig`), so a checkpoint's config.json and the
config dicts saved beside trained classifiers read back unchanged; keys that do not shape the encoder (vocabulary,
segmentation heads, ...) are ignored. Frozen, so a config is hashable and a Flax module holding it is too.
"""

import dataclasses
import json
from typing import ClassVar

from cmtl_jax.errors import ConfigError


class _FromDict:
  """`from_dict` / `from_json_file` / `to_dict` / `replace` for the config dataclasses below."""
  model_type: ClassVar[str]

  @classmethod
  def field_names(cls) -> tuple:
    return tuple(f.name for f in dataclasses.fields(cls))

  @classmethod
  def from_dict(cls, values: dict):
    """The config from a dict holding any superset of its fields (others ignored). Raises ConfigError when the
    dict names another `model_type`, or a value has the wrong type."""
    found = values.get('model_type', cls.model_type)
    if found != cls.model_type:
      raise ConfigError(f'expected a {cls.model_type!r} config, got model_type {found!r}.')
    kept = {k: values[k] for k in cls.field_names() if k in values}
    if isinstance(kept.get('image_size'), (list, tuple)):  # Hugging Face also writes [H, W].
      height, width = kept['image_size']
      if height != width:
        raise ConfigError(f'image_size {kept["image_size"]}: only square images are supported.')
      kept['image_size'] = height
    for f in dataclasses.fields(cls):
      if f.name in kept and not isinstance(kept[f.name], f.type if f.type is not float else (int, float)):
        raise ConfigError(f'{cls.model_type} config field {f.name} must be {f.type.__name__}, got '
                          f'{kept[f.name]!r}.')
    return cls(**kept)

  @classmethod
  def from_json_file(cls, path: str):
    """The config in a checkpoint's config.json. Raises ConfigError (unreadable, or another model type)."""
    try:
      with open(path) as f:
        values = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise ConfigError(f'cannot read {path}: {e}') from None
    try:
      return cls.from_dict(values)
    except ConfigError as e:
      raise ConfigError(f'{path}: {e}') from None

  def to_dict(self) -> dict:
    return {**dataclasses.asdict(self), 'model_type': self.model_type}

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class BertConfig(_FromDict):
  """The encoder layers of BERT (Devlin et al. 2019); Hugging Face `BertConfig`'s names and defaults (bert-base)."""
  model_type: ClassVar[str] = 'bert'
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = 'gelu'
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12


@dataclasses.dataclass(frozen=True)
class BeitConfig(_FromDict):
  """BEiT (Bao et al. 2021) as Hugging Face `BeitConfig` describes it, its names and defaults (beit-base-patch16-224);
  `image_size` is the side of the square input in pixels."""
  model_type: ClassVar[str] = 'beit'
  image_size: int = 224
  patch_size: int = 16
  num_channels: int = 3
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = 'gelu'
  hidden_dropout_prob: float = 0.0
  attention_probs_dropout_prob: float = 0.0
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12
  use_mask_token: bool = False
  use_absolute_position_embeddings: bool = False
  use_relative_position_bias: bool = False
  use_shared_relative_position_bias: bool = False
  layer_scale_init_value: float = 0.1
  drop_path_rate: float = 0.1
  use_mean_pooling: bool = True

  @property
  def window(self) -> tuple:
    """The patch grid `(rows, columns)`."""
    return (self.image_size // self.patch_size,) * 2


# Keys that set how a BEiT trains, not what its weights are: a checkpoint's values may be overridden freely.
BEIT_TRAINING_KEYS = ('hidden_dropout_prob', 'attention_probs_dropout_prob', 'drop_path_rate')
