"""Fashion-MNIST learning curve: BEiT alone vs the hybrid vs the hybrid with random BERT layers, in the low-data
regime the paper motivates, by nested cross-validation; CPU-sized.

  apt-get install dataset-fashion-mnist   # once: the idx files under /usr/share/datasets/fashion-mnist/
  python -m experiments.ablation --config=experiments/configs/fashion_mnist_curve.py --workdir=/tmp/cmtl_fashion

Reduced for the 2-core CPU (the report states each reduction in its protocol section): images resized 28 -> 12 px;
a fresh 1-layer BEiT (patch 4, width 96) -> the first MiniLM layer; 3 outer folds; one stratified inner split
holding out 20 % of each outer training set; a learning-rate list of two, {1e-4, 1e-3}; each arm's training length
chosen up to 24 epochs (or 800 optimiser steps on small sets); 10 / 50 / 200 / 1,000 training images per class, the
table at 1,000.

Measured on the CPU box (2 cores, AMD EPYC family 25 (Zen 3), 2026-11-30): 2 h 28 min wall, other jobs sharing the
cores for most of it (5 min of it paused). Mean outer-fold accuracy at 1,000 per class: beit 0.8421, hybrid 0.8524,
hybrid_random_bert 0.8347, pixel logistic regression 0.8333: every transformer arm above it. hybrid - beit +0.0103,
95 % interval [-0.0193, +0.0399]; hybrid - hybrid_random_bert +0.0177 [-0.0102, +0.0456]: no interval excludes zero.
At 10 / 50 / 200 per class every arm is below the logistic regression (beit 0.590 / 0.692 / 0.772, hybrid 0.581 /
0.712 / 0.777, hybrid_random_bert 0.581 / 0.686 / 0.786, logistic regression 0.721 / 0.756 / 0.804).
BUILD_NOTES.md, "Reproduction".
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
