"""BEiT's position parameters for another image size than its checkpoint's: the absolute position embeddings'
patch grid resampled bicubically, the relative position bias tables' offset grids bilinearly.

Both are what Hugging Face's PyTorch `BeitModel` computes when it is given images of another size (transformers 5,
`BeitEmbeddings.interpolate_pos_encoding` and `BeitRelativePositionBias.forward`): `torch.nn.functional.interpolate`
with `align_corners=False` and no antialiasing, bicubic with PyTorch's a = -0.75, the CLS entries kept as they are.
A checkpoint resized here at load time computes what that model computes at the new size
(tests/test_checkpoints.py), and the parameters then have the new size's shapes, so they train as any others.
"""

import numpy as np

_CUBIC_A = -0.75  # PyTorch's bicubic coefficient (Keys 1981 uses -0.5).


def _cubic(t):
  """Keys' cubic convolution kernel at distances `t >= 0` (Keys 1981, eq. 15) with PyTorch's a = -0.75."""
  a = _CUBIC_A
  return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                  np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))


def resize_weights(size_in: int, size_out: int, mode: str) -> np.ndarray:
  """`[size_out, size_in]` float64: row i holds the weights of the input samples that make output sample i, for
  `mode` 'bicubic' (taps at floor(x) - 1 .. floor(x) + 2, clamped to the edges) or 'bilinear' (x clamped at 0),
  with `x = (i + 0.5) size_in / size_out - 0.5` (align_corners=False)."""
  scale = size_in / size_out
  weights = np.zeros((size_out, size_in))
  for i in range(size_out):
    x = (i + 0.5) * scale - 0.5
    if mode == 'bilinear':
      x = max(x, 0.0)
      low = min(int(np.floor(x)), size_in - 1)
      frac = x - low
      weights[i, low] += 1 - frac
      weights[i, min(low + 1, size_in - 1)] += frac
    elif mode == 'bicubic':
      low = int(np.floor(x))
      frac = x - low
      for tap, distance in zip(range(low - 1, low + 3), (1 + frac, frac, 1 - frac, 2 - frac)):
        weights[i, min(max(tap, 0), size_in - 1)] += _cubic(np.float64(distance))
    else:
      raise ValueError(f'unknown mode {mode!r}')
  return weights


def resize_grid(grid: np.ndarray, size_out: int, mode: str) -> np.ndarray:
  """A square grid `[n, n, channels]` resampled to `[size_out, size_out, channels]` (float32), separably."""
  rows = resize_weights(grid.shape[0], size_out, mode)
  cols = resize_weights(grid.shape[1], size_out, mode)
  return np.einsum('ij,jkc,lk->ilc', rows, grid.astype(np.float64), cols).astype(np.float32)


def resize_position_embeddings(table: np.ndarray, grid_out: int) -> np.ndarray:
  """BEiT's absolute position embeddings `[1, 1 + n*n, D]` (CLS first, then the n x n patches row-major) for an
  `grid_out x grid_out` patch grid: `[1, 1 + grid_out**2, D]`, the patch part resampled bicubically."""
  n = int(round((table.shape[1] - 1) ** 0.5))
  patches = table[0, 1:].reshape(n, n, -1)
  resized = resize_grid(patches, grid_out, 'bicubic').reshape(1, grid_out * grid_out, -1)
  return np.concatenate([table[:, :1].astype(np.float32), resized], axis=1)


def resize_relative_position_table(table: np.ndarray, window_out: int) -> np.ndarray:
  """A relative position bias table `[(2n-1)^2 + 3, heads]` (the `(2n - 1) x (2n - 1)` offsets row-major, then the
  three CLS rows) for an `window_out x window_out` patch grid: `[(2 window_out - 1)^2 + 3, heads]`, the offset grid
  resampled bilinearly, the CLS rows kept."""
  side = int(round((table.shape[0] - 3) ** 0.5))
  offsets = table[:-3].reshape(side, side, -1)
  resized = resize_grid(offsets, 2 * window_out - 1, 'bilinear').reshape(-1, table.shape[1])
  return np.concatenate([resized, table[-3:].astype(np.float32)], axis=0)
