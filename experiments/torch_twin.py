"""A PyTorch eager twin of `model.HybridClassifier` and its training step: the benchmark's eager reference.

The benchmark reports `torch_speedup = PyTorch time / ours, per example`. This module builds the same
network from transformers' (5) own PyTorch classes and the same configs (BeitModel with no pooler and no
final LayerNorm -> adapter -> LayerNorm -> BERT encoder layers -> mean pool -> LayerNorm -> head), and times one
eager training step the way `train.make_train_epoch` does it: gather uint8 images by index, `data.preprocess`
(antialiased bilinear resize, [0, 255] -> [-1, 1]), forward in train mode (dropout, drop path), cross-entropy,
backward, global-norm clipping at 1.0, Adam or SGD with momentum 0.9 at a constant learning rate.

torch is an optional extra: it is imported inside the functions only, so importing this module never needs it.
Nothing here is used for training; only timing (and a parameter count to check the twin matches).
"""

import copy
import functools
import statistics
import time
from typing import Any, Mapping, Optional

import numpy as np

_POOL_NORM_EPS = 1e-6  # flax.linen.LayerNorm's default epsilon, used by the hybrid's `pool_norm`.


def available() -> bool:
  """True when torch (and transformers' PyTorch models) can be imported."""
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    from transformers.models.beit import modeling_beit  # pylint: disable=g-import-not-at-top,unused-import
    from transformers.models.bert import modeling_bert  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def _config(config, config_cls):
  """A private copy of `config` (a transformers config, a dict, or anything with `to_dict()`, such as
  `models.configs`) as `config_cls`,
  with SDPA attention (what `from_pretrained` picks by default; the bare layer classes need it set)."""
  if isinstance(config, config_cls):
    config = copy.deepcopy(config)
  elif isinstance(config, Mapping):
    config = config_cls(**{k: v for k, v in config.items() if k != 'model_type'})
  elif hasattr(config, 'to_dict'):
    config = config_cls(**{k: v for k, v in config.to_dict().items() if k != 'model_type'})
  else:
    raise TypeError(f'expected a {config_cls.__name__}, a dict or an object with to_dict(), got {type(config)}.')
  config._attn_implementation = 'sdpa'  # pylint: disable=protected-access
  return config


def _init_linear(module, std: float) -> None:
  """Flax-style init of every Linear / Conv2d / LayerNorm below `module`: weights ~ N(0, std), biases 0,
  LayerNorm scale 1 (transformers' `_init_weights` does the same for its models)."""
  import torch  # pylint: disable=g-import-not-at-top
  for sub in module.modules():
    if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)):
      torch.nn.init.normal_(sub.weight, 0.0, std)
      if sub.bias is not None:
        torch.nn.init.zeros_(sub.bias)
    elif isinstance(sub, torch.nn.LayerNorm):
      torch.nn.init.ones_(sub.weight)
      torch.nn.init.zeros_(sub.bias)


@functools.lru_cache(maxsize=None)
def _module_class():
  """The twin's `torch.nn.Module` class, defined on first use so that torch is imported lazily."""
  import torch  # pylint: disable=g-import-not-at-top
  from transformers.models.beit import modeling_beit  # pylint: disable=g-import-not-at-top
  from transformers.models.bert import modeling_bert  # pylint: disable=g-import-not-at-top

  class TorchHybrid(torch.nn.Module):
    """Pixels NCHW float32 `[batch, C, S, S]` (S = BEiT image_size, in [-1, 1]) -> logits `[batch, classes]`."""

    def __init__(self, beit_config, bert_config: Optional[Any], num_classes: int):
      super().__init__()
      self.beit_config, self.bert_config = beit_config, bert_config
      # With mean pooling BeitModel's `layernorm` is the identity: the hybrid has no LayerNorm after the encoder.
      beit_config.use_mean_pooling = True
      self.beit = modeling_beit.BeitModel(beit_config, add_pooling_layer=False)
      _init_linear(self.beit, beit_config.initializer_range)
      width = beit_config.hidden_size
      self.adapter = self.adapter_norm = self.bert_encoder = None
      if bert_config is not None:
        if width != bert_config.hidden_size:
          self.adapter = torch.nn.Linear(width, bert_config.hidden_size)
        self.adapter_norm = torch.nn.LayerNorm(bert_config.hidden_size, eps=bert_config.layer_norm_eps)
        self.bert_encoder = modeling_bert.BertEncoder(bert_config)
        for part in (self.adapter, self.adapter_norm, self.bert_encoder):
          if part is not None:
            _init_linear(part, bert_config.initializer_range)
        width = bert_config.hidden_size
      self.pool_norm = torch.nn.LayerNorm(width, eps=_POOL_NORM_EPS)
      self.head = torch.nn.Linear(width, num_classes)
      torch.nn.init.zeros_(self.head.weight)  # As the hybrid's head: kernel and bias start at 0.
      torch.nn.init.zeros_(self.head.bias)

    def forward(self, pixels):
      """Logits `[batch, num_classes]` from pixels `[batch, C, S, S]`."""
      tokens = self.beit(pixels).last_hidden_state  # [batch, 1 + patches, beit_width]
      if self.bert_encoder is not None:
        if self.adapter is not None:
          tokens = self.adapter(tokens)
        tokens = self.bert_encoder(self.adapter_norm(tokens)).last_hidden_state  # No mask: every token attends.
      return self.head(self.pool_norm(tokens.mean(dim=1)))

  return TorchHybrid


