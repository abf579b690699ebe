"""Fashion-MNIST learning curve: BEiT alone vs the hybrid vs the hybrid with random BERT layers, in the low-data
regime the paper motivates, by nested cross-validation; CPU-sized.

  apt-get install dataset-fashion-mnist   # once: the idx files under /usr/share/datasets/fashion-mnist/
  python -m experiments.ablation --config=experiments/configs/fashion_mnist_curve.py --workdir=/tmp/cmtl_fashion

Reduced for the 2-core CPU (the report states each reduction in its protocol section): images resized 28 -> 12 px;
the small hybrid (`common.small_hybrid`: a fresh 1-layer BEiT, patch 4, width 96 -> the first MiniLM layer); 3 outer
folds; one stratified inner split holding out 20 % of each outer training set; a learning-rate list of two, {1e-4,
1e-3}; each arm's training length chosen up to 24 epochs (or 800 optimiser steps on small sets); 10 / 50 / 200 /
1,000 training images per class, the table at 1,000. Measured: BUILD_NOTES.md, "Reproduction" (C8).

`--config=experiments/configs/fashion_mnist_curve.py:recipe` trains every arm with the small-data fine-tuning recipe
(`common.small_data_recipe`, with flips); each arm still chooses its own learning rate and length.
"""

from cmtl_jax import config as config_lib
from experiments.configs import common


def get_config(variant: str = 'plain'):
  c = config_lib.base_config()
  c.data.dataset = 'fashion_mnist'
  c.data.train_per_class = 1000  # The table's size (also the curve's largest point, run once).
  common.small_hybrid(c, image_size=12)
  common.nested_cv(c, cv=3, max_epochs=24, min_steps=800)
  c.ablation.arms = ('beit', 'hybrid', 'hybrid_random_bert')
  c.ablation.curve_arms = ('beit', 'hybrid', 'hybrid_random_bert')
  c.ablation.curve_sizes = (10, 50, 200, 1000)
  if variant == 'recipe':
    common.small_data_recipe(c, hflip=0.5)
  elif variant != 'plain':
    raise ValueError(f"fashion_mnist_curve.py takes 'plain' (the default) or 'recipe', not {variant!r}")
  return c
