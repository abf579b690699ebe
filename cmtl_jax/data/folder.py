"""A folder of image files, one sub-folder per class: listing, fingerprint and decoding to uint8 arrays.

Layouts: `PATH/<class>/<image>` (class names are the sub-folder names, sorted; a held-out test split is cut later),
or `PATH/train/<class>/...` + `PATH/test/<class>/...` (the given test split is the held-out one). Images may sit
deeper inside a class folder. Files and folders whose names start with '.' and the desktop's own files
(Thumbs.db, desktop.ini) are ignored, and so is any file without an image extension (EXTENSIONS).

Decoding (`decode`), the one rule for training and prediction:
1. Pillow opens the file and reads its first frame (GIF, multi-page TIFF), fully: a truncated file is a bad file.
2. The EXIF orientation is applied (a phone photo stored sideways comes out upright).
3. Mode: 16-bit and 32-bit integer grey (I;16, I) is scaled to 8 bits by `round(v / 257)` (clipped to 0..255),
   float grey (F) is taken as [0, 1] and scaled by 255; anything with transparency (RGBA, LA, PA, a palette or grey
   image with a transparent colour) is composited on white; 1-bit, palette and CMYK images go through Pillow's
   RGB; then `channels=1` is Pillow's grey (ITU-R 601-2 luma) and `channels=3` is RGB (grey repeated).
4. Size: 'crop' scales the shorter side to `image_size` and keeps the centre square; 'pad' scales the longer side
   to `image_size` and centres the image on black. Scaling is Pillow's bilinear (antialiased when shrinking),
   the scaled side rounded to whole pixels; an image already `image_size` square is not resampled.
"""

import dataclasses
import hashlib
import os
from typing import Optional

import numpy as np

from cmtl_jax.errors import ConfigError, MissingPathError

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp')
IGNORED = ('thumbs.db', 'desktop.ini')  # Compared lower-case; names starting with '.' (.DS_Store) are ignored too.
SPLITS = ('train', 'test')


class BadImageError(ConfigError):
  """A file with an image extension that does not decode: the message is `<path>: <reason>`."""

  def __init__(self, path: str, reason: str):
    super().__init__(f'{path}: {reason}')
    self.path, self.reason = path, reason


@dataclasses.dataclass(frozen=True)
class Listing:
  """The image files of a folder dataset.

  Attributes:
    root: the folder.
    class_names: the class sub-folder names, sorted.
    files: {split: ((path relative to root, class index), ...)}, each sorted by path; split 'train', and 'test'
      in the train/test layout.
  """
  root: str
  class_names: tuple
  files: dict

  def counts(self, split: str = 'train') -> np.ndarray:
    """Images per class `[num_classes]` in `split`."""
    return np.bincount([label for _, label in self.files.get(split, ())], minlength=len(self.class_names))


def _ignored(name: str) -> bool:
  return name.startswith('.') or name.lower() in IGNORED


def _subfolders(path: str) -> list:
  return sorted(e.name for e in os.scandir(path) if e.is_dir() and not _ignored(e.name))


def _images_under(path: str) -> list:
  """Image files below `path` (recursively), as sorted paths relative to `path`."""
  found = []
  for root, dirs, files in os.walk(path):
    dirs[:] = [d for d in dirs if not _ignored(d)]
    found += [os.path.relpath(os.path.join(root, f), path) for f in files
              if not _ignored(f) and f.lower().endswith(EXTENSIONS)]
  return sorted(found)


def _class_files(root: str, split: str, class_names) -> tuple:
  base = os.path.join(root, split) if split else root
  files = []
  for label, name in enumerate(class_names):
    directory = os.path.join(base, name)
    images = _images_under(directory) if os.path.isdir(directory) else []
    if not images and split != 'test':
      raise ConfigError(f'class folder {directory} has no images ({", ".join(EXTENSIONS)}): add images to it or '
                        f'remove it.')
    files += [(os.path.join(split, name, f) if split else os.path.join(name, f), label) for f in images]
  return tuple(sorted(files))


