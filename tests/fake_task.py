"""A task the engine trains in milliseconds, for orchestration tests (as scenic tests its trainer on a fake model):
a linear classifier on the pixels with dropout, behind the task interface of `cmtl_jax/task.py`.

Two fake tasks of different model specs are different tasks (their programs are not shared); `spec.beit` gives the
input shape, so the same digits images that the real hybrid reads go in.
"""

import jax
import jax.numpy as jnp



class FakeTask:
  """A linear classifier on `[h, w, c]` uint8 images scaled to [-1, 1] (the model spec's BEiT input, or the images
  as they come), with 10 % dropout on its inputs in training."""

  def __init__(self, spec=None, num_classes: int = 10, inputs: int = 64):
    self.spec = spec
    self.num_classes = num_classes
    self.inputs = inputs
    self.pretrained = {'dense': {'kernel': False, 'bias': False}}
    self.frozen = None

  @property
  def key(self):
    return ('fake', self.spec, self.num_classes, self.inputs)

  def __eq__(self, other):
    return isinstance(other, FakeTask) and self.key == other.key

  def __hash__(self):
    return hash(self.key)

  def init(self, rng):
    return {'dense': {'kernel': 0.01 * jax.random.normal(rng, (self.inputs, self.num_classes)),
                      'bias': jnp.zeros((self.num_classes,))}}

  def init_stacked(self, rngs):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[self.init(rng) for rng in rngs])

  def apply(self, params, images, train: bool = False, rng=None):
    x = images.reshape(images.shape[0], -1)[:, :self.inputs].astype(jnp.float32) / 127.5 - 1.0
    if train:
      x = jnp.where(jax.random.bernoulli(rng, 0.9, x.shape), x / 0.9, 0.0)
    return x @ params['dense']['kernel'] + params['dense']['bias']

  def activation_bytes(self, batch_size: int) -> int:
    return 4 * batch_size * self.inputs

  def train_step_flops(self, batch_size: int) -> int:
    return 6 * batch_size * self.inputs * self.num_classes

  def describe(self) -> dict:
    return {'fake': True}



