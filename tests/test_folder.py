"""Image folders: decoding (formats, modes, EXIF, sizes) checked pixel-wise against Pillow, both layouts, bad files,
the fingerprint, the memory check; the one rule for image arrays; prediction on folders."""

import csv
import io
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

import cmtl_jax
from cmtl_jax import classifier as classifier_lib
from cmtl_jax import data
from cmtl_jax.data import builders
from cmtl_jax.data import folder
from cmtl_jax.data import loading
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import build as model_lib

from conftest import count_compilations

RNG = np.random.default_rng(0)


def _pattern(h, w, channels=None, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (h, w) + ((channels,) if channels else ()), dtype=np.uint8)


def _save(path, image, **kw):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, **kw)
  return str(path)


def _grey(rgb):  # Pillow's own RGB -> L (ITU-R 601-2 luma), the rule's grey.
  return np.asarray(Image.fromarray(rgb, 'RGB').convert('L'))


# ---------------------------------------------------------------------------------------------------------------
# Decoding, pixel by pixel.

def test_modes_and_formats_decode_to_pillows_pixels(tmp_path):
  rgb = _pattern(6, 6, 3)
  grey = _pattern(6, 6, seed=1)
  alpha = _pattern(6, 6, seed=2)
  cases = {}
  cases['grey.png'] = (Image.fromarray(grey, 'L'), grey, None)
  cases['rgb.bmp'] = (Image.fromarray(rgb, 'RGB'), _grey(rgb), rgb)
  cases['rgb.tiff'] = (Image.fromarray(rgb, 'RGB'), _grey(rgb), rgb)
  cases['rgb.webp'] = (Image.fromarray(rgb, 'RGB'), _grey(rgb), rgb)  # Saved lossless below.
  # Alpha on white: out = c * a / 255 + 255 * (1 - a / 255).
  on_white = np.round(rgb * (alpha[..., None] / 255.0) + 255.0 * (1 - alpha[..., None] / 255.0))
  cases['rgba.png'] = (Image.fromarray(np.dstack([rgb, alpha]), 'RGBA'), _grey(on_white.astype(np.uint8)),
                       on_white)
  grey_on_white = np.round(grey * (alpha / 255.0) + 255.0 * (1 - alpha / 255.0))
  cases['la.png'] = (Image.fromarray(np.dstack([grey, alpha]), 'LA'), grey_on_white, None)
  sixteen = RNG.integers(0, 65536, (6, 6)).astype(np.uint16)
  cases['grey16.png'] = (Image.fromarray(sixteen), np.round(sixteen / 257.0), None)
  bits = RNG.integers(0, 2, (6, 6)).astype(bool)
  cases['bits.png'] = (Image.fromarray(bits), bits * 255, None)
  palette = Image.fromarray(rgb, 'RGB').quantize(4)
  palette_rgb = np.asarray(palette.convert('RGB'))
  cases['palette.gif'] = (palette, _grey(palette_rgb), palette_rgb)
  for name, (image, want_grey, want_rgb) in cases.items():
    path = _save(tmp_path / name, image, **({'lossless': True} if name.endswith('.webp') else {}))
    got = folder.decode(path, None, 1)
    assert got.shape == (6, 6, 1) and got.dtype == np.uint8, name
    np.testing.assert_allclose(got[..., 0], want_grey, atol=1, err_msg=name)  # Alpha blending rounds once more.
    colour = folder.decode(path, None, 3)
    assert colour.shape == (6, 6, 3), name
    if want_rgb is not None:
      np.testing.assert_allclose(colour, want_rgb, atol=1, err_msg=name)
    else:  # Grey repeated.
      np.testing.assert_array_equal(colour, np.repeat(got, 3, axis=-1), err_msg=name)


def test_palette_transparency_gif_first_frame_and_cmyk(tmp_path):
  frames = [Image.fromarray(np.full((4, 4), v, np.uint8), 'L').convert('P') for v in (30, 200)]
  path = _save(tmp_path / 'two.gif', frames[0], save_all=True, append_images=frames[1:])
  np.testing.assert_array_equal(folder.decode(path, None, 1)[..., 0], 30)  # The first frame, not the last.
  transparent = Image.new('P', (4, 4), 0)
  transparent.putpalette([10, 10, 10] + [0, 0, 0] * 255)
  path = _save(tmp_path / 'clear.png', transparent, transparency=0)
  np.testing.assert_array_equal(folder.decode(path, None, 3), 255)  # Fully transparent -> white.
  cmyk = Image.fromarray(_pattern(4, 4, 4), 'CMYK')
  path = _save(tmp_path / 'cmyk.tiff', cmyk)
  np.testing.assert_array_equal(folder.decode(path, None, 3), np.asarray(cmyk.convert('RGB')))


