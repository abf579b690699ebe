"""The k-means visual tokenizer: tokens are the nearest centroids of normalised patches; a saved tokenizer reads
back, one of another normalisation is refused."""

import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax.errors import ConfigError
from cmtl_jax.pretrain import tokenizer as tokenizer_lib


def test_tokens_are_the_nearest_centroids_of_normalised_patches():
  rng = np.random.default_rng(0)
  pixels = rng.uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
  tokenizer = tokenizer_lib.fit(rng.uniform(-1, 1, (40, 8, 8, 1)).astype(np.float32), 2, 8, 500, seed=0)
  got = np.asarray(tokenizer_lib.tokens(jnp.asarray(tokenizer.centroids), jnp.asarray(pixels), 2))
  # By hand: patch (r, c) of image b is pixels[b, 2r:2r+2, 2c:2c+2], row-major over the 4 x 4 grid.
  for b in range(3):
    for r in range(4):
      for c in range(4):
        x = pixels[b, 2 * r:2 * r + 2, 2 * c:2 * c + 2].reshape(-1)
        x = (x - x.mean()) / np.sqrt(((x - x.mean()) ** 2).mean() + tokenizer_lib.VARIANCE_FLOOR)
        assert got[b, 4 * r + c] == np.argmin(((tokenizer.centroids - x) ** 2).sum(-1))
  with pytest.raises(ConfigError, match='fewer than pretrain.vocab_size=64'):
    tokenizer_lib.fit(np.zeros((2, 8, 8, 1), np.float32), 2, 64, 500, seed=0)


def test_a_saved_tokenizer_reads_back_and_one_of_another_normalisation_is_refused(tmp_path):
  tokenizer = tokenizer_lib.PatchTokenizer(np.arange(12, dtype=np.float32).reshape(3, 4), 2)
  tokenizer.save(str(tmp_path / 'tokenizer.npz'))
  back = tokenizer_lib.PatchTokenizer.load(str(tmp_path / 'tokenizer.npz'))
  np.testing.assert_array_equal(back.centroids, tokenizer.centroids)
  assert back.patch_size == 2
  np.savez(tmp_path / 'other.npz', centroids=tokenizer.centroids, patch_size=2, variance_floor=0.5)
  with pytest.raises(ConfigError, match='fitted with variance floor 0.5'):
    tokenizer_lib.PatchTokenizer.load(str(tmp_path / 'other.npz'))
