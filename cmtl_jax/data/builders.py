"""TFDS builders for the offline image datasets (array_record files, read without TensorFlow).

- `Digits`: scikit-learn's 1,797 8x8 handwritten digits, shipped inside scikit-learn (the embedded default).
- `FashionMnistIdx`: Fashion-MNIST from the idx files of Debian's `dataset-fashion-mnist` package (its gzip files
  differ from the ones TFDS's own `fashion_mnist` checks, hence a builder of ours).
- `ImageFolder`: a user's folder of images, one sub-folder per class (`data/folder.py` lists and decodes it), one
  builder config per folder fingerprint, so a changed folder is prepared again.
All store images as uint8 `[H, W, C]` and use `skip_registration` so they never clash with TFDS's registry.
"""

import dataclasses
import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

from cmtl_jax.data import folder

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
FASHION_MNIST_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
FASHION_MNIST_CLASSES = ('t-shirt/top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker',
                         'bag', 'ankle boot')


def _image_features(shape, class_names):
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=shape, dtype=np.uint8),
      'label': tfds.features.ClassLabel(names=class_names),
  })


class Digits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """scikit-learn's digits; pixel values 0..16 are rescaled to 0..255 (round(v * 255 / 16))."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description='scikit-learn load_digits: 1,797 8x8 grayscale digits, 10 classes.',
        features=_image_features((8, 8, 1), [str(i) for i in range(10)]), supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    del dl_manager  # The data ships inside scikit-learn.
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for i, (image, label) in enumerate(zip(images, digits.target)):
      yield i, {'image': image, 'label': int(label)}


def read_idx(path: str) -> np.ndarray:
  """Reads a (gzipped) idx file of unsigned bytes into an array of its declared shape."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    data = f.read()
  if data[:2] != b'\x00\x00' or data[2] != 0x08:
    raise ValueError(f'{path} is not an idx file of unsigned bytes')
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def missing_fashion_mnist_files(directory: str):
  return [name for files in FASHION_MNIST_FILES.values() for name in files
          if not os.path.isfile(os.path.join(directory, name))]


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Fashion-MNIST (60k train / 10k test, 28x28, 10 classes) from idx files in the manual dir."""
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (f'apt-get install dataset-fashion-mnist (files land in {FASHION_MNIST_DIR}), '
                                  'or put the four idx .gz files in the manual dir.')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description='Fashion-MNIST read from idx files (Debian dataset-fashion-mnist).',
        features=_image_features((28, 28, 1), FASHION_MNIST_CLASSES), supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(dl_manager.manual_dir, *files)
            for split, files in FASHION_MNIST_FILES.items()}

  def _generate_examples(self, directory, images_file, labels_file):
    images = read_idx(os.path.join(directory, images_file))
    labels = read_idx(os.path.join(directory, labels_file))
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image[..., None], 'label': int(label)}


@dataclasses.dataclass(eq=False, repr=False)
class FolderConfig(tfds.core.BuilderConfig):
  """One folder at one decoding; `name` is the fingerprint of both (`folder.fingerprint`)."""
  listing: folder.Listing = None
  image_size: int = 16
  channels: int = 1
  resize: str = 'crop'
  on_bad_image: str = 'error'

  def __repr__(self):  # TFDS logs the config it was given: the folder, not every file of its listing.
    return f'FolderConfig({self.name}: {self.listing.root})'


class ImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A folder of images decoded by `folder.decode` to uint8 `[image_size, image_size, channels]`.

  Features: `image`, `label` (class names from the sub-folders) and `file` (the path relative to the folder).
  With `on_bad_image='skip'`, files that do not decode are left out and listed, with their reasons, in the
  prepared dataset's metadata (`info.metadata['skipped']`: `[[relative path, reason], ...]`); with 'error' the
  first one raises `folder.BadImageError`.
  """
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self, description=f'Images from the folder {c.listing.root}.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(c.image_size, c.image_size, c.channels), dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=c.listing.class_names),
            'file': tfds.features.Text(),
        }), supervised_keys=('image', 'label'), metadata=tfds.core.MetadataDict(skipped=[]))

  def _split_generators(self, dl_manager):
    del dl_manager  # The files are the user's folder.
    return {split: self._generate_examples(files) for split, files in self.builder_config.listing.files.items()}

  def _generate_examples(self, files):
    c = self.builder_config
    for relative, label in files:
      try:
        image = folder.decode(os.path.join(c.listing.root, relative), c.image_size, c.channels, c.resize)
      except folder.BadImageError as e:
        if c.on_bad_image == 'error':
          raise
        self.info.metadata['skipped'].append([relative, e.reason])
        continue
      yield relative, {'image': image, 'label': label, 'file': relative}
