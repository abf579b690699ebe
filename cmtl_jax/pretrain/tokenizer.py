"""The visual tokenizer of masked image modelling: k-means centroids over normalised patches.

BEiT (Bao et al. 2021) predicts the codes of DALL-E's discrete VAE; those weights cannot be downloaded here, so the
tokens are the nearest of `vocab_size` centroids that scikit-learn's `MiniBatchKMeans` fits on a sample of the
training images' patches. A patch is normalised to zero mean and unit variance over its own pixels (a flat patch,
whose variance is below `VARIANCE_FLOOR`, goes to near zero), so tokens describe shape and edges rather than
brightness. Saved as an `.npz` beside the pretraining checkpoint.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from cmtl_jax.errors import ConfigError
from cmtl_jax.models import beit as beit_lib

VARIANCE_FLOOR = 1e-2  # On BEiT's [-1, 1] pixel scale: near-flat patches are not blown up into noise.


def normalise(x):
  """Each patch vector (last axis) to zero mean and unit variance, the variance floored at `VARIANCE_FLOOR`."""
  x = x - x.mean(axis=-1, keepdims=True)
  return x / (((x ** 2).mean(axis=-1, keepdims=True) + VARIANCE_FLOOR) ** 0.5)


def tokens(centroids, pixels, patch_size: int):
  """The visual token of every patch: int32 `[B, patches]`, the index of the nearest centroid (squared Euclidean
  distance) of the normalised patch. `centroids` float32 `[vocab, p * p * C]`, `pixels` `[B, H, W, C]` as the model
  sees them (BEiT's [-1, 1]). Runs under jit."""
  x = normalise(beit_lib.patchify(pixels, patch_size))
  distance = (centroids ** 2).sum(-1) - 2 * jnp.einsum('bnd,vd->bnv', x, centroids)  # |x|^2 is the same for all.
  return jnp.argmin(distance, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class PatchTokenizer:
  """`centroids`: float32 `[vocab_size, patch_size * patch_size * channels]`."""
  centroids: np.ndarray
  patch_size: int

  @property
  def vocab_size(self) -> int:
    return self.centroids.shape[0]

  def save(self, path: str) -> None:
    np.savez(path, centroids=self.centroids, patch_size=self.patch_size, variance_floor=VARIANCE_FLOOR)

  @classmethod
  def load(cls, path: str) -> 'PatchTokenizer':
    """Raises ConfigError for a tokenizer fitted with another `VARIANCE_FLOOR` (its tokens would not be these)."""
    with np.load(path) as f:
      if float(f['variance_floor']) != VARIANCE_FLOOR:
        raise ConfigError(f'{path} was fitted with variance floor {float(f["variance_floor"])}, this version '
                          f'normalises patches with {VARIANCE_FLOOR}: pretrain in a new --workdir.')
      return cls(np.asarray(f['centroids'], np.float32), int(f['patch_size']))


def fit(pixels: np.ndarray, patch_size: int, vocab_size: int, num_patches: int, seed: int) -> PatchTokenizer:
  """Fits the centroids on `num_patches` patches drawn without replacement (all when there are fewer) from
  `pixels` (float `[N, H, W, C]`, BEiT's [-1, 1]), with `MiniBatchKMeans(random_state=seed)`.

  Raises:
    ConfigError: fewer distinct patches than `vocab_size`.
  """
  from sklearn.cluster import MiniBatchKMeans  # pylint: disable=g-import-not-at-top
  x = beit_lib.patchify(np.asarray(pixels, np.float32), patch_size)
  x = normalise(x.reshape(-1, x.shape[-1]))
  rng = np.random.default_rng(seed)
  if len(x) > num_patches:
    x = x[rng.choice(len(x), num_patches, replace=False)]
  distinct = len(np.unique(x.round(4), axis=0))
  if distinct < vocab_size:
    raise ConfigError(f'the tokenizer sample holds {distinct} distinct patches, fewer than pretrain.vocab_size='
                      f'{vocab_size}: lower it, or raise pretrain.tokenizer_patches.')
  kmeans = MiniBatchKMeans(n_clusters=vocab_size, random_state=seed, n_init=3, batch_size=4096)
  kmeans.fit(x)
  return PatchTokenizer(kmeans.cluster_centers_.astype(np.float32), patch_size)