def build(beit_config, bert_config, num_classes: int):
  """The twin `torch.nn.Module` of `model.build(beit_config, bert_config, num_classes)` (mean pooling, bridge
  LayerNorm); `bert_config` None gives the BEiT-only baseline. Configs may be transformers configs or dicts and
  are copied, never changed. The module maps pixels NCHW `[batch, C, S, S]` to logits `[batch, num_classes]`."""
  from transformers import BeitConfig, BertConfig  # pylint: disable=g-import-not-at-top
  beit = _config(beit_config, BeitConfig)
  bert = None if bert_config is None else _config(bert_config, BertConfig)
  return _module_class()(beit, bert, num_classes)


def preprocess(images, image_size: int, num_channels: int):
  """torch uint8 `[batch, h, w, c]` -> float32 NCHW `[batch, num_channels, image_size, image_size]` in [-1, 1],
  as `data.preprocess` (antialiased bilinear resize, one channel repeated when BEiT wants 3)."""
  import torch  # pylint: disable=g-import-not-at-top
  x = images.permute(0, 3, 1, 2).to(torch.float32) / 255.0
  if tuple(x.shape[2:]) != (image_size, image_size):
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode='bilinear', align_corners=False,
                                        antialias=True)
  if x.shape[1] != num_channels:
    x = x.repeat_interleave(num_channels, dim=1)
  return (x - 0.5) / 0.5


def make_optimizer(module, name: str, learning_rate: float):
  """torch.optim.Adam ('adam'), or SGD with momentum 0.9 ('sgdm' / 'sgd'), at a constant learning rate."""
  import torch  # pylint: disable=g-import-not-at-top
  params = [p for p in module.parameters() if p.requires_grad]
  if name == 'adam':
    return torch.optim.Adam(params, lr=learning_rate)
  if name in ('sgdm', 'sgd'):
    return torch.optim.SGD(params, lr=learning_rate, momentum=0.9)
  raise ValueError(f'unknown optimizer {name!r}: use adam or sgdm.')


def make_train_step(module, optimizer, images, labels):
  """Returns `step(idx) -> loss` (a float): one eager training step on the examples `idx` (torch int64
  `[batch]`) of `images` (torch uint8 `[N, H, W, C]`) and `labels` (torch int64 `[N]`)."""
  import torch  # pylint: disable=g-import-not-at-top
  beit = module.beit_config
  params = [p for p in module.parameters() if p.requires_grad]

  def step(idx):
    module.train()
    pixels = preprocess(images[idx], beit.image_size, beit.num_channels)
    loss = torch.nn.functional.cross_entropy(module(pixels), labels[idx])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()

  return step


def count_parameters(module) -> int:
  """Number of trainable scalars of `module`."""
  return sum(p.numel() for p in module.parameters() if p.requires_grad)


def step_timer(beit_config, bert_config, num_classes: int, images: np.ndarray, labels: np.ndarray, *,
               batch_size: int, optimizer: str = 'adam', learning_rate: float = 1e-4, steps: int = 20,
               warmup_steps: int = 3, threads: int = 0, seed: int = 0):
  """The twin's eager training step on CPU, built and warmed up, ready to be timed.

  Args:
    beit_config, bert_config, num_classes: as `build`.
    images: uint8 `[N, H, W, C]`; labels: int `[N]`.
    batch_size: examples per step (random indices from `np.random.RandomState(seed)`, drawn before timing).
    optimizer: 'adam' or 'sgdm'; learning_rate: its constant learning rate.
    steps: steps per `timer()` call, after `warmup_steps` untimed ones here.
    threads: torch intra-op threads while timing when > 0 (restored afterwards), else torch's default.
    seed: `torch.manual_seed` (init, dropout, drop path) and the index draws.

  Returns:
    (timer, info): `timer()` runs `steps` steps and returns the median wall seconds of one whole step (gather,
    preprocess, forward, backward, clip, update); info: 'threads', 'torch_version', 'parameters' (trainable).
  """
  import torch  # pylint: disable=g-import-not-at-top
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}.')
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f'images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}.')
  torch.manual_seed(seed)
  module = build(beit_config, bert_config, num_classes)
  opt = make_optimizer(module, optimizer, learning_rate)
  step = make_train_step(module, opt, torch.from_numpy(np.ascontiguousarray(images)),
                         torch.from_numpy(labels.astype(np.int64)))
  rng = np.random.RandomState(seed)
  n = len(images)
  draw = lambda: torch.from_numpy(rng.choice(n, batch_size, replace=n < batch_size).astype(np.int64))

  def timed(num_steps: int) -> float:
    previous_threads = torch.get_num_threads()
    if threads > 0:
      torch.set_num_threads(threads)
    try:
      batches = [draw() for _ in range(num_steps)]
      times = []
      for idx in batches:
        start = time.perf_counter()
        step(idx)
        times.append(time.perf_counter() - start)
      return statistics.median(times)
    finally:
      torch.set_num_threads(previous_threads)

  if warmup_steps:
    timed(warmup_steps)
  info = {'threads': threads or torch.get_num_threads(), 'torch_version': torch.__version__,
          'parameters': count_parameters(module)}
  return (lambda: timed(steps)), info