def test_exif_orientation_is_applied(tmp_path):
  raw = Image.fromarray(_pattern(4, 8, 3), 'RGB')  # 8 wide, 4 high, as stored.
  exif = Image.Exif()
  exif[0x0112] = 6  # "Rotate 90 CW to display."
  path = _save(tmp_path / 'phone.jpg', raw, exif=exif, quality=95)
  stored = np.asarray(Image.open(path).convert('RGB'))  # The JPEG's own pixels, before orientation.
  got = folder.decode(path, None, 3)
  assert got.shape == (8, 4, 3)
  np.testing.assert_array_equal(got, np.rot90(stored, k=-1))


def test_resize_rules(tmp_path):
  wide = np.zeros((6, 12), np.uint8)
  wide[:, 4:8] = 200  # A centre band.
  wide[:, 8:] = 100
  path = _save(tmp_path / 'wide.png', Image.fromarray(wide, 'L'))
  # crop: the shorter side is already 6, so no resampling: the centre 6 columns.
  np.testing.assert_array_equal(folder.decode(path, 6, 1)[..., 0], wide[:, 3:9])
  flat = _save(tmp_path / 'flat.png', Image.fromarray(np.full((6, 12), 200, np.uint8), 'L'))
  padded = folder.decode(flat, 6, 1, 'pad')[..., 0]  # Longer side 12 -> 6: a 6 x 3 image on black, centred.
  want = np.zeros((6, 6), np.uint8)
  want[1:4] = 200
  np.testing.assert_array_equal(padded, want)
  big = _save(tmp_path / 'big.png', Image.fromarray(np.full((20, 10), 90, np.uint8), 'L'))
  np.testing.assert_array_equal(folder.decode(big, 5, 1), 90)  # Shrunk 10 -> 5, cropped 10 -> 5: constant.
  assert folder.decode(big, 5, 3, 'pad').shape == (5, 5, 3)


# ---------------------------------------------------------------------------------------------------------------
# Layouts and listing.

def _class_folder(root, counts, size=(8, 8), value=lambda c, i: 20 * c + i, ext='png'):
  for c, n in enumerate(counts):
    for i in range(n):
      _save(os.path.join(root, f'class_{c}', f'{i:03d}.{ext}'),
            Image.fromarray(np.full(size, value(c, i), np.uint8), 'L'))
  return str(root)


def _load(root, tmp_path, **kw):
  kw = {'image_size': 8, 'channels': 1, 'prepared_dir': str(tmp_path / 'prepared'), 'val_fraction': 0.25, **kw}
  return data.load('folder', data_dir=str(root), **kw)


def test_flat_layout_cuts_a_stratified_test_split_and_ignores_clutter(tmp_path):
  root = _class_folder(tmp_path / 'images', [8, 8, 8])
  for clutter in ('.DS_Store', 'Thumbs.db', '.hidden.png', 'notes.txt'):
    (tmp_path / 'images' / 'class_0' / clutter).write_bytes(b'\x00junk')
  _save(tmp_path / 'images' / 'class_1' / 'deeper' / 'x.jpg', Image.fromarray(np.full((8, 8), 21, np.uint8), 'L'))
  ds = _load(root, tmp_path, test_fraction=0.25)
  assert ds.class_names == ('class_0', 'class_1', 'class_2')
  assert ds.images.shape == (25, 8, 8, 1)
  np.testing.assert_array_equal(np.bincount(ds.labels), [8, 9, 8])
  assert sorted(np.concatenate([ds.train, ds.val, ds.test]).tolist()) == list(range(25))
  assert np.all(np.bincount(ds.labels[ds.test], minlength=3) >= 2)
  for image, label in zip(ds.images, ds.labels):  # Each image came from its class's folder.
    assert 20 * label <= image[0, 0, 0] < 20 * label + 10


def test_train_test_layout_keeps_the_given_test_split(tmp_path):
  _class_folder(tmp_path / 'images' / 'train', [6, 6])
  _class_folder(tmp_path / 'images' / 'test', [2, 3], value=lambda c, i: 250)
  ds = _load(tmp_path / 'images', tmp_path)
  assert ds.class_names == ('class_0', 'class_1') and len(ds.test) == 5
  np.testing.assert_array_equal(ds.images[ds.test], 250)
  np.testing.assert_array_equal(np.bincount(ds.labels[ds.test]), [2, 3])
  assert not np.any(ds.images[np.concatenate([ds.train, ds.val])] == 250)


