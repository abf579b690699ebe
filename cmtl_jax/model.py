"""The hybrid image classifier: BEiT embeddings + encoder -> adapter -> BERT encoder layers -> pool -> head.

`HybridClassifier` composes transformers' own Flax modules, so a checkpoint's parameter subtrees drop in unchanged;
`load_pretrained` is the one place where they are put into the hybrid's tree.
"""

import contextlib
import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from transformers.models.beit import modeling_flax_beit
from transformers.models.bert import modeling_flax_bert

from cmtl_jax import activation
from cmtl_jax import attention
from cmtl_jax import dense
from cmtl_jax.errors import ConfigError


class PatchProjection(nn.Module):
  """BEiT's patch embedding as reshape-to-patches + one matmul, with the parameters of transformers'
  `nn.Conv(kernel=stride=patch)` (`kernel [p, p, C, D]`, `bias [D]`), so checkpoints load unchanged.

  Same maths as the strided convolution; under `jax.vmap` over models a convolution with batched weights becomes
  a grouped convolution, which XLA runs far slower on CPU than this batched matmul.
  """
  features: int
  patch_size: int
  initializer_range: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pixels):
    batch, height, width, channels = pixels.shape
    p = self.patch_size
    kernel = self.param('kernel', nn.initializers.normal(self.initializer_range), (p, p, channels, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    patches = pixels.reshape(batch, height // p, p, width // p, p, channels).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(batch, (height // p) * (width // p), p * p * channels).astype(self.dtype)
    return patches @ kernel.reshape(p * p * channels, self.features).astype(self.dtype) + bias.astype(self.dtype)


class PatchEmbeddings(nn.Module):
  """Holds `projection`, as transformers' `FlaxBeitPatchEmbeddings` does: `[B, H, W, C] -> [B, patches, D]`."""
  config: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pixels):
    if pixels.shape[-1] != self.config.num_channels:
      raise ConfigError(f'pixels have {pixels.shape[-1]} channels but BEiT expects {self.config.num_channels}.')
    return PatchProjection(self.config.hidden_size, self.config.patch_size, self.config.initializer_range,
                           self.dtype, name='projection')(pixels)


class BeitEmbeddings(nn.Module):
  """transformers' `FlaxBeitEmbeddings` (same parameter tree) with the patch convolution as `PatchProjection`."""
  config: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pixels, deterministic: bool = True):
    config = self.config
    cls_token = self.param('cls_token', nn.initializers.zeros, (1, 1, config.hidden_size))
    if config.use_mask_token:  # Unused for classification; declared so pretraining checkpoints load.
      self.param('mask_token', nn.initializers.zeros, (1, 1, config.hidden_size))
    embeddings = PatchEmbeddings(config, self.dtype, name='patch_embeddings')(pixels)
    batch = embeddings.shape[0]
    cls = jnp.broadcast_to(cls_token, (batch, 1, config.hidden_size)).astype(embeddings.dtype)
    embeddings = jnp.concatenate([cls, embeddings], axis=1)
    if config.use_absolute_position_embeddings:
      position = self.param('position_embeddings', nn.initializers.zeros,
                            (1, embeddings.shape[1], config.hidden_size))
      embeddings = embeddings + position.astype(embeddings.dtype)
    return nn.Dropout(config.hidden_dropout_prob)(embeddings, deterministic=deterministic)


class HybridClassifier(nn.Module):
  """Image classifier whose middle is a (text-pretrained) BERT encoder.

  Attributes:
    beit_config: `transformers.BeitConfig` of the image side.
    bert_config: `transformers.BertConfig` of the text side, or None for the BEiT-only baseline.
    num_classes: number of output logits.
    pooling: 'mean' over all tokens, or the 'cls' token.
    bridge_norm: LayerNorm between BEiT and BERT (BERT's post-LN layers expect normalised input).
    dtype: computation dtype.
    weight_grads_2d: every Dense layer's kernel gradient as one 2-D matmul (`dense.dense_matmul`: the same values,
      faster on XLA:CPU); False: JAX's own transpose rule.
    erf_gelu: BERT's and BEiT's 'gelu' as `x (1 + erf(x / sqrt 2)) / 2` (`activation.gelu_erf`: BERT's and
      PyTorch's form, faster on XLA:CPU, within 1e-6 of jax's); False: transformers' `jax.nn.gelu` (erfc form).
    heads_first_attention: BERT's and BEiT's self-attention as `attention.attention` (the same maths with the heads
      laid out for XLA:CPU's batched matmuls, and its backward written out); False: transformers' own.
  """
  beit_config: Any
  bert_config: Optional[Any]
  num_classes: int
  pooling: str = 'mean'
  bridge_norm: bool = True
  dtype: Any = jnp.float32
  weight_grads_2d: bool = True
  erf_gelu: bool = True
  heads_first_attention: bool = True

  def setup(self):
    beit = self.beit_config
    self.beit_embeddings = BeitEmbeddings(beit, dtype=self.dtype)
    patch_grid = (beit.image_size // beit.patch_size,) * 2
    self.beit_encoder = modeling_flax_beit.FlaxBeitEncoder(beit, window_size=patch_grid, dtype=self.dtype)
    if self.bert_config is not None:
      if beit.hidden_size != self.bert_config.hidden_size:
        self.adapter = nn.Dense(self.bert_config.hidden_size, dtype=self.dtype,
                                kernel_init=nn.initializers.normal(self.bert_config.initializer_range))
      if self.bridge_norm:
        self.adapter_norm = nn.LayerNorm(epsilon=self.bert_config.layer_norm_eps, dtype=self.dtype)
      self.bert_encoder = modeling_flax_bert.FlaxBertEncoder(self.bert_config, dtype=self.dtype)
    self.pool_norm = nn.LayerNorm(dtype=self.dtype)
    self.head = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=nn.initializers.zeros)

  def encode_image(self, pixels, train: bool = False):
    """BEiT tokens `[batch, 1 + patches, beit_width]` from pixels `[batch, H, W, C]` (normalised, BEiT size)."""
    tokens = self.beit_embeddings(pixels, deterministic=not train)
    return self.beit_encoder(tokens, deterministic=not train).last_hidden_state

  def bridge(self, tokens):
    """Maps BEiT tokens to BERT's width and normalises them as BERT's embedding layer would."""
    if self.beit_config.hidden_size != self.bert_config.hidden_size:
      tokens = self.adapter(tokens)
    if self.bridge_norm:
      tokens = self.adapter_norm(tokens)
    return tokens

  def encode_text_layers(self, hidden, train: bool = False):
    """Runs BERT's encoder layers on `[batch, tokens, bert_width]`; every token is attended to."""
    mask = jnp.ones(hidden.shape[:2], jnp.int32)
    return self.bert_encoder(hidden, mask, None, deterministic=not train).last_hidden_state

  def __call__(self, pixels, train: bool = False):
    """Logits `[batch, num_classes]` (float32) from pixels `[batch, H, W, C]`."""
    with contextlib.ExitStack() as stack:
      if self.weight_grads_2d:
        stack.enter_context(dense.intercept_dense())
      if self.erf_gelu:
        stack.enter_context(activation.intercept_gelu())
      if self.heads_first_attention:
        stack.enter_context(attention.intercept_attention())
      tokens = self.encode_image(pixels, train)
      if self.bert_config is not None:
        tokens = self.encode_text_layers(self.bridge(tokens), train)
      pooled = tokens.mean(axis=1) if self.pooling == 'mean' else tokens[:, 0]
      return self.head(self.pool_norm(pooled)).astype(jnp.float32)


def build(beit_config, bert_config, num_classes: int, pooling: str = 'mean', bridge_norm: bool = True,
          dtype=jnp.float32) -> HybridClassifier:
  """The hybrid, or the BEiT-only baseline when `bert_config` is None."""
  return HybridClassifier(beit_config, bert_config, num_classes, pooling, bridge_norm, dtype)


# Init programs by model and skipped subtrees: a fresh `jax.jit` per call would trace, lower and compile again (the
# init of even a tiny hybrid takes seconds to compile on a CPU: every leaf draws its own random numbers).
_INIT_PROGRAMS = {}
_INIT_PROGRAMS_KEPT = 16


def _identity(model) -> tuple:
  """The fields that make two models build the same programs (flax modules holding transformers configs are
  unhashable): configs by their full JSON, everything else by repr."""
  def key(value):
    return value.to_json_string(use_diff=False) if hasattr(value, 'to_json_string') else repr(value)
  return tuple((f.name, key(getattr(model, f.name))) for f in dataclasses.fields(model)
               if f.name not in ('parent', 'name'))


def _init_program(model: HybridClassifier, skip: frozenset):
  """The jitted random init of one model without the top-level subtrees in `skip`: their random numbers are
  never drawn (XLA drops what the program does not return), so a program that skips the checkpoint subtrees
  compiles and runs in a fraction of the time of a full one."""
  key = (_identity(model), skip)
  program = _INIT_PROGRAMS.pop(key, None)
  if program is None:
    beit = model.beit_config

    def init(rng):
      # The pixels are made here, not closed over: a program first built under a trace (e.g. `jax.eval_shape`)
      # would otherwise keep that trace's tracer.
      pixels = jnp.zeros((1, beit.image_size, beit.image_size, beit.num_channels), jnp.float32)
      params = model.init(rng, pixels)['params']
      return {k: v for k, v in params.items() if k not in skip}

    program = jax.jit(init)
  _INIT_PROGRAMS[key] = program  # Most recently used last.
  while len(_INIT_PROGRAMS) > _INIT_PROGRAMS_KEPT:
    del _INIT_PROGRAMS[next(iter(_INIT_PROGRAMS))]
  return program


def checkpoint_subtrees(pretrained: Optional[dict]) -> frozenset:
  """Names of the top-level subtrees whose every leaf came from a checkpoint (`load_pretrained`'s tree; None:
  none did)."""
  return frozenset(k for k, v in (pretrained or {}).items() if all(jax.tree.leaves(v)))


def init_params(model: HybridClassifier, rng, loaded: Optional[dict] = None,
                pretrained: Optional[dict] = None) -> dict:
  """Initial parameters of `model`: random ones from `rng`; with `loaded` and `pretrained` (as `from_config` or
  `load_pretrained` return them), the checkpoint subtrees are taken from `loaded` and never drawn at random."""
  skip = checkpoint_subtrees(pretrained)
  return {**_init_program(model, skip)(rng), **{k: loaded[k] for k in skip}}


@jax.jit
def _assemble(fresh: list, checkpoint: dict) -> dict:
  """One stacked tree from M models' random subtrees and the checkpoint subtrees broadcast over the M models."""
  models = len(fresh)
  return {**jax.tree.map(lambda *xs: jnp.stack(xs), *fresh),
          **jax.tree.map(lambda x: jnp.broadcast_to(x, (models, *x.shape)), checkpoint)}


def init_stacked(model: HybridClassifier, rngs, loaded: Optional[dict] = None,
                 pretrained: Optional[dict] = None) -> dict:
  """Initial parameters of `len(rngs)` models at once, leaves `[models, ...]`: model i equals
  `init_params(model, rngs[i], loaded, pretrained)`, checkpoint subtrees broadcast over the models.

  One init program per model shape, called once per key (a program over all M keys would compile again for every
  M, and `jax.vmap` of the random initialisers compiles slower than the single model's init). The M random trees
  exist beside their stack for a moment: at most 2x the params, less than training the stack needs (the params'
  gradients and the optimiser's state)."""
  skip = checkpoint_subtrees(pretrained)
  program = _init_program(model, skip)
  return _assemble([program(rng) for rng in rngs], {k: loaded[k] for k in skip})


def _placements(bert_params, beit_params, has_bridge_norm):
  """(hybrid subtree, checkpoint subtree) pairs: the whole map from checkpoints into the hybrid."""
  pairs = []
  if beit_params is not None:
    pairs += [('beit_embeddings', beit_params['embeddings']), ('beit_encoder', beit_params['encoder'])]
  if bert_params is not None:
    pairs.append(('bert_encoder', bert_params['encoder']))
    if has_bridge_norm:  # Start the bridge as BERT's own embedding LayerNorm: the statistics its layers expect.
      pairs.append(('adapter_norm', bert_params['embeddings']['LayerNorm']))
  return pairs


def load_pretrained(params: dict, bert_params: Optional[dict], beit_params: Optional[dict]):
  """Puts checkpoint weights into the hybrid's parameter tree.

  Args:
    params: the hybrid's (random) parameters from `init_params`, or their shapes (`jax.eval_shape`).
    bert_params / beit_params: transformers base-model parameter trees, or None for a side that stays fresh.

  Returns:
    (params, pretrained): the new tree, and a tree of the same structure with True on every leaf that came from a
    checkpoint (the optimiser gives fresh leaves a larger learning rate).
  """
  params = dict(params)
  pretrained = jax.tree.map(lambda _: False, params)
  for name, loaded in _placements(bert_params, beit_params, 'adapter_norm' in params):
    if name not in params:
      continue  # e.g. BERT weights with the BEiT-only variant.
    want = jax.tree.map(np.shape, params[name])
    got = jax.tree.map(np.shape, loaded)
    if want != got:
      raise ConfigError(f'checkpoint weights for {name} do not fit the hybrid: expected shapes {want}, got {got}.')
    params[name] = jax.tree.map(jnp.asarray, loaded)
    pretrained[name] = jax.tree.map(lambda _: True, loaded)
  return params, pretrained


def _encoder_flops(tokens: int, hidden: int, intermediate: int, layers: int) -> int:
  """Forward FLOPs of `layers` transformer layers for one example: Q, K, V and output projections, the MLP, and
  the two attention matmuls (scores and weighted values)."""
  projections = 4 * 2 * tokens * hidden * hidden
  mlp = 2 * 2 * tokens * hidden * intermediate
  attention = 2 * 2 * tokens * tokens * hidden
  return layers * (projections + mlp + attention)


def forward_flops(model, batch_size: int) -> int:
  """Forward FLOPs of the hybrid for one batch (multiply-adds x 2; norms, softmax and biases left out)."""
  beit = model.beit_config
  patches = (beit.image_size // beit.patch_size) ** 2
  tokens = patches + 1
  flops = 2 * patches * beit.patch_size ** 2 * beit.num_channels * beit.hidden_size  # Patch projection.
  flops += _encoder_flops(tokens, beit.hidden_size, beit.intermediate_size, beit.num_hidden_layers)
  width = beit.hidden_size
  if model.bert_config is not None:
    bert = model.bert_config
    if bert.hidden_size != beit.hidden_size:
      flops += 2 * tokens * beit.hidden_size * bert.hidden_size  # Adapter.
    flops += _encoder_flops(tokens, bert.hidden_size, bert.intermediate_size, bert.num_hidden_layers)
    width = bert.hidden_size
  flops += 2 * width * model.num_classes  # Head.
  return batch_size * flops


def train_step_flops(model, batch_size: int) -> int:
  """Model FLOPs of one training step: forward + backward (2x forward: gradients of inputs and of weights)."""
  return 3 * forward_flops(model, batch_size)


def frozen_mask(pretrained) -> dict:
  """True on BERT encoder leaves that came from a checkpoint, except LayerNorms: what `freeze_bert` holds fixed
  (frozen-pretrained-transformer style: attention and MLP weights frozen; norms, BEiT, adapter and head train)."""
  def frozen(path, is_pretrained):
    names = [getattr(k, 'key', '') for k in path]
    return bool(is_pretrained) and names[0] == 'bert_encoder' and 'LayerNorm' not in names
  return jax.tree_util.tree_map_with_path(frozen, pretrained)


def from_config(config, num_classes: int, rng):
  """Builds the classifier a config describes and fills it with its pretrained weights.

  Returns:
    (model, params, pretrained, sources): the module, its parameters, the tree of which leaves came from a
    checkpoint, and `{'bert': {...}, 'beit': {...}}` saying which sides were pretrained and from where.
  """
  from cmtl_jax import backbones  # pylint: disable=g-import-not-at-top
  beit = backbones.load_beit(config.beit_path, fresh=config.beit.to_dict())
  bert = None
  if config.variant != 'beit':
    bert = backbones.load_bert(config.bert_path, config.bert_layers, pretrained=config.bert_pretrained)
  model = build(beit.config, bert.config if bert else None, num_classes, config.pooling, config.bridge_norm,
                dtype=jnp.dtype(config.dtype))
  # Shapes first: the checkpoints fill their subtrees, and only the rest is drawn at random.
  shapes = jax.eval_shape(lambda: init_params(model, rng))
  loaded, pretrained = load_pretrained(shapes, bert.params if bert else None, beit.params)
  params = init_params(model, rng, loaded, pretrained)
  sources = {'beit': beit.describe(), 'bert': bert.describe() if bert else None}
  return model, params, pretrained, sources
