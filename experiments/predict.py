"""Predicts class labels with a classifier saved by experiments.train.

  python -m experiments.predict --workdir=/tmp/cmtl_digits --images=images.npy,photos/ [more.png ...]

Each --images entry is a .npy array of images (`[H, W]`, `[N, H, W]` or `[N, H, W, C]`; uint8, integers in
0..255 or floats in [0, 1]: `cmtl_jax.data.as_uint8_images`), an image file, or a folder read recursively. Files are
decoded and sized as the classifier's training images were (`cmtl_jax.data.folder.decode`) and predicted in batches
by one compiled program (`Classifier.predict_paths`). Prints one `<source>\t<class index>\t<class name>` line per image and a summary, and writes
`predictions.csv` (file, class index, class name, then the probability of each class) to --output.
"""

import collections
import os

from absl import app
from absl import flags
import numpy as np

import cmtl_jax
from cmtl_jax import classifier as classifier_lib
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a trained classifier.', required=True)
_IMAGES = flags.DEFINE_list('images', None, '.npy arrays, image files or folders.', required=True)
_OUTPUT = flags.DEFINE_string('output', '', 'The CSV of predictions; empty = <workdir>/predictions.csv.')
_ON_BAD_IMAGE = flags.DEFINE_enum('on_bad_image', 'error', ['error', 'skip'],
                                  'A file that does not decode: stop with one line, or skip it (listed).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Images per batch of the compiled program.')


def main(argv):
  del argv
  with cli.one_line_errors():
    classifier = cmtl_jax.Classifier.load(_WORKDIR.value)
    names, probabilities, skipped = classifier.predict_paths(_IMAGES.value, _BATCH_SIZE.value, _ON_BAD_IMAGE.value)
    labels = np.argmax(probabilities, axis=-1)
    for name, label in zip(names, labels):
      print(f'{name}\t{label}\t{classifier.class_names[label]}')
    output = _OUTPUT.value or os.path.join(_WORKDIR.value, 'predictions.csv')
    classifier_lib.write_predictions(output, names, probabilities, classifier.class_names)
    counts = collections.Counter(classifier.class_names[label] for label in labels)
    print(f'{len(names)} image(s): ' + ', '.join(f'{name} {n}' for name, n in counts.most_common()) +
          (f'; {len(skipped)} bad file(s) skipped' if skipped else '') + f'; probabilities in {output}')
    for path, reason in skipped:
      print(f'skipped {path}: {reason}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