@pytest.mark.parametrize('make,message', [
    (lambda r: (os.makedirs(r / 'a'), _class_folder(r, [3])), "class folder .*/a has no images"),
    (lambda r: _class_folder(r, [3]), "has a single class folder 'class_0'"),
    (lambda r: os.makedirs(r), 'no images found in .*: it has no class sub-folders'),
    (lambda r: _save(r / 'loose.png', Image.new('L', (4, 4))), 'no images found .*images but no class sub-folders'),
    (lambda r: (_class_folder(r / 'train', [3, 3]), _class_folder(r / 'test', [1, 1, 1])),
     'has class folders the training split lacks: class_2'),
    (lambda r: (_class_folder(r / 'train', [3, 3]), _class_folder(r / 'test', [1, 1]), os.makedirs(r / 'val')),
     r'has train/ and test/ beside other folders \(val\)'),
    (lambda r: _class_folder(r / 'train', [3, 3]), r"single class folder 'train'.*add test/ beside train/"),
])
def test_folder_mistakes_are_one_line(tmp_path, make, message):
  root = tmp_path / 'images'
  make(root)
  with pytest.raises(ConfigError, match=message):
    _load(root, tmp_path)


def test_a_folder_dataset_needs_its_path(tiny_config):
  tiny_config.dataset, tiny_config.data_dir = 'folder', ''
  with pytest.raises(ConfigError, match='dataset folder needs --config.data_dir=PATH'):
    cmtl_jax.train_and_evaluate(tiny_config, '', log=None)


def test_a_class_smaller_than_cv_is_named(tiny_config, tmp_path):
  _class_folder(tmp_path / 'images', [6, 3])
  tiny_config.dataset, tiny_config.data_dir, tiny_config.cv = 'folder', str(tmp_path / 'images'), 4
  tiny_config.prepared_dir, tiny_config.val_fraction = str(tmp_path / 'prepared'), 0.3
  with pytest.raises(ConfigError, match=r"class 'class_1' has 3 image\(s\) .*fewer than cv=4 folds need \(4\)"):
    data.load_dataset(tiny_config, validation=False)
  assert data.load_dataset(tiny_config).num_classes == 2  # Single-model training does not need cv folds.


# ---------------------------------------------------------------------------------------------------------------
# Bad files.

def _truncated_png(path):
  buffer = io.BytesIO()
  Image.fromarray(_pattern(32, 32), 'L').save(buffer, 'PNG')
  path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])


BAD_FILES = [
    ('empty.png', lambda p: p.write_bytes(b''), 'empty file (0 bytes)'),
    ('text.jpg', lambda p: p.write_text('not an image at all'), 'not an image Pillow can read'),
    ('cut.png', _truncated_png, 'truncated or corrupt image'),
]


@pytest.mark.parametrize('name,write,reason', BAD_FILES)
def test_bad_file_errors_with_its_name_or_is_skipped_and_counted(tmp_path, name, write, reason):
  root = _class_folder(tmp_path / 'images', [6, 6])
  write(tmp_path / 'images' / 'class_1' / name)
  with pytest.raises(folder.BadImageError, match=re.escape(f'{os.path.join("class_1", name)}: {reason}')):
    _load(root, tmp_path)
  ds = _load(root, tmp_path, on_bad_image='skip')
  assert len(ds.images) == 12 and len(ds.skipped) == 1
  assert ds.skipped[0][0] == os.path.join('class_1', name) and ds.skipped[0][1].startswith(reason)
  assert _load(root, tmp_path, on_bad_image='skip').skipped == ds.skipped  # Read back from the prepared metadata.


def test_skipped_files_reach_metrics_json(tiny_config, tmp_path):
  root = _class_folder(tmp_path / 'images', [10, 10])
  (tmp_path / 'images' / 'class_0' / 'broken.png').write_bytes(b'')
  tiny_config.update(dict(dataset='folder', data_dir=root, prepared_dir=str(tmp_path / 'prepared'),
                          on_bad_image='skip', variant='beit', batch_size=8))
  results = cmtl_jax.train_and_evaluate(tiny_config, str(tmp_path / 'run'), log=None)
  with open(tmp_path / 'run' / 'metrics.json') as f:
    saved = json.load(f)
  assert saved['dataset']['skipped'] == [[os.path.join('class_0', 'broken.png'), 'empty file (0 bytes)']]
  assert results['dataset']['train'] + results['dataset']['val'] + results['dataset']['test'] == 20


