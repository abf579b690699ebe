"""The offline builders, the stratified splits and the on-device preprocessing."""

import gzip

import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax import data
from cmtl_jax.data import builders as datasets
from cmtl_jax.errors import ConfigError, MissingPathError


def test_digits_builder_yields_all_examples(data_dir):
  ds = data.load('digits', data_dir=data_dir, test_fraction=0.2, val_fraction=0.1)
  assert ds.images.shape == (1797, 8, 8, 1) and ds.images.dtype == np.uint8
  assert ds.num_classes == 10 and set(np.unique(ds.labels)) == set(range(10))
  assert ds.images.max() == 255 and ds.images.min() == 0
  splits = [set(ds.train.tolist()), set(ds.val.tolist()), set(ds.test.tolist())]
  assert sum(map(len, splits)) == 1797 and set.union(*splits) == set(range(1797))
  assert not (splits[0] & splits[2]) and not (splits[1] & splits[2]) and not (splits[0] & splits[1])
  assert len(ds.test) == 360
  full = np.bincount(ds.labels, minlength=10) / 1797
  for idx in (ds.train, ds.val, ds.test):
    share = np.bincount(ds.labels[idx], minlength=10) / len(idx)
    assert np.max(np.abs(share - full)) < 0.02  # Stratified: every split has the class mix of the whole.


def test_test_split_is_fixed_by_split_seed_not_by_training(data_dir):
  a = data.load('digits', data_dir=data_dir, split_seed=0)
  b = data.load('digits', data_dir=data_dir, split_seed=0)
  c = data.load('digits', data_dir=data_dir, split_seed=1)
  np.testing.assert_array_equal(a.test, b.test)
  assert not np.array_equal(a.test, c.test)


def test_train_per_class_caps_the_training_pool(data_dir):
  ds = data.load('digits', data_dir=data_dir, train_per_class=20, val_fraction=0.25)
  pool = np.concatenate([ds.train, ds.val])
  assert np.all(np.bincount(ds.labels[pool], minlength=10) == 20)
  assert len(ds.test) == 360  # The held-out test split does not shrink.


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b''.join(int(n).to_bytes(4, 'big') for n in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trips(tmp_path):
  array = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
  _write_idx(tmp_path / 'x.gz', array)
  np.testing.assert_array_equal(datasets.read_idx(str(tmp_path / 'x.gz')), array)


def test_fashion_mnist_builder_reads_idx_files(tmp_path):
  rng = np.random.default_rng(0)
  for split, n in (('train', 40), ('test', 20)):
    images_file, labels_file = datasets.FASHION_MNIST_FILES[split]
    _write_idx(tmp_path / images_file, rng.integers(0, 256, (n, 28, 28)))
    _write_idx(tmp_path / labels_file, np.arange(n) % 10)
  ds = data.load('fashion_mnist', data_dir=str(tmp_path / 'tfds'), manual_dir=str(tmp_path), val_fraction=0.25)
  assert ds.images.shape == (60, 28, 28, 1) and ds.num_classes == 10
  assert len(ds.test) == 20 and ds.test.min() == 40  # The official test split stays the held-out one.
  assert ds.class_names[9] == 'ankle boot'


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
  with pytest.raises(MissingPathError, match='apt-get install dataset-fashion-mnist'):
    data.load('fashion_mnist', data_dir=str(tmp_path), manual_dir=str(tmp_path / 'nothing'))


def test_unknown_dataset_is_refused(data_dir):
  with pytest.raises(ConfigError, match="unknown dataset 'no_such_dataset'"):
    data.load('no_such_dataset', data_dir=data_dir)


def test_preprocess_resizes_and_normalises():
  images = jnp.full((2, 8, 8, 1), 255, jnp.uint8).at[:, :4].set(0)
  x = data.preprocess(images, 16, 3)
  assert x.shape == (2, 16, 16, 3) and x.dtype == jnp.float32
  assert float(x.min()) == -1.0 and float(x.max()) == 1.0
  np.testing.assert_array_equal(x[..., 0], x[..., 2])  # Gray repeated to RGB.
  assert float(x[0, 0, 0, 0]) == -1.0 and float(x[0, -1, 0, 0]) == 1.0
