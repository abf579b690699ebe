"""Datasets as device-resident arrays, stratified splits, and on-device preprocessing to BEiT's input.

The datasets here are small: every image is staged on the device once as uint8, and batches are gathered by index
inside the compiled step. `preprocess` turns a gathered batch into BEiT pixels.
"""

import dataclasses
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax.data import folds
from cmtl_jax.errors import ConfigError, MissingPathError

BUILTIN = ('digits', 'fashion_mnist')  # Our TFDS builders (cmtl_jax/data/builders.py).
SYNTHETIC = 'synthetic'  # Random images of digits' shape, for benchmarks where no dataset can be read.


def synthetic_images(seed: int = 0, num_examples: int = 1797, size: int = 8, num_classes: int = 10,
                     channels: int = 1):
  """Random uint8 images `[N, size, size, channels]` and balanced labels `[N]` (digits' shape by default): timing
  only, nothing to learn."""
  rng = np.random.RandomState(seed)
  images = rng.randint(0, 256, (num_examples, size, size, channels)).astype(np.uint8)
  return images, (np.arange(num_examples) % num_classes).astype(np.int32)


@dataclasses.dataclass
class Dataset:
  """All images of a dataset and its split into train / validation / held-out test indices.

  Attributes:
    images: uint8 `[N, H, W, C]`.
    labels: int32 `[N]`.
    class_names: one name per class.
    train, val, test: int32 index arrays into images; disjoint. `test` is never used for training or selection.
    name: the dataset's name.
  """
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  name: str

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _read_split(builder, split: str, image_key: str, label_key: str):
  source = builder.as_data_source(split=split)
  examples = source.__getitems__(range(len(source)))
  images = np.stack([np.asarray(e[image_key]) for e in examples])
  labels = np.asarray([e[label_key] for e in examples], np.int32)
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8:
    raise ConfigError(f'{builder.name}: images must be uint8, got {images.dtype}.')
  return images, labels


def _builder(name: str, data_dir: str, manual_dir: str):
  # TFDS is imported when a dataset is read, so that the rest of the library (models, the grid on arrays one
  # builds, the benchmark) works where tensorflow-datasets is not installed.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from cmtl_jax.data import builders  # pylint: disable=g-import-not-at-top
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  if name in BUILTIN:
    cls = {'digits': builders.Digits, 'fashion_mnist': builders.FashionMnistIdx}[name]
    download_config = None
    if cls is builders.FashionMnistIdx:
      manual_dir = manual_dir or builders.FASHION_MNIST_DIR
      missing = builders.missing_fashion_mnist_files(manual_dir)
      if missing:
        raise MissingPathError(f'Fashion-MNIST idx files not found in {manual_dir!r} ({", ".join(missing)}): run '
                               f'`apt-get install dataset-fashion-mnist` or set --config.manual_dir.')
      download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder = cls(data_dir=data_dir, file_format='array_record')
    builder.download_and_prepare(download_config=download_config)
    return builder
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # TFDS raises several types (DatasetNotFoundError, ...) for a bad name.
    raise ConfigError(f'unknown dataset {name!r}: use digits, fashion_mnist, or the name of a TFDS dataset '
                      f'prepared as array_record ({e.__class__.__name__}).') from None
  if not builder.is_prepared():
    raise ConfigError(f'TFDS dataset {name!r} is not prepared in {builder.data_dir_root!r}: run `tfds build {name} '
                      f'--file_format=array_record` (or pass --config.data_dir).')
  return builder


def _subsample_per_class(indices, labels, per_class: int, rng):
  keep = [rng.permutation(indices[labels[indices] == c])[:per_class] for c in np.unique(labels[indices])]
  return np.sort(np.concatenate(keep))


