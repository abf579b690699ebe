"""A task the engine trains in milliseconds, for orchestration tests (as scenic tests its trainer on a fake model):
a linear classifier on the pixels with dropout, behind the task interface of `cmtl_jax/task.py`.

Fake tasks of any model spec are one task (they share compiled programs: orchestration tests of several arms compile
once); `tag` makes a different one.
"""

import jax
import jax.numpy as jnp



class FakeTask:
  """A linear classifier on the first `inputs` pixels of uint8 images scaled to [-1, 1]; in training its logits get
  noise drawn from the step's key."""

  def __init__(self, spec=None, num_classes: int = 10, inputs: int = 64, tag: str = ''):
    self.spec = spec
    self.tag = tag
    self.num_classes = num_classes
    self.inputs = inputs
    self.pretrained = {'dense': {'kernel': False, 'bias': False}}
    self.frozen = None
    self.layer_ids = ({'dense': {'kernel': 0, 'bias': 1}}, 2)  # The kernel one layer below the bias.

  @property
  def key(self):
    return ('fake', self.tag, self.num_classes, self.inputs)

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
    logits = x @ params['dense']['kernel'] + params['dense']['bias']
    if train:  # Noise from the step's key, so that every model's draws matter (cheaper to compile than dropout).
      logits = logits + 0.1 * jax.random.normal(rng, (self.num_classes,))
    return logits

  def activation_bytes(self, batch_size: int) -> int:
    return 4 * batch_size * self.inputs

  def train_step_flops(self, batch_size: int) -> int:
    return 6 * batch_size * self.inputs * self.num_classes

  def describe(self) -> dict:
    return {'fake': True}



