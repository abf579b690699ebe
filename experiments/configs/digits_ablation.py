"""The embedded-default ablation on digits: four arms by nested cross-validation, and a small learning curve.

  python -m experiments.ablation --config=experiments/configs/digits_ablation.py --workdir=/tmp/cmtl_ablation

The digits grid's model (digits_grid.py: a fresh 1-layer BEiT at 8 px, patch 4, width 96 -> the first MiniLM
layer), Adam, batch 32. Nested CV (cmtl_jax/ablation.py): 5 outer folds; inside each outer training set every arm
chooses its learning rate from {1e-4, 1e-3} and its training length (the best epoch up to 15, or up to 150
optimiser steps on small sets) on one stratified inner split holding out 20 %; the chosen setting is retrained on
the outer training set and scored on the outer fold. The learning curve runs the same protocol at 10 and 40
training images per class.

Measured on the CPU box (2 cores, AMD EPYC family 25 (Zen 3), 2026-11-30): 15 min 16 s wall, peak RSS 3.2 GB. Mean accuracy
+- std over the 5 outer folds: beit 0.9694 +- 0.0056, hybrid 0.9798 +- 0.0071 (+0.0104 vs beit, 95 % interval
[-0.0110, +0.0319], corrected p = 0.25), hybrid_random_bert 0.9624 +- 0.0104, hybrid_frozen_bert 0.9770 +- 0.0061;
pixel logistic regression 0.9708 +- 0.0087 (beit and hybrid_random_bert end below it and are flagged). No interval
excludes zero. Learning curve (10 / 40 per class): beit 0.700 / 0.905, hybrid 0.680 / 0.925, hybrid_random_bert
0.700 / 0.925, logistic regression 0.860 / 0.968. BUILD_NOTES.md, "Reproduction".
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
