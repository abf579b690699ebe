"""Predicts class labels with a classifier saved by experiments.train.

  python -m experiments.predict --workdir=/tmp/cmtl_digits --images=images.npy [more.png ...]

Each --images entry is a .npy array of uint8 images (`[N, H, W]` or `[N, H, W, C]`) or an image file (PNG, JPEG)
read in grayscale or RGB to match the model. Prints one `<source>\t<class index>\t<class name>` line per image.
"""

import os

from absl import app
from absl import flags
import numpy as np

import cmtl_jax
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a trained classifier.', required=True)
_IMAGES = flags.DEFINE_list('images', None, '.npy arrays or image files.', required=True)


def _read(path: str, channels: int):
  if not os.path.isfile(path):
    raise cmtl_jax.MissingPathError(f'image file {path!r} does not exist.')
  if path.endswith('.npy'):
    images = np.load(path)
    return [f'{path}[{i}]' for i in range(len(images))], images
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(Image.open(path).convert('L' if channels == 1 else 'RGB'))
  return [path], image[None]


def main(argv):
  del argv
  with cli.one_line_errors():
    classifier = cmtl_jax.Classifier.load(_WORKDIR.value)
    channels = classifier.model.beit_config.num_channels
    for path in _IMAGES.value:
      names, images = _read(path, channels)
      for name, label in zip(names, classifier.predict(images)):
        print(f'{name}\t{label}\t{classifier.class_names[label]}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)

