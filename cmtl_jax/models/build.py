"""The hybrid's parameters: random init (only of the subtrees no checkpoint fills), where checkpoint weights are
placed, what `freeze_bert` holds fixed, and the model's FLOPs. The modules are `models/` (`models.hybrid`).
"""

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax.errors import ConfigError
from cmtl_jax.models.hybrid import HybridClassifier, build  # pylint: disable=unused-import  (the public names)


# Init programs by model and skipped subtrees: a fresh `jax.jit` per call would trace, lower and compile again (the
# init of even a tiny hybrid takes seconds to compile on a CPU: every leaf draws its own random numbers).
_INIT_PROGRAMS = {}
_INIT_PROGRAMS_KEPT = 16


def _identity(model) -> tuple:
  """The fields that make two models build the same programs (configs are frozen dataclasses: their repr is their
  value)."""
  return tuple((name, repr(getattr(model, name))) for name in model.__dataclass_fields__
               if name not in ('parent', 'name'))


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
  """Initial parameters of `model`: random ones from `rng`; with `loaded` and `pretrained` (as `build_model` or
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
    bert_params / beit_params: `checkpoints.Checkpoint.params` trees (`embeddings`, `encoder`, ...), or None for a
      side that stays fresh.

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


def layer_ids(params) -> tuple:
  """Each leaf's depth for layer-wise learning-rate decay, BEiT's rule (Bao et al. 2021, `get_layer_id_for_vit` in
  unilm/beit) continued through the hybrid: BEiT's embeddings 0, BEiT layer i i + 1; then, in the hybrid, the
  bridge (adapter and its norm) one layer of its own, L_beit + 1, and BERT layer j L_beit + 2 + j; everything on
  top (pooling norm, head, BEiT's shared relative position bias as BEiT places it) the last id.

  Args:
    params: a classifier's parameter tree (or its shapes).

  Returns:
    (ids, num_layers): a tree like `params` of int ids, and the number of ids (the last is num_layers - 1). A
    leaf's LR scale is decay ** (num_layers - 1 - id) (`optim.layer_scales`).
  """
  beit_layers = len(params['beit_encoder']['layer'])
  bert_layers = len(params['bert_encoder']['layer']) if 'bert_encoder' in params else 0
  bridge = beit_layers + 1 if 'bert_encoder' in params else None
  num_layers = beit_layers + 2 + (bert_layers + 1 if bridge else 0)

  def layer_id(path, _):
    names = [str(getattr(k, 'key', '')) for k in path]
    if names[0] == 'beit_embeddings':
      return 0
    if names[0] == 'beit_encoder' and names[1] == 'layer':
      return int(names[2]) + 1
    if names[0] in ('adapter', 'adapter_norm'):
      return bridge
    if names[0] == 'bert_encoder':
      return bridge + 1 + int(names[2])
    return num_layers - 1

  return jax.tree_util.tree_map_with_path(layer_id, params), num_layers


def activation_bytes(model, batch_size: int) -> int:
  """A rough upper estimate of one model's training activations for one batch (float32, kept for the backward
  pass): per layer and token ~12 hidden-wide vectors and 2 intermediate-wide ones, plus 2 attention maps."""
  beit = model.beit_config
  tokens = (beit.image_size // beit.patch_size) ** 2 + 1
  layers = [(beit.hidden_size, beit.intermediate_size, beit.num_attention_heads)] * beit.num_hidden_layers
  if model.bert_config is not None:
    bert = model.bert_config
    layers += [(bert.hidden_size, bert.intermediate_size, bert.num_attention_heads)] * bert.num_hidden_layers
  per_example = sum(tokens * (12 * h + 2 * i) + 2 * heads * tokens ** 2 for h, i, heads in layers)
  return 4 * batch_size * per_example


def build_model(spec, num_classes: int, rng):
  """Builds the classifier a `resolve.ModelSpec` describes and fills it with its pretrained weights.

  Returns:
    (model, params, pretrained, sources): the module, its parameters, the tree of which leaves came from a
    checkpoint, and `{'bert': {...}, 'beit': {...}}` saying which sides were pretrained and from where.

  Raises:
    ConfigError: weights that cannot be read or do not fit (`checkpoints.load_params`).
  """
  from cmtl_jax.models import checkpoints  # pylint: disable=g-import-not-at-top
  beit = checkpoints.load_beit(spec.beit_path, spec.beit, pretrained=spec.beit_pretrained)
  bert = None
  if spec.bert is not None:
    bert = checkpoints.load_bert(spec.bert_path, spec.bert, pretrained=spec.bert_pretrained)
  model = build(spec.beit, spec.bert, num_classes, spec.pooling, spec.bridge_norm, dtype=jnp.dtype(spec.dtype))
  # Shapes first: the checkpoints fill their subtrees, and only the rest is drawn at random.
  shapes = jax.eval_shape(lambda: init_params(model, rng))
  loaded, pretrained = load_pretrained(shapes, bert.params if bert else None, beit.params)
  params = init_params(model, rng, loaded, pretrained)
  sources = {'beit': beit.describe(), 'bert': bert.describe() if bert else None}
  return model, params, pretrained, sources
