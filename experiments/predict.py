"""Predicts class labels with a classifier saved by experiments.train.

  python -m experiments.predict --workdir=/tmp/cmtl_digits --images=images.npy,photos/ [more.png ...]

Each --images entry is a .npy array of images (`[H, W]`, `[N, H, W]` or `[N, H, W, C]`; uint8, integers in
0..255 or floats in [0, 1]: `cmtl_jax.data.as_uint8_images`), an image file, or a folder read recursively. Files are
decoded and sized as the classifier's training images were (`cmtl_jax.data.folder.decode`) and predicted in batches
by one compiled program. Prints one `<source>\t<class index>\t<class name>` line per image and a summary, and writes
`predictions.csv` (file, class index, class name, then the probability of each class) to --output.
"""

import collections
import csv
import os

from absl import app
from absl import flags
import numpy as np

import cmtl_jax
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a trained classifier.', required=True)
_IMAGES = flags.DEFINE_list('images', None, '.npy arrays, image files or folders.', required=True)
_OUTPUT = flags.DEFINE_string('output', '', 'The CSV of predictions; empty = <workdir>/predictions.csv.')
_ON_BAD_IMAGE = flags.DEFINE_enum('on_bad_image', 'error', ['error', 'skip'],
                                  'A file that does not decode: stop with one line, or skip it (listed).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Images per batch of the compiled program.')


def predict_paths(classifier, paths, batch_size: int = 256, on_bad_image: str = 'error'):
  """`(names [N], probabilities float32 [N, classes], skipped)` for .npy arrays, image files and folders, in the
  order given; image files (however many, across entries) are predicted together."""
  names, chunks, files, skipped = [], [], [], []
  for path in paths:
    if path.endswith('.npy') and os.path.isfile(path):
      images = cmtl_jax.data.as_uint8_images(np.load(path), path)
      names += [f'{path}[{i}]' for i in range(len(images))]
      chunks.append(classifier.predict_proba(images, batch_size))
    else:
      files.append(path)
  if files:
    file_names, images, skipped = classifier.read_images(files, on_bad_image)
    names += file_names
    chunks.append(classifier.predict_proba(images, batch_size))
  return names, np.concatenate(chunks), skipped


def write_csv(path: str, names, probabilities, class_names) -> None:
  """One row per image: file, class index, class name, then `p_<class name>` for every class."""
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['file', 'class_index', 'class_name'] + [f'p_{name}' for name in class_names])
    for name, p in zip(names, probabilities):
      label = int(np.argmax(p))
      writer.writerow([name, label, class_names[label]] + [f'{v:.6g}' for v in p])


def main(argv):
  del argv
  with cli.one_line_errors():
    classifier = cmtl_jax.Classifier.load(_WORKDIR.value)
    names, probabilities, skipped = predict_paths(classifier, _IMAGES.value, _BATCH_SIZE.value,
                                                  _ON_BAD_IMAGE.value)
    labels = np.argmax(probabilities, axis=-1)
    for name, label in zip(names, labels):
      print(f'{name}\t{label}\t{classifier.class_names[label]}')
    output = _OUTPUT.value or os.path.join(_WORKDIR.value, 'predictions.csv')
    write_csv(output, names, probabilities, classifier.class_names)
    counts = collections.Counter(classifier.class_names[label] for label in labels)
    print(f'{len(names)} image(s): ' + ', '.join(f'{name} {n}' for name, n in counts.most_common()) +
          (f'; {len(skipped)} bad file(s) skipped' if skipped else '') + f'; probabilities in {output}')
    for path, reason in skipped:
      print(f'skipped {path}: {reason}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