# ---------------------------------------------------------------------------------------------------------------
# Preparing once per fingerprint; the memory check.

def _count_preparations(monkeypatch):
  calls = []
  original = builders.ImageFolder._generate_examples

  def counted(self, files):
    calls.append(len(files))
    yield from original(self, files)

  monkeypatch.setattr(builders.ImageFolder, '_generate_examples', counted)
  return calls


def test_a_changed_folder_is_prepared_again_an_unchanged_one_is_not(tmp_path, monkeypatch):
  calls = _count_preparations(monkeypatch)
  root = _class_folder(tmp_path / 'images', [4, 4])
  first = _load(root, tmp_path, test_fraction=0.25)
  assert calls == [8]
  again = _load(root, tmp_path, test_fraction=0.25)
  assert calls == [8]  # Read back, not decoded again.
  np.testing.assert_array_equal(first.images, again.images)
  path = tmp_path / 'images' / 'class_1' / '000.png'
  Image.fromarray(np.full((8, 8), 99, np.uint8), 'L').save(path)  # Same name, new content.
  stat = os.stat(path)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  changed = _load(root, tmp_path, test_fraction=0.25)
  assert calls == [8, 8] and np.sum(changed.images == 99) == 64
  _class_folder(tmp_path / 'images', [0, 0, 4])  # A new class.
  assert _load(root, tmp_path, test_fraction=0.25).num_classes == 3 and calls == [8, 8, 12]
  _load(root, tmp_path, test_fraction=0.25, image_size=4)  # Another decoding is another preparation.
  assert calls == [8, 8, 12, 12]


def test_memory_check_stops_an_oversized_dataset_before_anything_is_prepared(tmp_path, monkeypatch, data_dir):
  calls = _count_preparations(monkeypatch)
  root = _class_folder(tmp_path / 'images', [10, 10])
  monkeypatch.setattr(loading, 'device_memory_bytes', lambda device=None: 1000)
  # 20 images x 8 x 8 x 1 = 1,280 bytes > 0.5 x 1,000.
  with pytest.raises(ConfigError, match=r'the staged dataset needs 1.2 KiB \(20 images x 8 x 8 x 1 bytes\), more '
                     r'than data_memory_fraction=0.5 .*lower --config.image_size .* or --config.train_per_class'):
    _load(root, tmp_path)
  assert calls == [] and not os.path.exists(tmp_path / 'prepared')
  ds = _load(root, tmp_path, image_size=4)  # 20 x 4 x 4 = 320 bytes fits.
  assert ds.images.shape == (20, 4, 4, 1)
  with pytest.raises(ConfigError, match='the staged dataset needs'):  # TFDS datasets: checked before staging.
    data.load('digits', data_dir=data_dir)


def test_a_split_beyond_tfds_write_buffer_without_tensorflow_is_one_line(tmp_path, monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'tensorflow' else find_spec(name, *a))  # No TensorFlow.
  monkeypatch.setattr(shuffle, 'MAX_MEM_BUFFER_SIZE', 1000)  # A small buffer: the folder's 12 images pass it.
  calls = _count_preparations(monkeypatch)
  root = _class_folder(tmp_path / 'images', [6, 6])
  with pytest.raises(ConfigError, match=r'preparing the train split of .* \(12 images of 64 bytes, .*\) passes '
                     r"TFDS's 1000 bytes write buffer, beyond which TFDS needs TensorFlow"):
    _load(root, tmp_path)
  assert calls == []
  monkeypatch.setattr(shuffle, 'MAX_MEM_BUFFER_SIZE', 10**6)
  assert len(_load(root, tmp_path).images) == 12


def test_train_per_class_stages_only_the_images_the_splits_use(data_dir):
  full = data.load('digits', data_dir=data_dir)
  small = data.load('digits', data_dir=data_dir, train_per_class=5, val_fraction=0.4)
  assert len(small.images) == 50 + 360 and np.all(np.bincount(small.labels[np.r_[small.train, small.val]]) == 5)
  np.testing.assert_array_equal(small.images[small.test], full.images[full.test])  # The same held-out images.


# ---------------------------------------------------------------------------------------------------------------
# One rule for image arrays.