def list_folder(root: str) -> Listing:
  """Lists a folder dataset; raises ConfigError (one line) for a missing folder, no class folders, a single class,
  an empty class folder, or a test class that the training split lacks."""
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise MissingPathError(f'image folder {root!r} does not exist: set --config.data.data_dir to a folder with one '
                           f'sub-folder of images per class.')
  subfolders = _subfolders(root)
  split_layout = 'train' in subfolders and 'test' in subfolders
  others = sorted(set(subfolders) - set(SPLITS))
  if split_layout and others:
    raise ConfigError(f'{root} has train/ and test/ beside other folders ({", ".join(others)}): keep either '
                      f'train/ + test/ of class folders, or only class folders.')
  class_names = tuple(_subfolders(os.path.join(root, 'train')) if split_layout else subfolders)
  if not class_names:
    where = os.path.join(root, 'train') if split_layout else root
    found = 'images but no class sub-folders' if _images_under(where) else 'no class sub-folders'
    raise ConfigError(f'no images found in {where}: it has {found}; expected {where}/<class>/<image> with one '
                      f'sub-folder per class.')
  if len(class_names) == 1:
    hint = ' (for a given test split add test/ beside train/)' if class_names == ('train',) else ''
    raise ConfigError(f'{root} has a single class folder {class_names[0]!r}: a classifier needs at least 2 '
                      f'classes (one sub-folder each){hint}.')
  if split_layout:
    stray = sorted(set(_subfolders(os.path.join(root, 'test'))) - set(class_names))
    if stray:
      raise ConfigError(f'{os.path.join(root, "test")} has class folders the training split lacks: '
                        f'{", ".join(stray)}; every test class needs a folder in {os.path.join(root, "train")}.')
    files = {split: _class_files(root, split, class_names) for split in SPLITS}
    if not files['test']:
      raise ConfigError(f'{os.path.join(root, "test")} has no images: add them, or move the class folders up '
                        f'to {root} to have a test split cut from them.')
  else:
    files = {'train': _class_files(root, '', class_names)}
  return Listing(root, class_names, files)


def check_class_sizes(listing: Listing, minimum: int, why: str) -> None:
  """Raises ConfigError naming the first class with fewer than `minimum` training images; `why` says what needs
  them ('cv=5 folds')."""
  counts = listing.counts('train')
  for name, count in zip(listing.class_names, counts):
    if count < minimum:
      where = os.path.join(listing.root, 'train' if 'test' in listing.files else '', name)
      raise ConfigError(f'class {name!r} has {count} image(s) ({where}), fewer than {why} need ({minimum}): add '
                        f'images to it, or lower that setting.')


def fingerprint(listing: Listing, *settings) -> str:
  """A digest of every listed file's name, size and modification time, and of `settings` (image size, channels,
  ...): it changes when the folder's content or the decoding does."""
  digest = hashlib.sha256(repr(settings).encode())
  for split in sorted(listing.files):
    for relative, label in listing.files[split]:
      stat = os.stat(os.path.join(listing.root, relative))
      digest.update(f'{relative}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())
  return digest.hexdigest()[:16]


def _to_rgb_or_grey(image, channels: int):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if image.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):
    values = np.asarray(image, np.float64)
    values = values * 255.0 if image.mode == 'F' else values / 257.0
    image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), 'L')
  if image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in image.info:
    rgba = image.convert('RGBA')
    white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, rgba).convert('RGB')
  if channels == 1:
    return image if image.mode == 'L' else image.convert('RGB').convert('L')
  return image.convert('RGB')


def _resize(image, size: int, mode: str):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  width, height = image.size
  if (width, height) == (size, size):
    return image
  scale = size / (min(width, height) if mode == 'crop' else max(width, height))
  new = (max(1, round(width * scale)), max(1, round(height * scale)))
  image = image.resize(new, Image.Resampling.BILINEAR)
  if mode == 'crop':
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))
  canvas = Image.new(image.mode, (size, size), 0)
  canvas.paste(image, ((size - new[0]) // 2, (size - new[1]) // 2))
  return canvas


def decode(path: str, image_size: Optional[int], channels: int, resize: str = 'crop') -> np.ndarray:
  """One image file -> uint8 `[image_size, image_size, channels]` by the module's rule (`image_size=None` keeps the
  file's size: `[H, W, channels]`).

  Raises:
    BadImageError: an empty file, a file Pillow cannot identify, or a truncated or corrupt one; the message is
      `<path>: <reason>`.
  """
  from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  if os.path.getsize(path) == 0:
    raise BadImageError(path, 'empty file (0 bytes)')
  try:
    with Image.open(path) as image:
      image.seek(0)
      image.load()
      image = ImageOps.exif_transpose(image)
      image = _to_rgb_or_grey(image, channels)
      if image_size:
        image = _resize(image, image_size, resize)
      pixels = np.asarray(image, np.uint8)
  except UnidentifiedImageError:
    raise BadImageError(path, 'not an image Pillow can read (its extension says it is one)') from None
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
    raise BadImageError(path, f'truncated or corrupt image ({e})') from None
  return pixels.reshape(pixels.shape[:2] + (channels,))


def image_files(paths) -> list:
  """The image files named by `paths` (files, or folders read recursively with the listing's rules), in order."""
  found = []
  for path in paths:
    if os.path.isdir(path):
      found += [os.path.join(path, f) for f in _images_under(path)]
    elif os.path.isfile(path):
      found.append(path)
    else:
      raise MissingPathError(f'image file or folder {path!r} does not exist.')
  return found
