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

from cmtl_jax import devices
from cmtl_jax.data import folder
from cmtl_jax.data import folds
from cmtl_jax.errors import ConfigError, MissingPathError

BUILTIN = ('digits', 'fashion_mnist')  # Our TFDS builders (cmtl_jax/data/builders.py).
FOLDER = 'folder'  # A user's folder of images (data_dir), one sub-folder per class (cmtl_jax/data/folder.py).
SYNTHETIC = 'synthetic'  # Random images of digits' shape, for benchmarks where no dataset can be read.


def as_uint8_images(images, what: str = 'images') -> np.ndarray:
  """Images of any array kind -> uint8 `[N, H, W, C]`, the one rule for training data and prediction.

  Shapes: `[H, W]` is one grey image, `[N, H, W]` N grey images, `[N, H, W, C]` as it is. Values: uint8 as they
  are; other integers (int64 from a Python list, uint16, ...) when every value lies in 0..255; floats when every
  value lies in [0, 1], scaled by 255 and rounded. Anything else (floats outside [0, 1] or NaN, integers outside
  0..255, bool, complex, other shapes) raises ConfigError naming `what`, instead of being wrapped or cast to
  zeros.
  """
  images = np.asarray(images)
  if images.ndim == 2:
    images = images[None, ..., None]
  elif images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or not images.size:
    raise ConfigError(f'{what}: expected an image [H, W], or images [N, H, W] or [N, H, W, C], got an array of '
                      f'shape {images.shape}.')
  kind = images.dtype.kind
  if images.dtype == np.uint8:
    return images
  if kind in 'iu':
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
      raise ConfigError(f'{what}: {images.dtype} pixel values must lie in 0..255, got {low}..{high}: scale them to '
                        f'8 bits (16-bit images: value // 257) or to floats in [0, 1].')
    return images.astype(np.uint8)
  if kind == 'f':
    low, high = float(np.min(images)), float(np.max(images))
    if not (0.0 <= low and high <= 1.0):  # NaN fails both comparisons.
      raise ConfigError(f'{what}: float images must lie in [0, 1] (they are scaled by 255), got {low:g}..{high:g}: '
                        f'divide by their maximum (255 for 8-bit values) first.')
    return np.round(images.astype(np.float64) * 255.0).astype(np.uint8)
  raise ConfigError(f'{what}: images of dtype {images.dtype} are not supported: give uint8 (0..255) or floats in '
                    f'[0, 1].')


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
  skipped: tuple = ()

  def __post_init__(self):
    self.images = as_uint8_images(self.images, f'{self.name} images')

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def pool(self) -> np.ndarray:
    """The training pool: every index outside the held-out test split (train + val), sorted."""
    return np.sort(np.concatenate([self.train, self.val]))


def _read_split(builder, split: str, image_key: str, label_key: str):
  source = builder.as_data_source(split=split)
  examples = source.__getitems__(range(len(source)))
  images = as_uint8_images(np.stack([np.asarray(e[image_key]) for e in examples]), f'{builder.name} images')
  labels = np.asarray([e[label_key] for e in examples], np.int32)
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
                               f'`apt-get install dataset-fashion-mnist` or set --config.data.manual_dir.')
      download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder = cls(data_dir=data_dir, file_format='array_record')
    builder.download_and_prepare(download_config=download_config)
    return builder
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # TFDS raises several types (DatasetNotFoundError, ...) for a bad name.
    raise ConfigError(f'unknown dataset {name!r}: use digits, fashion_mnist, folder (with --config.data.data_dir=PATH), '
                      f'or the name of a TFDS dataset prepared as array_record ({e.__class__.__name__}).') from None
  if not builder.is_prepared():
    raise ConfigError(f'TFDS dataset {name!r} is not prepared in {builder.data_dir_root!r}: run `tfds build {name} '
                      f'--file_format=array_record` (or pass --config.data.data_dir).')
  return builder


def _folder_builder(listing, prepared_dir: str, image_size: int, channels: int, resize: str, on_bad_image: str):
  """Prepares (once per folder fingerprint) and returns the ImageFolder builder of `listing`."""
  from cmtl_jax.data import builders  # pylint: disable=g-import-not-at-top
  settings = (image_size, channels, resize, on_bad_image)
  config = builders.FolderConfig(name=folder.fingerprint(listing, *settings), version='1.0.0', listing=listing,
                                 image_size=image_size, channels=channels, resize=resize, on_bad_image=on_bad_image)
  builder = builders.ImageFolder(config=config, data_dir=os.path.expanduser(prepared_dir) if prepared_dir else None,
                                 file_format='array_record')
  if not builder.is_prepared():
    _check_tfds_buffer(listing, image_size * image_size * channels)
    builder.download_and_prepare()
  return builder