def test_one_rule_for_image_arrays():
  grey = _pattern(5, 7)
  np.testing.assert_array_equal(data.as_uint8_images(grey), grey[None, ..., None])  # One [H, W] image.
  np.testing.assert_array_equal(data.as_uint8_images(grey / 255.0), grey[None, ..., None])  # Floats in [0, 1].
  np.testing.assert_array_equal(data.as_uint8_images(grey.astype(np.int64)[None]), grey[None, ..., None])
  for bad, message in [(grey * 1.0, r'float images must lie in \[0, 1\]'),
                       (np.full((2, 2), np.nan), r'float images must lie in \[0, 1\]'),
                       (grey.astype(np.uint16) * 256, r'uint16 pixel values must lie in 0..255'),
                       (grey > 9, 'images of dtype bool are not supported'),
                       (np.zeros((2, 2, 2, 2, 1)), r'got an array of shape \(2, 2, 2, 2, 1\)')]:
    with pytest.raises(ConfigError, match=message):
      data.as_uint8_images(bad)


def test_training_data_of_floats_is_scaled_not_zeroed(tmp_path):
  images = RNG.random((12, 4, 4))
  ds = data.Dataset(images, np.arange(12) % 2, ('a', 'b'), np.arange(8), np.arange(8, 10), np.arange(10, 12), 'mine')
  assert ds.images.shape == (12, 4, 4, 1) and ds.images.dtype == np.uint8
  np.testing.assert_array_equal(ds.images[..., 0], np.round(images * 255))

  class FloatBuilder:  # What a TFDS dataset of float images hands `load`.
    name = 'floats'

    def as_data_source(self, split):
      del split
      return FloatSource()

  class FloatSource(list):
    def __init__(self):
      super().__init__([{'image': images[i], 'label': i % 2} for i in range(12)])

    def __getitems__(self, keys):
      return [self[k] for k in keys]

  read, _ = loading._read_split(FloatBuilder(), 'train', 'image', 'label')
  np.testing.assert_array_equal(read, ds.images)


# ---------------------------------------------------------------------------------------------------------------
# Prediction.

@pytest.fixture
def untrained(tiny_config, tmp_path):
  """A saved 3-class BEiT classifier at 8 px (random weights): prediction without training."""
  tiny_config.variant = 'beit'
  model, params, _, sources = model_lib.build_model(tiny_config, 3, jax.random.key(1))
  # The head starts at zero (every input uniform): random weights everywhere make predictions depend on pixels.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
  metadata = {'beit_config': model.beit_config.to_dict(), 'bert_config': None, 'class_names': ['x', 'y', 'z'],
              'pooling': model.pooling, 'bridge_norm': model.bridge_norm, 'dtype': 'float32', 'pretrained': sources,
              'image_shape': [8, 8, 1], 'config': tiny_config.to_dict()}
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
  good = _save(tmp_path / 'in' / 'good.png', Image.fromarray(np.full((8, 8), 7, np.uint8), 'L'))
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
    paths.append(_save(root / f'part{i % 3}' / f'{i:03d}.{ext}',
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


@pytest.mark.slow
def test_cli_makes_a_folder_trains_on_it_and_predicts_it(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  images, workdir = tmp_path / 'digits', tmp_path / 'run'

  def run(*args):
    out = subprocess.run([sys.executable, '-m', *args], cwd=repo, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout

  run('experiments.make_image_folder', f'--out={images}', '--source=digits', '--per_class=20')
  assert sorted(os.listdir(images)) == [str(i) for i in range(10)]
  run('experiments.train', '--config=experiments/configs/folder.py', f'--config.data_dir={images}',
      f'--config.prepared_dir={tmp_path / "prepared"}', f'--workdir={workdir}', '--config.num_epochs=1',
      '--config.batch_size=16', '--config.bert_layers=1', '--config.beit.image_size=8',
      '--config.beit.hidden_size=32', '--config.beit.num_attention_heads=2', '--config.beit.intermediate_size=64')
  with open(workdir / 'metrics.json') as f:
    assert json.load(f)['dataset']['test'] == 40  # 20 % of 10 x 20 images.
  out = run('experiments.predict', f'--workdir={workdir}', f'--images={images}')
  assert out.strip().splitlines()[-1].startswith('200 image(s): ')
  with open(workdir / 'predictions.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 200 and set(rows[0]) == {'file', 'class_index', 'class_name'} | {f'p_{i}' for i in range(10)}
