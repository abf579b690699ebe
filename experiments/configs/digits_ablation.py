"""The embedded-default ablation on digits: four arms by nested cross-validation, and a small learning curve.

  python -m experiments.ablation --config=experiments/configs/digits_ablation.py --workdir=/tmp/cmtl_ablation

The digits grid's model (digits_grid.py: a fresh 1-layer BEiT at 8 px, patch 4, width 96 -> the first MiniLM
layer), Adam, batch 32. Nested CV (cmtl_jax/ablation.py): 5 outer folds; inside each outer training set every arm
chooses its learning rate from {1e-4, 1e-3} and its training length (the best epoch up to 15, or up to 150
optimiser steps on small sets) on one stratified inner split holding out 20 %; the chosen setting is retrained on
the outer training set and scored on the outer fold. The learning curve runs the same protocol at 10 and 40
training images per class.

Measured: BUILD_NOTES.md, "Reproduction".
"""

from experiments.configs import digits_grid


def get_config():
  c = digits_grid.get_config()
  c.grid = {'learning_rate': (1e-4, 1e-3)}
  c.batch_size = 32
  c.optimizer = 'adam'
  c.num_epochs = 15             # The maximum training length; each arm picks its best epoch up to it.
  c.min_steps = 150
  c.eval_batch_size = 64
  c.cv = 5
  c.inner_cv = 1
  c.val_fraction = 0.2
  c.arms = ('beit', 'hybrid', 'hybrid_random_bert', 'hybrid_frozen_bert')
  c.curve_sizes = (10, 40)
  c.curve_arms = ('beit', 'hybrid', 'hybrid_random_bert')
  return c
