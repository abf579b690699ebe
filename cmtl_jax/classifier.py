"""A trained classifier on disk: an orbax checkpoint of its params plus the JSON metadata needed to rebuild it."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from cmtl_jax import train
from cmtl_jax.models import build as model_lib
from cmtl_jax.models.configs import BeitConfig, BertConfig
from cmtl_jax.errors import MissingPathError

CHECKPOINT_DIR = 'checkpoint'


def save(workdir: str, params, metadata: dict, step: int = 0) -> str:
  """Writes params and metadata (must hold `beit_config`, `bert_config`, `class_names`, `pooling`, `bridge_norm`;
  `dtype`, the compute dtype, defaults to float32) under `<workdir>/checkpoint/<step>`; returns that directory."""
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  with ocp.CheckpointManager(directory, item_names=('params', 'metadata')) as manager:
    manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                               metadata=ocp.args.JsonSave(metadata)), force=True)
    manager.wait_until_finished()
  return os.path.join(directory, str(step))


@dataclasses.dataclass
class Classifier:
  """A model with its trained parameters, ready to predict."""
  model: model_lib.HybridClassifier
  params: dict
  metadata: dict

  @property
  def class_names(self):
    return tuple(self.metadata['class_names'])

  @classmethod
  def load(cls, workdir: str) -> 'Classifier':
    """Rebuilds the classifier saved by `train_and_evaluate` in `workdir` (no hub or weights files needed)."""
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    if not os.path.isdir(directory):
      raise MissingPathError(f'no saved classifier in {workdir!r}: expected {directory}; train one with '
                             f'`python -m experiments.train --workdir={workdir}`.')
    with ocp.CheckpointManager(directory, item_names=('params', 'metadata')) as manager:
      step = manager.latest_step()
      metadata = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())).metadata
      # The config dicts read back whatever wrote them (our configs, or transformers' of older classifiers).
      beit_config = BeitConfig.from_dict(metadata['beit_config'])
      bert_config = BertConfig.from_dict(metadata['bert_config']) if metadata['bert_config'] else None
      model = model_lib.build(beit_config, bert_config, len(metadata['class_names']), metadata['pooling'],
                              metadata['bridge_norm'], jnp.dtype(metadata.get('dtype', 'float32')))
      abstract = jax.eval_shape(lambda: model_lib.init_params(model, jax.random.key(0)))
      params = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract))).params
    return cls(model, params, metadata)

  def predict(self, images, batch_size: int = 256) -> np.ndarray:
    """Class indices `[N]` for uint8 images `[N, H, W, C]` or `[N, H, W]` (resized like the training images)."""
    images = np.asarray(images, np.uint8)
    if images.ndim == 3:
      images = images[..., None]
    predict = jax.jit(train.make_predict(self.model, batch_size=batch_size))
    predictions, _ = predict(self.params, jnp.asarray(images), jnp.arange(images.shape[0], dtype=jnp.int32))
    return np.asarray(predictions)
