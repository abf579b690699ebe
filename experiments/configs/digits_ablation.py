"""The embedded-default ablation on digits: four arms by nested cross-validation, and a small learning curve.

  python -m experiments.ablation --config=experiments/configs/digits_ablation.py --workdir=/tmp/cmtl_ablation

The digits grid's model (`common.small_hybrid`, 8 px). Nested CV (`common.nested_cv`, cmtl_jax/ablation/): 5 outer
folds; inside each outer training set every arm chooses its learning rate from {1e-4, 1e-3} and its training length
(the best epoch up to 15, or up to 150 optimiser steps on small sets) on one stratified inner split holding out 20 %;
the chosen setting is retrained on the outer training set and scored on the outer fold. The learning curve runs the
same protocol at 10 and 40 training images per class. Measured: BUILD_NOTES.md, "Reproduction" (C5).

`--config=experiments/configs/digits_ablation.py:recipe` trains every arm with the small-data fine-tuning recipe
(`common.small_data_recipe`, no flips: a digit's orientation is its class); each arm still chooses its own learning
rate and length.
"""

from cmtl_jax import config as config_lib
from experiments.configs import common


def get_config(variant: str = 'plain'):
  c = config_lib.base_config()
  c.data.dataset = 'digits'
  common.small_hybrid(c)
  common.nested_cv(c, cv=5, max_epochs=15, min_steps=150)
  c.ablation.arms = ('beit', 'hybrid', 'hybrid_random_bert', 'hybrid_frozen_bert')
  c.ablation.curve_sizes = (10, 40)
  c.ablation.curve_arms = ('beit', 'hybrid', 'hybrid_random_bert')
  if variant == 'recipe':
    common.small_data_recipe(c, hflip=0.0)
  elif variant != 'plain':
    raise ValueError(f"digits_ablation.py takes 'plain' (the default) or 'recipe', not {variant!r}")
  return c
