"""A trained classifier on disk: an orbax checkpoint of its params plus the JSON metadata needed to rebuild it;
prediction on arrays, image files and folders, and the predictions CSV."""

import csv
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from cmtl_jax import data
from cmtl_jax import task as task_lib
from cmtl_jax.data import folder
from cmtl_jax.models import build as model_lib
from cmtl_jax.models.configs import BeitConfig, BertConfig
from cmtl_jax.train import classification
from cmtl_jax.errors import ConfigError, MissingPathError

CHECKPOINT_DIR = 'checkpoint'


def save(workdir: str, params, metadata: dict, step: int = 0) -> str:
  """Writes params and metadata (must hold `beit_config`, `bert_config`, `class_names`, `pooling`, `bridge_norm`;
  `dtype`, the compute dtype, defaults to float32; `decoding`, how image files are read for prediction) under
  `<workdir>/checkpoint/<step>`; returns that directory."""
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  with ocp.CheckpointManager(directory, item_names=('params', 'metadata')) as manager:
    manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                               metadata=ocp.args.JsonSave(metadata)), force=True)
    manager.wait_until_finished()
  return os.path.join(directory, str(step))


@dataclasses.dataclass
class Classifier:
  """A model with its trained parameters, ready to predict.

  Images given to `predict` / `predict_proba` follow `data.as_uint8_images`: `[H, W]`, `[N, H, W]` or
  `[N, H, W, C]`; uint8, integers in 0..255, or floats in [0, 1]; anything else raises ConfigError. C must be the
  model's channel count, or 1 for a 3-channel model (grey repeated). Image files are read by
  `read_images`, with the decoding and size the classifier was trained with.
  """
  model: model_lib.HybridClassifier
  params: dict
  metadata: dict
  _proba: object = dataclasses.field(default=None, init=False, repr=False)

  @property
  def class_names(self):
    return tuple(self.metadata['class_names'])

  @property
  def decoding(self) -> dict:
    """How image files are read for this classifier, as its training images were stored: `image_size`,
    `channels` (the saved `image_shape`; classifiers saved without one: BEiT's size and channels) and `resize`."""
    if 'decoding' in self.metadata:
      return dict(self.metadata['decoding'])
    beit = self.model.beit_config  # Classifiers saved by the flat-config versions.
    height, _, channels = self.metadata.get('image_shape') or (beit.image_size, None, beit.num_channels)
    return {'image_size': height, 'channels': channels,
            'resize': (self.metadata.get('config') or {}).get('resize', 'crop')}

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

  def _batch_proba(self):
    """The one compiled program: uint8 `[batch, H, W, C]` -> float32 probabilities `[batch, classes]`."""
    if self._proba is None:
      task = self.task

      def proba(params, images):
        return jax.nn.softmax(task.apply(params, images).astype(jnp.float32), axis=-1)

      self._proba = jax.jit(proba)
    return self._proba

  def predict_proba(self, images, batch_size: int = 256) -> np.ndarray:
    """Class probabilities, float32 `[N, num_classes]`, for images of any kind `data.as_uint8_images` takes.

    Runs in batches of `min(batch_size, N)` images (the last one padded), so one program is compiled per image
    shape and batch, not per call size. Raises ConfigError for images of another kind or channel count.
    """
    images = data.as_uint8_images(images)
    channels = self.model.beit_config.num_channels
    if images.shape[-1] not in (channels, 1):
      raise ConfigError(f'images have {images.shape[-1]} channel(s) but the classifier takes {channels}'
                        f'{" (or 1, repeated)" if channels == 3 else ""}.')
    proba = self._batch_proba()
    return data.map_batches(lambda batch: proba(self.params, batch), images, batch_size)

  def evaluate(self, dataset: data.Dataset, split: str = 'test', batch_size: int = 256) -> dict:
    """Scores on one split of `dataset` ('train', 'val' or 'test'): accuracy, macro f1 / precision / recall, and
    `per_class` lists by class index."""
    images, labels = data.stage(dataset)
    return classification.evaluate(self.task, self.params, images, labels, getattr(dataset, split), batch_size)

  @property
  def task(self):
    """The classifier as the training core sees it (`apply` with preprocessing inside)."""
    return _ModuleTask(self.model)

  def predict(self, images, batch_size: int = 256) -> np.ndarray:
    """Class indices, int `[N]`: the argmax of `predict_proba` (same images, same rules)."""
    return np.argmax(self.predict_proba(images, batch_size), axis=-1)

  def read_images(self, paths, on_bad_image: str = 'error'):
    """Image files and folders (read recursively with the folder dataset's rules) -> `(names, uint8 images
    [N, H, W, C], skipped)`, decoded as the training images were stored (`data.folder.decode` with `decoding`).

    Raises:
      ConfigError: a missing path, no image files, or (with `on_bad_image='error'`) a file that does not decode;
        with 'skip' such files are returned in `skipped` as `(path, reason)`.
    """
    d = self.decoding
    names, images, skipped = [], [], []
    for path in folder.image_files(paths):
      try:
        images.append(folder.decode(path, d['image_size'], d['channels'], d['resize']))
        names.append(path)
      except folder.BadImageError as e:
        if on_bad_image == 'error':
          raise
        skipped.append((path, e.reason))
    if not images:
      raise ConfigError(f'no image files ({", ".join(folder.EXTENSIONS)}) to predict in {", ".join(paths)}.')
    return names, np.stack(images), skipped

  def predict_paths(self, paths, batch_size: int = 256, on_bad_image: str = 'error'):
    """`(names [N], probabilities float32 [N, classes], skipped)` for `.npy` arrays (any kind
    `data.as_uint8_images` takes; images named `file[i]`), image files and folders, in the order given; the image
    files of all entries are read by `read_images` and predicted together (one program)."""
    names, chunks, files, skipped = [], [], [], []
    for path in paths:
      if path.endswith('.npy') and os.path.isfile(path):
        images = data.as_uint8_images(np.load(path), path)
        names += [f'{path}[{i}]' for i in range(len(images))]
        chunks.append(self.predict_proba(images, batch_size))
      else:
        files.append(path)
    if files:
      file_names, images, skipped = self.read_images(files, on_bad_image)
      names += file_names
      chunks.append(self.predict_proba(images, batch_size))
    return names, np.concatenate(chunks), skipped


class _ModuleTask:
  """A saved classifier's module as a task for scoring (`apply` only)."""

  def __init__(self, model):
    self.model = model
    self.num_classes = model.num_classes

  def apply(self, params, images, train: bool = False, rng=None):
    return task_lib.classify(self.model, params, images, train, rng)


def write_predictions(path: str, names, probabilities, class_names) -> None:
  """A CSV with one row per image: `file`, `class_index`, `class_name` (the most probable class), then
  `p_<class name>` for every class (probabilities, 6 significant digits)."""
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['file', 'class_index', 'class_name'] + [f'p_{name}' for name in class_names])
    for name, p in zip(names, probabilities):
      label = int(np.argmax(p))
      writer.writerow([name, label, class_names[label]] + [f'{v:.6g}' for v in p])
