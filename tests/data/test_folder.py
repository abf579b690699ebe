"""Image folders: decoding (formats, modes, EXIF, sizes) checked pixel-wise against Pillow, both layouts, bad files,
the fingerprint, the memory check; the one rule for image arrays."""

import io
import os
import re

import numpy as np
from PIL import Image
import pytest

from cmtl_jax import data
from cmtl_jax import devices
from cmtl_jax.data import builders
from cmtl_jax.data import folder
from cmtl_jax.data import loading
from cmtl_jax.errors import ConfigError
from tests.helpers import pattern, save_image

RNG = np.random.default_rng(0)


def _grey(rgb):  # Pillow's own RGB -> L (ITU-R 601-2 luma), the rule's grey.
  return np.asarray(Image.fromarray(rgb, 'RGB').convert('L'))


# ---------------------------------------------------------------------------------------------------------------
# Decoding, pixel by pixel.

def test_modes_and_formats_decode_to_pillows_pixels(tmp_path):
  rgb = pattern(6, 6, 3)
  grey = pattern(6, 6, seed=1)
  alpha = pattern(6, 6, seed=2)
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
    path = save_image(tmp_path / name, image, **({'lossless': True} if name.endswith('.webp') else {}))
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
  path = save_image(tmp_path / 'two.gif', frames[0], save_all=True, append_images=frames[1:])
  np.testing.assert_array_equal(folder.decode(path, None, 1)[..., 0], 30)  # The first frame, not the last.
  transparent = Image.new('P', (4, 4), 0)
  transparent.putpalette([10, 10, 10] + [0, 0, 0] * 255)
  path = save_image(tmp_path / 'clear.png', transparent, transparency=0)
  np.testing.assert_array_equal(folder.decode(path, None, 3), 255)  # Fully transparent -> white.
  cmyk = Image.fromarray(pattern(4, 4, 4), 'CMYK')
  path = save_image(tmp_path / 'cmyk.tiff', cmyk)
  np.testing.assert_array_equal(folder.decode(path, None, 3), np.asarray(cmyk.convert('RGB')))


def test_exif_orientation_is_applied(tmp_path):
  raw = Image.fromarray(pattern(4, 8, 3), 'RGB')  # 8 wide, 4 high, as stored.
  exif = Image.Exif()
  exif[0x0112] = 6  # "Rotate 90 CW to display."
  path = save_image(tmp_path / 'phone.jpg', raw, exif=exif, quality=95)
  stored = np.asarray(Image.open(path).convert('RGB'))  # The JPEG's own pixels, before orientation.
  got = folder.decode(path, None, 3)
  assert got.shape == (8, 4, 3)
  np.testing.assert_array_equal(got, np.rot90(stored, k=-1))


def test_resize_rules(tmp_path):
  wide = np.zeros((6, 12), np.uint8)
  wide[:, 4:8] = 200  # A centre band.
  wide[:, 8:] = 100
  path = save_image(tmp_path / 'wide.png', Image.fromarray(wide, 'L'))
  # crop: the shorter side is already 6, so no resampling: the centre 6 columns.
  np.testing.assert_array_equal(folder.decode(path, 6, 1)[..., 0], wide[:, 3:9])
  flat = save_image(tmp_path / 'flat.png', Image.fromarray(np.full((6, 12), 200, np.uint8), 'L'))
  padded = folder.decode(flat, 6, 1, 'pad')[..., 0]  # Longer side 12 -> 6: a 6 x 3 image on black, centred.
  want = np.zeros((6, 6), np.uint8)
  want[1:4] = 200
  np.testing.assert_array_equal(padded, want)
  big = save_image(tmp_path / 'big.png', Image.fromarray(np.full((20, 10), 90, np.uint8), 'L'))
  np.testing.assert_array_equal(folder.decode(big, 5, 1), 90)  # Shrunk 10 -> 5, cropped 10 -> 5: constant.
  assert folder.decode(big, 5, 3, 'pad').shape == (5, 5, 3)


# ---------------------------------------------------------------------------------------------------------------
# Layouts and listing.

def _class_folder(root, counts, size=(8, 8), value=lambda c, i: 20 * c + i, ext='png'):
  for c, n in enumerate(counts):
    for i in range(n):
      save_image(os.path.join(root, f'class_{c}', f'{i:03d}.{ext}'),
            Image.fromarray(np.full(size, value(c, i), np.uint8), 'L'))
  return str(root)


def _load(root, tmp_path, **kw):
  kw = {'image_size': 8, 'channels': 1, 'prepared_dir': str(tmp_path / 'prepared'), 'val_fraction': 0.25, **kw}
  return data.load('folder', data_dir=str(root), **kw)


def test_flat_layout_cuts_a_stratified_test_split_and_ignores_clutter(tmp_path):
  root = _class_folder(tmp_path / 'images', [8, 8, 8])
  for clutter in ('.DS_Store', 'Thumbs.db', '.hidden.png', 'notes.txt'):
    (tmp_path / 'images' / 'class_0' / clutter).write_bytes(b'\x00junk')
  save_image(tmp_path / 'images' / 'class_1' / 'deeper' / 'x.jpg', Image.fromarray(np.full((8, 8), 21, np.uint8), 'L'))
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
    (lambda r: save_image(r / 'loose.png', Image.new('L', (4, 4))), 'no images found .*images but no class sub-folders'),
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


# ---------------------------------------------------------------------------------------------------------------
# Bad files.

def _truncated_png(path):
  buffer = io.BytesIO()
  Image.fromarray(pattern(32, 32), 'L').save(buffer, 'PNG')
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
  monkeypatch.setattr(devices, 'device_memory_bytes', lambda device=None: 1000)
  # 20 images x 8 x 8 x 1 = 1,280 bytes > 0.5 x 1,000.
  with pytest.raises(ConfigError, match=r'the staged dataset needs 1.2 KiB \(20 images x 8 x 8 x 1 bytes\), more '
                     r'than data.memory_fraction=0.5 .*lower --config.data.image_size .* or --config.data.train_per_class'):
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
  grey = pattern(5, 7)
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
