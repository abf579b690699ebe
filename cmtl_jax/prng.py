"""Dropout keys whose bits are jax's default threefry bits, from a hash that XLA:CPU fuses instead of looping.

jax lowers its `threefry2x32` primitive on CPU as a rolled loop of five trips (it compiles faster). In a training
step every dropout site then runs that loop over its own `[batch, tokens, width]` counters, with copies of them
each trip and no fusion with the dropout's compare. `UNROLLED_THREEFRY` is a PRNG implementation with threefry's
key layout, seeding, `split` and `fold_in`, whose `random_bits` computes the same Threefry-2x32 hash (Salmon et
al., SC 2011: 20 rounds, a key injection every 4) written out in `lax` ops: one fused elementwise loop. Its bits
equal `jax.random.bits` of the default implementation bit for bit (with `jax_threefry_partitionable`, jax's
default; otherwise, for 64-bit draws and for arrays of 2^32 elements or more it defers to jax's own), so a model
trained with it is the same model, only faster (BUILD_NOTES.md, "CPU benchmark").
"""

import math

import jax
from jax import lax
import jax.extend.random as jex_random
import jax.numpy as jnp
import numpy as np

_THREEFRY = jex_random.threefry_prng_impl
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x, bits: int):
  return lax.shift_left(x, np.uint32(bits)) | lax.shift_right_logical(x, np.uint32(32 - bits))


def threefry2x32(k1, k2, x1, x2):
  """The Threefry-2x32 hash of counter words `(x1, x2)` under key words `(k1, k2)`, all uint32 (broadcast)."""
  keys = (k1, k2, k1 ^ k2 ^ _PARITY)
  x1, x2 = x1 + keys[0], x2 + keys[1]
  for block in range(5):
    for rotation in _ROTATIONS[block % 2]:
      x1 = x1 + x2
      x2 = _rotate_left(x2, rotation) ^ x1
    x1 = x1 + keys[(block + 1) % 3]
    x2 = x2 + keys[(block + 2) % 3] + np.uint32(block + 1)
  return x1, x2


def _random_bits(key, bit_width: int, shape):
  size = math.prod(shape)
  if bit_width == 64 or size >= 2 ** 32 or not jax.config.jax_threefry_partitionable:
    return _THREEFRY.random_bits(key, bit_width, shape)
  # jax's partitionable threefry hashes each element's row-major index as a (high, low) pair of uint32 words.
  low = lax.iota(np.uint32, size).reshape(shape) if size else jnp.zeros(shape, np.uint32)
  bits1, bits2 = threefry2x32(key[0], key[1], jnp.zeros_like(low), low)
  return lax.convert_element_type(bits1 ^ bits2, np.dtype(f'uint{bit_width}'))


UNROLLED_THREEFRY = jex_random.define_prng_impl(
    key_shape=_THREEFRY.key_shape, seed=_THREEFRY.seed, split=_THREEFRY.split, random_bits=_random_bits,
    fold_in=_THREEFRY.fold_in, name='threefry2x32_unrolled', tag='tfu')

# The dtype of a default threefry key, traced, not computed: importing this module must not compile anything
# (the first compilation fixes jax's persistent cache directory, which the entry points set from a flag later).
_DEFAULT_DTYPE = jax.eval_shape(lambda: jax.random.key(0, impl='threefry2x32')).dtype


def unrolled(key):
  """`key` (a typed key) as an `UNROLLED_THREEFRY` key when it is a default threefry key (the same bits from then
  on, split and folded alike); a key of any other implementation is returned as it is."""
  if key.dtype != _DEFAULT_DTYPE:
    return key
  return jax.random.wrap_key_data(jax.random.key_data(key), impl=UNROLLED_THREEFRY)
