"""Fashion-MNIST learning curve: BEiT alone vs the hybrid vs the hybrid with random BERT layers, in the low-data
regime the paper motivates, by nested cross-validation; CPU-sized.

  apt-get install dataset-fashion-mnist   # once: the idx files under /usr/share/datasets/fashion-mnist/
  python -m experiments.ablation --config=experiments/configs/fashion_mnist_curve.py --workdir=/tmp/cmtl_fashion

Reduced for the 2-core CPU (the report states each reduction in its protocol section): images resized 28 -> 12 px;
a fresh 1-layer BEiT (patch 4, width 96) -> the first MiniLM layer; 3 outer folds; one stratified inner split
holding out 20 % of each outer training set; a learning-rate list of two, {1e-4, 1e-3}; each arm's training length
chosen up to 24 epochs (or 300 optimiser steps on small sets); 10 / 50 / 200 / 500 training images per class, the
table at 500.

Measured: BUILD_NOTES.md, "Reproduction".
"""

from experiments.configs import digits_ablation


def get_config():
  c = digits_ablation.get_config()
  c.dataset = 'fashion_mnist'
  c.beit.image_size = 12
  c.cv = 3
  c.num_epochs = 24
  c.min_steps = 300
  c.arms = ('beit', 'hybrid', 'hybrid_random_bert')
  c.curve_arms = ('beit', 'hybrid', 'hybrid_random_bert')
  c.curve_sizes = (10, 50, 200, 500)
  c.train_per_class = 500       # The table's size (also the curve's largest point, run once).
  return c