def load(name: str, *, data_dir: str = '', manual_dir: str = '', image_key: str = 'image',
         label_key: str = 'label', test_fraction: float = 0.2, val_fraction: float = 0.1, split_seed: int = 0,
         train_per_class: int = 0) -> Dataset:
  """Prepares (once) and reads a dataset, then splits it.

  A dataset with a 'test' split keeps it as the held-out test set; otherwise `test_fraction` of the examples are
  held out, stratified by class, with `split_seed`. `val_fraction` of the remaining training examples form the
  (stratified) validation set; `val_fraction=0` makes none (cross-validation cuts folds from the whole pool).
  `train_per_class` > 0 first keeps at most that many images per class of the training pool (train +
  validation), as a low-data regime.
  """
  if name == SYNTHETIC:
    images, labels = synthetic_images(split_seed)
    class_names, splits = tuple(str(c) for c in range(10)), ()
  else:
    builder = _builder(name, data_dir, manual_dir)
    splits = builder.info.splits
    class_names = tuple(builder.info.features[label_key].names)
    images, labels = _read_split(builder, 'train', image_key, label_key)
  all_train = np.arange(len(labels))
  if 'test' in splits:
    test_images, test_labels = _read_split(builder, 'test', image_key, label_key)
    test = np.arange(len(labels), len(labels) + len(test_labels))
    images = np.concatenate([images, test_images])
    labels = np.concatenate([labels, test_labels])
  else:
    all_train, test = folds.stratified_split(labels, all_train, test_fraction, split_seed, 'test_fraction')
  if train_per_class:
    all_train = _subsample_per_class(all_train, labels, train_per_class, np.random.default_rng(split_seed))
  if val_fraction:
    train, val = folds.stratified_split(labels, all_train, val_fraction, split_seed, 'val_fraction')
  else:  # Cross-validation cuts its own folds from the whole training pool.
    train, val = all_train, np.zeros(0, np.int32)
  return Dataset(images, labels, class_names, np.sort(train).astype(np.int32), np.sort(val).astype(np.int32),
                 np.sort(test).astype(np.int32), name)


def load_dataset(config, validation: bool = True) -> Dataset:
  """The dataset a config names, split into train / val / held-out test; `validation=False` leaves the whole
  training pool in `train` (cross-validation cuts its own folds)."""
  return load(config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir, image_key=config.image_key,
              label_key=config.label_key, test_fraction=config.test_fraction,
              val_fraction=config.val_fraction if validation else 0.0, split_seed=config.split_seed,
              train_per_class=config.train_per_class)


def preprocess(images, image_size: int, num_channels: int):
  """uint8 `[batch, h, w, c]` -> float32 `[batch, image_size, image_size, num_channels]` in [-1, 1].

  Resizes bilinearly (antialiased when shrinking) and maps [0, 255] to [-1, 1], BEiT's mean 0.5 / std 0.5. The
  constants are fixed, so no statistic is computed from any split. A single channel is repeated when BEiT wants 3.
  """
  x = images.astype(jnp.float32) / 255.0
  batch, height, width, channels = x.shape
  if (height, width) != (image_size, image_size):
    x = jax.image.resize(x, (batch, image_size, image_size, channels), 'bilinear', antialias=True)
  if channels != num_channels:
    x = jnp.repeat(x, num_channels, axis=-1)
  return (x - 0.5) / 0.5


def check_channels(dataset: Dataset, num_channels: int, gray_to_rgb: bool) -> None:
  channels = dataset.images.shape[-1]
  if channels == num_channels or (gray_to_rgb and channels == 1 and num_channels == 3):
    return
  hint = ' or --config.gray_to_rgb=True' if channels == 1 and num_channels == 3 else ''
  raise ConfigError(f'{dataset.name} images have {channels} channel(s) but BEiT expects {num_channels}: set '
                    f'--config.beit.num_channels={channels} for a fresh BEiT{hint}.')


def stage(dataset: Dataset, device: Optional[jax.Device] = None):
  """Puts all images (uint8) and labels on the device once: `(images [N, H, W, C], labels [N])`."""
  return jax.device_put(dataset.images, device), jax.device_put(dataset.labels, device)