def _check_tfds_buffer(listing, image_bytes: int) -> None:
  """TFDS writes a split through an in-memory buffer of 1000 MiB and spills beyond it with `tf.io.gfile`, which
  needs TensorFlow: without it, a split that large would fail deep inside TFDS after decoding up to 1000 MiB."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec('tensorflow'):
    return
  for split, files in listing.files.items():
    size = sum(image_bytes + len(relative.encode()) + 64 for relative, _ in files)  # 64: the record's framing.
    if size > shuffle.MAX_MEM_BUFFER_SIZE:
      raise ConfigError(f'preparing the {split} split of {listing.root} ({len(files)} images of {image_bytes} bytes, '
                        f'{_bytes(size)}) passes TFDS\'s {_bytes(shuffle.MAX_MEM_BUFFER_SIZE)} write buffer, beyond '
                        f'which TFDS needs TensorFlow: lower --config.data.image_size, or pip install tensorflow-cpu.')


def _bytes(n: float) -> str:
  for unit, size in (('GiB', 2**30), ('MiB', 2**20), ('KiB', 2**10)):
    if n >= size:
      return f'{n / size:.{2 if unit == "GiB" else 1}f} {unit}'
  return f'{n} bytes'


def check_memory(num_images: int, shape, fraction: float) -> None:
  """Raises ConfigError when `num_images` uint8 images of `shape` `(H, W, C)` (all of a dataset's images are
  staged on the device) take more than `fraction` of the device's memory (`device_memory_bytes`)."""
  needed = int(num_images) * int(np.prod(shape))
  available = devices.device_memory_bytes()
  if needed > fraction * available:
    raise ConfigError(
        f'the staged dataset needs {_bytes(needed)} ({num_images} images x {" x ".join(map(str, shape))} bytes), '
        f'more than data.memory_fraction={fraction:g} of the device\'s {_bytes(available)}: lower '
        f'--config.data.image_size (or model.beit.image_size) or --config.data.train_per_class, or raise '
        f'--config.data.memory_fraction.')


def _folder_estimate(listing, test_fraction: float, train_per_class: int) -> int:
  """Images a folder dataset will stage: all of them, or with `train_per_class` at most that many per class in
  the training pool plus the test split (cut from each class, rounded up, when the folder gives none)."""
  counts = listing.counts('train')
  if not train_per_class:
    return int(counts.sum()) + len(listing.files.get('test', ()))
  if 'test' in listing.files:
    return int(np.minimum(counts, train_per_class).sum()) + len(listing.files['test'])
  return int(np.minimum(counts, train_per_class + np.ceil(counts * test_fraction)).sum())


def _subsample_per_class(indices, labels, per_class: int, rng):
  keep = [rng.permutation(indices[labels[indices] == c])[:per_class] for c in np.unique(labels[indices])]
  return np.sort(np.concatenate(keep))


