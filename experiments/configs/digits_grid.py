r"""The embedded-default grid: 2 batch sizes x 3 learning rates x {SGDM, Adam} x 5 stratified folds on digits.

  python -m experiments.grid_search --config=experiments/configs/digits_grid.py --workdir=/tmp/cmtl_grid

A CPU-sized hybrid (`common.small_hybrid`: a fresh 1-layer BEiT at 8 px, patch 4, width 96 -> the first MiniLM
layer), 4 epochs. Four compiled programs (one per optimiser x batch size), each training 3 learning rates x 5 folds
= 15 models. Successive halving on the same grid at 9 epochs:

  python -m experiments.grid_search --config=experiments/configs/digits_grid.py --config.search.kind=halving \
      --config.optim.num_epochs=9 --workdir=/tmp/cmtl_halving

Measured: BUILD_NOTES.md, "Measured" (C4; halving: C3).
"""

from cmtl_jax import config as config_lib
from experiments.configs import common


def get_config():
  c = config_lib.base_config()
  c.data.dataset = 'digits'
  common.small_hybrid(c)
  c.optim.num_epochs = 4
  c.search.grid = {'optim': {'batch_size': (32, 64), 'learning_rate': (1e-4, 1e-3, 1e-2),
                             'optimizer': ('sgdm', 'adam')}}
  c.search.cv = 5
  return c
