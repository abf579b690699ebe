"""Fashion-MNIST learning curve: BEiT alone vs the hybrid vs the hybrid with random BERT layers, in the low-data
regime the paper motivates, by nested cross-validation; CPU-sized.

  apt-get install dataset-fashion-mnist   # once: the idx files under /usr/share/datasets/fashion-mnist/
  python -m experiments.ablation --config=experiments/configs/fashion_mnist_curve.py --workdir=/tmp/cmtl_fashion

Reduced for the 2-core CPU (the report states each reduction in its protocol section): images resized 28 -> 12 px;
a fresh 1-layer BEiT (patch 4, width 96) -> the first MiniLM layer; 3 outer folds; one stratified inner split
holding out 20 % of each outer training set; a learning-rate list of two, {1e-4, 1e-3}; each arm's training length
chosen up to 48 epochs (or 300 optimiser steps on small sets); 10 / 50 / 200 / 500 training images per class, the
table at 500.

Measured on the CPU box (2 cores, AMD EPYC family 25 (Zen 3), 2026-11-30): 1 h 51 min wall, other processes
sharing the cores for part of it. Mean outer-fold accuracy at 10 / 50 / 200 / 500 per class: beit 0.549 / 0.678 /
0.785 / 0.834, hybrid 0.651 / 0.738 / 0.791 / 0.824, hybrid_random_bert 0.581 / 0.684 / 0.774 / 0.815, pixel logistic
regression 0.721 / 0.756 / 0.804 / 0.825. At 500, beit is the only transformer arm above the logistic regression;
hybrid (-0.001) and hybrid_random_bert (-0.010) end below it and are flagged. hybrid - beit at 500: -0.010, 95 %
interval [-0.069, +0.050]; hybrid - hybrid_random_bert: +0.009 [-0.042, +0.060]. BUILD_NOTES.md, "Reproduction".
"""

from experiments.configs import digits_ablation


def get_config():
  c = digits_ablation.get_config()
  c.dataset = 'fashion_mnist'
  c.beit.image_size = 12
  c.cv = 3
  c.num_epochs = 24
  c.min_steps = 800
  c.arms = ('beit', 'hybrid', 'hybrid_random_bert')
  c.curve_arms = ('beit', 'hybrid', 'hybrid_random_bert')
  c.curve_sizes = (10, 50, 200, 1000)
  c.train_per_class = 1000      # The table's size (also the curve's largest point, run once).
  return c