def load(name: str, *, data_dir: str = '', manual_dir: str = '', image_key: str = 'image',
         label_key: str = 'label', test_fraction: float = 0.2, val_fraction: float = 0.1, split_seed: int = 0,
         train_per_class: int = 0, image_size: int = 16, channels: int = 1, resize: str = 'crop',
         on_bad_image: str = 'error', prepared_dir: str = '', min_per_class: int = 0,
         memory_fraction: float = 0.5) -> Dataset:
  """Prepares (once) and reads a dataset, then splits it.

  A dataset with a 'test' split keeps it as the held-out test set; otherwise `test_fraction` of the examples are
  held out, stratified by class, with `split_seed`. `val_fraction` of the remaining training examples form the
  (stratified) validation set; `val_fraction=0` makes none (cross-validation cuts folds from the whole pool).
  `train_per_class` > 0 first keeps at most that many images per class of the training pool (train +
  validation), as a low-data regime; the images no split uses are then dropped.

  `name='folder'` reads the image folder `data_dir` (`data/folder.py`): decoded to `[image_size, image_size,
  channels]` by `resize`, prepared as array_record under `prepared_dir` (`''` = ~/tensorflow_datasets) once per
  fingerprint of its files and these settings; `on_bad_image` 'error' raises on the first file that does not
  decode, 'skip' leaves such files out (`Dataset.skipped`); every class needs `min_per_class` images.

  Raises:
    ConfigError: an unknown or unprepared dataset, a bad folder (see `folder.list_folder`), a bad image file, too
      few images per class, or images needing more than `memory_fraction` of the device's memory (checked
      before a folder is decoded and again before returning, so before anything is staged).
  """
  skipped = ()
  if name == SYNTHETIC:
    images, labels = synthetic_images(split_seed)
    class_names, splits = tuple(str(c) for c in range(10)), ()
  else:
    if name == FOLDER:
      listing = folder.list_folder(data_dir)
      if min_per_class:
        folder.check_class_sizes(listing, min_per_class, f'cv={min_per_class} folds')
      check_memory(_folder_estimate(listing, test_fraction, train_per_class), (image_size, image_size, channels),
                   memory_fraction)
      builder = _folder_builder(listing, prepared_dir, image_size, channels, resize, on_bad_image)
      skipped = tuple(tuple(entry) for entry in builder.info.metadata.get('skipped', ()))
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
  if name == FOLDER and skipped:
    empty = [c for c, n in zip(class_names, np.bincount(labels[all_train], minlength=len(class_names))) if not n]
    if empty:
      raise ConfigError(f'class {empty[0]!r} has no readable training images in {data_dir} ({len(skipped)} '
                        f'file(s) skipped as bad): fix or replace them.')
  if train_per_class:
    all_train = _subsample_per_class(all_train, labels, train_per_class, np.random.default_rng(split_seed))
  if val_fraction:
    train, val = folds.stratified_split(labels, all_train, val_fraction, split_seed, 'val_fraction')
  else:  # Cross-validation cuts its own folds from the whole training pool.
    train, val = all_train, np.zeros(0, np.int32)
  train, val, test = np.sort(train), np.sort(val), np.sort(test)
  if train_per_class:  # Stage only the images a split uses; the order is kept, so results do not change.
    used = np.sort(np.concatenate([train, val, test]))
    images, labels = images[used], labels[used]
    train, val, test = (np.searchsorted(used, idx) for idx in (train, val, test))
  check_memory(len(images), images.shape[1:], memory_fraction)
  return Dataset(images, labels, class_names, train.astype(np.int32), val.astype(np.int32), test.astype(np.int32),
                 name, skipped)


def load_dataset(spec, validation: bool = True, min_per_class: int = 0) -> Dataset:
  """The dataset a `resolve.DataSpec` names, split into train / val / held-out test; `validation=False` leaves the
  whole training pool in `train` (cross-validation cuts its own folds: a folder's classes then need
  `min_per_class` images, the folds)."""
  return load(spec.dataset, data_dir=spec.data_dir, manual_dir=spec.manual_dir, image_key=spec.image_key,
              label_key=spec.label_key, test_fraction=spec.test_fraction,
              val_fraction=spec.val_fraction if validation else 0.0, split_seed=spec.split_seed,
              train_per_class=spec.train_per_class, image_size=spec.image_size, channels=spec.channels,
              resize=spec.resize, on_bad_image=spec.on_bad_image, prepared_dir=spec.prepared_dir,
              min_per_class=min_per_class, memory_fraction=spec.memory_fraction)


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


def map_batches(fn, images: np.ndarray, batch_size: int) -> np.ndarray:
  """`fn` (a jitted function of `[batch, ...]` images) over `images` `[N, ...]` in batches of `min(batch_size, N)`,
  the last one padded with zeros, so one program is compiled per image shape and batch, not per call size; its
  outputs `[batch, ...]` concatenated as numpy, `[N, ...]`."""
  n = images.shape[0]
  batch = min(batch_size, n)
  padded = np.concatenate([images, np.zeros((-n % batch,) + images.shape[1:], images.dtype)])
  return np.concatenate([np.asarray(fn(padded[i:i + batch])) for i in range(0, len(padded), batch)])[:n]


def check_channels(dataset: Dataset, num_channels: int, gray_to_rgb: bool) -> None:
  channels = dataset.images.shape[-1]
  if channels == num_channels or (gray_to_rgb and channels == 1 and num_channels == 3):
    return
  hint = ' or --config.data.gray_to_rgb=True' if channels == 1 and num_channels == 3 else ''
  raise ConfigError(f'{dataset.name} images have {channels} channel(s) but BEiT expects {num_channels}: set '
                    f'--config.model.beit.num_channels={channels} for a fresh BEiT{hint}.')


def stage(dataset: Dataset, device: Optional[jax.Device] = None):
  """Puts all images (uint8) and labels on the device once: `(images [N, H, W, C], labels [N])`."""
  return jax.device_put(dataset.images, device), jax.device_put(dataset.labels, device)
