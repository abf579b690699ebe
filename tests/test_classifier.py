"""A saved classifier: prediction on arrays (one rule for every kind), on files and folders (decoded as its training
images were), in batches of one compiled program, the predictions CSV; scoring a dataset split."""

import csv
import os
import re

import jax
import numpy as np
from PIL import Image
import pytest

import cmtl_jax
from cmtl_jax import classifier as classifier_lib
from cmtl_jax.data import folder
from cmtl_jax.errors import ConfigError
from tests.helpers import build, count_compilations, pattern, save_image

RNG = np.random.default_rng(0)


@pytest.fixture(scope='module')
def untrained(data_dir, stand_in_bert, tmp_path_factory):
  """A saved 3-class BEiT classifier at 8 px (random weights): prediction without training; built once."""
  from cmtl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from tests.helpers import TINY_BEIT  # pylint: disable=g-import-not-at-top
  tiny_config = config_lib.base_config()
  tiny_config.data.data_dir, tiny_config.model.bert_path = data_dir, stand_in_bert
  tiny_config.model.beit.update(TINY_BEIT)
  tmp_path = tmp_path_factory.mktemp('untrained')
  tiny_config.model.variant = 'beit'
  model, params, _, sources = build(tiny_config, 3, jax.random.key(1))
  # The head starts at zero (every input uniform): random weights everywhere make predictions depend on pixels.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
  metadata = {'beit_config': model.beit_config.to_dict(), 'bert_config': None, 'class_names': ['x', 'y', 'z'],
              'pooling': model.pooling, 'bridge_norm': model.bridge_norm, 'dtype': 'float32', 'pretrained': sources,
              'image_shape': [8, 8, 1], 'decoding': {'image_size': 8, 'channels': 1, 'resize': 'crop'}}
  classifier_lib.save(str(tmp_path / 'run'), params, metadata)
  return cmtl_jax.Classifier.load(str(tmp_path / 'run'))


def test_predict_takes_one_grey_image_and_floats_by_the_same_rule(untrained):
  images = RNG.integers(0, 256, (4, 8, 8), dtype=np.uint8)
  want = untrained.predict_proba(images)
  assert want.shape == (4, 3) and np.allclose(want.sum(-1), 1, atol=1e-5)
  assert np.ptp(want[:, 0]) > 0.01  # The probabilities depend on the pixels.
  np.testing.assert_allclose(untrained.predict_proba(images[0]), want[:1], atol=1e-6)  # [H, W].
  np.testing.assert_allclose(untrained.predict_proba(images / 255.0), want, atol=1e-6)  # Floats in [0, 1].
  assert untrained.predict(images / 255.0).tolist() == np.argmax(want, -1).tolist()
  with pytest.raises(ConfigError, match=r'float images must lie in \[0, 1\]'):
    untrained.predict(images.astype(np.float32))
  with pytest.raises(ConfigError, match=r'images have 3 channel\(s\) but the classifier takes 1'):
    untrained.predict(np.zeros((2, 8, 8, 3), np.uint8))


def test_predict_paths_reads_npy_of_one_grey_image_and_of_floats(untrained, tmp_path):
  images = RNG.integers(0, 256, (3, 8, 8), dtype=np.uint8)
  np.save(tmp_path / 'one.npy', images[0])
  np.save(tmp_path / 'floats.npy', images / 255.0)
  names, proba, _ = untrained.predict_paths([str(tmp_path / 'one.npy'), str(tmp_path / 'floats.npy')])
  assert names == [f'{tmp_path / "one.npy"}[0]'] + [f'{tmp_path / "floats.npy"}[{i}]' for i in range(3)]
  want = untrained.predict_proba(images)
  np.testing.assert_allclose(proba, np.concatenate([want[:1], want]), atol=1e-6)


def test_predict_on_files_names_a_bad_file_or_skips_it(untrained, tmp_path):
  good = save_image(tmp_path / 'in' / 'good.png', Image.fromarray(np.full((8, 8), 7, np.uint8), 'L'))
  (tmp_path / 'in' / 'bad.jpg').write_text('no')
  with pytest.raises(folder.BadImageError, match=re.escape(f'{tmp_path / "in" / "bad.jpg"}: not an image')):
    untrained.predict_paths([str(tmp_path / 'in')])
  names, proba, skipped = untrained.predict_paths([str(tmp_path / 'in')], on_bad_image='skip')
  assert names == [good] and proba.shape == (1, 3)
  assert skipped == [(str(tmp_path / 'in' / 'bad.jpg'), 'not an image Pillow can read (its extension says it is one)')]


def test_predict_on_a_folder_of_200_images_compiles_once_and_its_csv_agrees(untrained, tmp_path, monkeypatch):
  root = tmp_path / 'photos'
  paths = []
  for i in range(200):  # Nested folders, several sizes and formats, all decoded to the training size.
    size = (8, 8) if i % 3 else (12 + i % 5, 10)
    ext = ('png', 'jpg', 'bmp', 'webp')[i % 4]
    paths.append(save_image(root / f'part{i % 3}' / f'{i:03d}.{ext}',
                       Image.fromarray(RNG.integers(0, 256, size, dtype=np.uint8), 'L')))
  (root / 'part0' / '.DS_Store').write_bytes(b'junk')
  names, stop = count_compilations(monkeypatch)
  try:
    files, proba, skipped = untrained.predict_paths([str(root)], batch_size=64)
  finally:
    stop()
  assert names == ['jit(proba)']  # One program for 4 batches of 64 (the last padded), not one per file.
  assert sorted(files) == sorted(paths) and not skipped
  classifier_lib.write_predictions(str(tmp_path / 'predictions.csv'), files, proba, untrained.class_names)
  with open(tmp_path / 'predictions.csv') as f:
    rows = list(csv.DictReader(f))
  decoded = np.stack([folder.decode(path, 8, 1) for path in paths])
  want = dict(zip(paths, untrained.predict_proba(decoded)))
  assert len(rows) == 200 and len({row['class_name'] for row in rows}) > 1
  for row in rows:
    p = want[row['file']]
    assert int(row['class_index']) == np.argmax(p) and row['class_name'] == 'xyz'[np.argmax(p)]
    np.testing.assert_allclose([float(row[f'p_{c}']) for c in 'xyz'], p, rtol=1e-5, atol=1e-6)


def test_evaluate_scores_a_split_as_its_predictions_do(untrained, digits):
  scores = untrained.evaluate(_three_classes(digits), 'test')
  small = _three_classes(digits)
  predictions = untrained.predict(small.images[small.test])
  assert scores['accuracy'] == pytest.approx(np.mean(predictions == small.labels[small.test]))
  assert len(scores['per_class']['recall']) == 3


def _three_classes(digits):
  from cmtl_jax import data  # pylint: disable=g-import-not-at-top
  keep = np.flatnonzero(digits.labels < 3)
  position = {int(i): n for n, i in enumerate(keep)}
  pick = lambda idx: np.array([position[int(i)] for i in idx if int(i) in position], np.int32)
  return data.Dataset(digits.images[keep], digits.labels[keep], ('x', 'y', 'z'), pick(digits.train),
                      pick(digits.val), pick(digits.test), 'digits')
