r"""The paper's full setting on Fashion-MNIST, CPU-sized: a BEiT pretrained here by masked image modelling on the
60,000 training images (labels unused), then the nested ablation with both sides pretrained, against the same arms
with that BEiT fresh.

  apt-get install dataset-fashion-mnist   # once
  python -m experiments.pretrain --config=experiments/configs/fashion_mnist_full.py \
      --config.data.train_per_class=0 --workdir=/tmp/cmtl_fashion_mim --probe
  python -m experiments.ablation --config=experiments/configs/fashion_mnist_full.py \
      --config.model.beit_path=/tmp/cmtl_fashion_mim/beit --workdir=/tmp/cmtl_fashion_full

The model and protocol are the Fashion-MNIST learning curve's (12 px, `common.small_hybrid`, `common.nested_cv` with
3 outer folds, learning rate from {1e-4, 1e-3}, the best epoch up to 24 or 800 optimiser steps), at 10 / 50 / 200
images per class. Pretraining: 2-patch blocks or larger on the 3 x 3 patch grid, 4 of 9 patches masked, 256 k-means
visual tokens, AdamW at 1.5e-3, 10 epochs. Measured: BUILD_NOTES.md, "Reproduction" (C9, C11).
"""

from cmtl_jax import config as config_lib
from experiments.configs import common


def get_config():
  c = config_lib.base_config()
  c.data.dataset = 'fashion_mnist'
  c.data.train_per_class = 200  # The table's size (also the curve's largest point).
  common.small_hybrid(c, image_size=12)
  common.nested_cv(c, cv=3, max_epochs=24, min_steps=800)
  c.ablation.arms = ('beit', 'hybrid', 'hybrid_random_bert', 'fresh_beit', 'hybrid_fresh_beit',
                     'hybrid_random_bert_fresh_beit')
  c.ablation.curve_arms = c.ablation.arms
  c.ablation.curve_sizes = (10, 50, 200)
  c.pretrain.min_block_patches = 2
  c.pretrain.num_epochs = 10
  return c
