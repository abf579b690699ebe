"""The task the training core and the search engine train: a model as `init`, `apply` (preprocessing inside) and
its sizes, so that neither reads the hybrid's configs.

`ClassifierTask` is the hybrid (or BEiT alone) a `resolve.ModelSpec` describes, its checkpoint weights loaded once.
Tests train the same engine on a task that compiles in milliseconds (`tests/fake_task.py`), as scenic tests its
trainer on a fake model.

The interface (what `train.core`, `train.classification` and `search.engine` use):

  num_classes                      logits per example
  init(rng) -> params              one model's initial parameters (checkpoint subtrees placed)
  init_stacked(rngs) -> params     M models at once, leaves `[M, ...]`, model i = `init(rngs[i])`
  apply(params, images, train, rng) -> logits   uint8 images `[B, h, w, c]` -> float32 `[B, num_classes]`
  pretrained                       a tree like the params, True on leaves from a checkpoint (learning-rate factor)
  layer_ids                        (tree of int depths like the params, number of depths): layer-wise LR decay
  frozen                           a tree like the params, True on leaves that never change, or None
  activation_bytes(batch_size)     one model's training activations for one batch (memory planning)
  train_step_flops(batch_size)     model FLOPs of one training step (cost tables, MFU)
  describe()                       what results record about where the weights came from

A task is hashable by what it computes (`key`), so that equal tasks share compiled programs.
"""

import jax

from cmtl_jax import data
from cmtl_jax import prng
from cmtl_jax.models import build as model_lib


def classify(model, params, images, train: bool = False, rng=None):
  """Logits float32 `[B, num_classes]` of the hybrid `model` on uint8 images `[B, h, w, c]`, resized and normalised
  on the device (`data.preprocess`); with `train`, dropout and drop path draw from `rng` (keys from the fused
  threefry of `prng.unrolled`: the default keys' bits)."""
  beit = model.beit_config
  pixels = data.preprocess(images, beit.image_size, beit.num_channels)
  if not train:
    return model.apply({'params': params}, pixels, train=False)
  dropout_rng, droppath_rng = (prng.unrolled(k) for k in jax.random.split(rng))
  return model.apply({'params': params}, pixels, train=True, rngs={'dropout': dropout_rng, 'droppath': droppath_rng})


class ClassifierTask:
  """The classifier of `spec` (a `resolve.ModelSpec`) with `num_classes` outputs; its checkpoint weights are read
  when the task is made.

  Raises:
    ConfigError: weights that cannot be read or do not fit their config (`models.checkpoints`).
  """

  def __init__(self, spec, num_classes: int):
    self.spec = spec
    self.num_classes = num_classes
    self.model, self._loaded, self.pretrained, self.sources = model_lib.build_model(
        spec, num_classes, jax.random.key(0))
    self.frozen = model_lib.frozen_mask(self.pretrained) if spec.freeze_bert else None
    self.layer_ids = model_lib.layer_ids(self.pretrained)

  @property
  def key(self) -> tuple:
    return ('classifier', self.spec, self.num_classes)

  def __eq__(self, other):
    return isinstance(other, ClassifierTask) and self.key == other.key

  def __hash__(self):
    return hash(self.key)

  def init(self, rng):
    """One model's initial parameters: the checkpoint subtrees, the rest drawn from `rng`."""
    return model_lib.init_params(self.model, rng, self._loaded, self.pretrained)

  def init_stacked(self, rngs):
    """`len(rngs)` models' initial parameters, leaves `[M, ...]` (`models.build.init_stacked`)."""
    return model_lib.init_stacked(self.model, rngs, self._loaded, self.pretrained)

  def apply(self, params, images, train: bool = False, rng=None):
    return classify(self.model, params, images, train, rng)

  def activation_bytes(self, batch_size: int) -> int:
    return model_lib.activation_bytes(self.model, batch_size)

  def train_step_flops(self, batch_size: int) -> int:
    return model_lib.train_step_flops(self.model, batch_size)

  def describe(self) -> dict:
    return self.sources


def param_count(task) -> dict:
  """A task's parameters: `params_total`, `params_transferred` (from a checkpoint) and `params_trained` (not
  frozen)."""
  shapes = jax.eval_shape(lambda: task.init(jax.random.key(0)))
  sizes = [x.size for x in jax.tree.leaves(shapes)]
  frozen = task.frozen if task.frozen is not None else jax.tree.map(lambda _: False, task.pretrained)
  total = sum(sizes)
  return {'params_total': total,
          'params_transferred': sum(s for s, p in zip(sizes, jax.tree.leaves(task.pretrained)) if p),
          'params_trained': total - sum(s for s, f in zip(sizes, jax.tree.leaves(frozen)) if f)}
