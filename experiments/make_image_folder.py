"""Writes an example image folder from an offline source, as a user's folder would look: one sub-folder per class,
files of mixed formats, sizes and modes.

  python -m experiments.make_image_folder --out=/tmp/fashion_folder

Fashion-MNIST from Debian's idx files (`apt-get install dataset-fashion-mnist`): `--per_class` training images and
`--test_per_class` test images per class, taken in file order from the official train and test splits, as
`OUT/train/<class>/<n>.<ext>` and `OUT/test/<class>/<n>.<ext>`. The images cycle through four kinds, so that every
folder mixes them: 28 px greyscale PNG; 42 px RGB JPEG (quality 95); 56 px RGBA PNG (opaque); 35 px palette GIF.
`--source=digits` writes scikit-learn's 8x8 digits the same way (no test folder: a test split is cut from them).
`--classes=5` keeps the first 5 classes (the recipe's measurement: `experiments/configs/folder.py`).
"""

import os

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from cmtl_jax.data import builders

_OUT = flags.DEFINE_string('out', None, 'The folder to write (must not exist).', required=True)
_SOURCE = flags.DEFINE_enum('source', 'fashion_mnist', ['fashion_mnist', 'digits'], 'Where the images come from.')
_PER_CLASS = flags.DEFINE_integer('per_class', 200, 'Training images per class.')
_TEST_PER_CLASS = flags.DEFINE_integer('test_per_class', 100, 'Test images per class (fashion_mnist).')
_CLASSES = flags.DEFINE_integer('classes', 0, 'Write only the first this many classes (0 = all 10).')


def _kinds(image: np.ndarray):
  """The four kinds of file, cycled: (extension, PIL image) of a uint8 `[H, W]` grey image."""
  grey = Image.fromarray(image, 'L')
  h = image.shape[0]
  return [('png', grey),
          ('jpg', grey.resize((h * 3 // 2,) * 2, Image.Resampling.BILINEAR).convert('RGB')),
          ('png', grey.resize((h * 2,) * 2, Image.Resampling.BILINEAR).convert('RGBA')),
          ('gif', grey.resize((h * 5 // 4,) * 2, Image.Resampling.BILINEAR).convert('P'))]


def write_folder(out: str, images: np.ndarray, labels: np.ndarray, class_names, per_class: int) -> int:
  """Writes the first `per_class` images of each class under `out/<class>/`; returns how many."""
  written = 0
  for label, name in enumerate(class_names):
    if _CLASSES.value and label >= _CLASSES.value:
      break
    directory = os.path.join(out, name.replace('/', '_').replace(' ', '_'))
    os.makedirs(directory)
    for n, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
      ext, image = _kinds(images[index])[n % 4]
      image.save(os.path.join(directory, f'{n:04d}.{ext}'), **({'quality': 95} if ext == 'jpg' else {}))
      written += 1
  return written


def main(argv):
  del argv
  if os.path.exists(_OUT.value):
    raise app.UsageError(f'{_OUT.value} exists: choose a new --out.')
  if _SOURCE.value == 'digits':
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    n = write_folder(_OUT.value, images, digits.target, [str(i) for i in range(10)], _PER_CLASS.value)
  else:
    n = 0
    for split, per_class in (('train', _PER_CLASS.value), ('test', _TEST_PER_CLASS.value)):
      images_file, labels_file = builders.FASHION_MNIST_FILES[split]
      images = builders.read_idx(os.path.join(builders.FASHION_MNIST_DIR, images_file))
      labels = builders.read_idx(os.path.join(builders.FASHION_MNIST_DIR, labels_file))
      n += write_folder(os.path.join(_OUT.value, split), images, labels, builders.FASHION_MNIST_CLASSES, per_class)
  print(f'wrote {n} images under {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
