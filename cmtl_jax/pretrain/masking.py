"""Blockwise masking of the patch grid, BEiT's rule (Bao et al. 2021, "BEiT: BERT Pre-Training of Image
Transformers", Algorithm 1), drawn on the host with a seeded numpy Generator.

Rule: until `num_masked` patches are masked, draw a block: an area `s` uniform in [lo, left] patches (`left` = how
many are still to mask, `lo` = min(`min_block`, left)), an aspect ratio `r` log-uniform in [0.3, 1 / 0.3], rows
`round(sqrt(s r))`, columns `round(sqrt(s / r))`, and a uniform position on the grid. A block is kept when it fits the
grid, covers at least `lo` patches, and masks at least one and at most `left` new ones. After 10 refused draws one
unmasked patch is masked instead, so every mask has exactly `num_masked` patches (BEiT's generator may stop short).
"""

import math

import numpy as np

MIN_ASPECT = 0.3
ATTEMPTS = 10


def num_masked(grid: tuple, mask_ratio: float) -> int:
  """Patches masked per image: `round(mask_ratio * rows * columns)`, at least 1."""
  return max(1, int(round(mask_ratio * grid[0] * grid[1])))


def _draw_block(rng: np.random.Generator, mask: np.ndarray, left: int, lo: int) -> int:
  """Tries one block (in place); returns how many patches it newly masked (0 when refused)."""
  rows, cols = mask.shape
  area = rng.uniform(lo, left)
  aspect = math.exp(rng.uniform(math.log(MIN_ASPECT), -math.log(MIN_ASPECT)))
  height, width = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
  if not (1 <= height <= rows and 1 <= width <= cols) or height * width < lo:
    return 0
  top, leftmost = rng.integers(0, rows - height + 1), rng.integers(0, cols - width + 1)
  block = mask[top:top + height, leftmost:leftmost + width]
  new = height * width - int(block.sum())
  if not 0 < new <= left:
    return 0
  block[...] = True
  return new


def block_mask(rng: np.random.Generator, grid: tuple, count: int, min_block: int) -> np.ndarray:
  """One blockwise mask: bool `[rows, columns]` with exactly `count` True entries (see the module docstring).

  Raises:
    ValueError: `count` outside 1 .. rows x columns, or `min_block` < 1.
  """
  rows, cols = grid
  if not 1 <= count <= rows * cols or min_block < 1:
    raise ValueError(f'cannot mask {count} of {rows}x{cols} patches in blocks of at least {min_block}.')
  mask = np.zeros(grid, bool)
  masked = 0
  while masked < count:
    left = count - masked
    lo = min(min_block, left)
    added = 0
    for _ in range(ATTEMPTS):
      added = _draw_block(rng, mask, left, lo)
      if added:
        break
    if not added:  # No block fits what is left: one free patch.
      free = np.flatnonzero(~mask)
      mask.flat[free[rng.integers(len(free))]] = True
      added = 1
    masked += added
  return mask


def block_masks(rng: np.random.Generator, batch: int, grid: tuple, mask_ratio: float, min_block: int) -> np.ndarray:
  """`batch` masks, bool `[batch, rows * columns]` (row-major over the patch grid, the order of BEiT's patch
  tokens), each with `num_masked(grid, mask_ratio)` True entries."""
  count = num_masked(grid, mask_ratio)
  return np.stack([block_mask(rng, grid, count, min_block).reshape(-1) for _ in range(batch)])
