"""Blockwise masks: the configured ratio, blocks, a hand-checked 2 x 2 grid, impossible counts refused."""

import numpy as np
import pytest
from scipy import ndimage

from cmtl_jax.pretrain import masking


def _small_components(mask, min_block):
  """Patches in 4-connected masked regions smaller than `min_block`."""
  labels, count = ndimage.label(mask)
  sizes = np.bincount(labels.reshape(-1), minlength=count + 1)[1:]
  return int(sizes[sizes < min_block].sum())


def blocky(mask, min_block) -> bool:
  """Blockwise masking leaves fewer than `min_block` patches outside regions of `min_block` or more: only the last
  blocks, drawn when fewer than `min_block` patches were left to mask, may be smaller."""
  return _small_components(mask, min_block) < min_block


def test_block_masks_have_the_configured_ratio_and_are_blocks():
  rng = np.random.default_rng(0)
  masks = masking.block_masks(rng, 300, (8, 8), 0.4, 4).reshape(300, 8, 8)
  assert masking.num_masked((8, 8), 0.4) == 26  # round(0.4 * 64)
  np.testing.assert_array_equal(masks.sum(axis=(1, 2)), 26)
  assert all(blocky(m, 4) for m in masks)
  # The check can fail: masks of the same ratio drawn patch by patch are mostly not blocks.
  scattered = np.stack([rng.permutation(64) < 26 for _ in range(300)]).reshape(300, 8, 8)
  assert np.mean([blocky(m, 4) for m in scattered]) < 0.2
  # Seeded: the same Generator seed gives the same masks.
  again = masking.block_masks(np.random.default_rng(0), 300, (8, 8), 0.4, 4).reshape(300, 8, 8)
  np.testing.assert_array_equal(again, masks)


def test_a_2x2_grid_masks_only_adjacent_pairs():
  """Hand-checked: 2 of 4 patches in blocks of at least 2 can only be a row or a column of the 2 x 2 grid, never a
  diagonal; a 1 x 1 block covers too little and a 3-long one does not fit."""
  rng = np.random.default_rng(1)
  seen = {tuple(masking.block_mask(rng, (2, 2), 2, 2).reshape(-1)) for _ in range(200)}
  rows_and_columns = {(1, 1, 0, 0), (0, 0, 1, 1), (1, 0, 1, 0), (0, 1, 0, 1)}
  assert seen == {tuple(bool(v) for v in pair) for pair in rows_and_columns}


def test_masking_refuses_impossible_counts():
  with pytest.raises(ValueError, match='cannot mask 5 of 2x2'):
    masking.block_mask(np.random.default_rng(0), (2, 2), 5, 1)
