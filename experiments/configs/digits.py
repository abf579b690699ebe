"""The embedded default: the hybrid (fresh 2-layer BEiT -> all 6 pretrained MiniLM layers) on scikit-learn digits.

  python -m experiments.train --config=experiments/configs/digits.py --workdir=/tmp/cmtl_digits

Measured result: see BUILD_NOTES.md ("Foundation run").
"""

from cmtl_jax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.dataset = 'digits'
  return c
