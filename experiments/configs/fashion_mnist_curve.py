"""Fashion-MNIST learning curve: BEiT alone vs the hybrid vs the hybrid with random BERT layers, in the low-data
regime the paper motivates, each point 5-fold CV; CPU-sized.

  apt-get install dataset-fashion-mnist   # once: the idx files under /usr/share/datasets/fashion-mnist/
  python -m experiments.ablation --config=experiments/configs/fashion_mnist_curve.py --workdir=/tmp/cmtl_fashion

Reduced for the 2-core CPU: images resized 28 -> 12 px, a fresh 1-layer BEiT (patch 4, width 96) -> the first
MiniLM layer, ~200 optimiser steps of batch 32 per fit, 10 / 50 / 200 / 1000 training images per class; the
four-arm table at 100 images per class.

Measured on the CPU box (2 cores, 2026-11-28, shared with a test run): 30 min 14 s wall. Mean CV accuracy at
10 / 50 / 200 / 1000 images per class: beit 0.590 / 0.602 / 0.594 / 0.597, hybrid 0.670 / 0.740 / 0.771 / 0.779,
hybrid_random_bert 0.670 / 0.706 / 0.704 / 0.739. Four arms at 100 per class: beit 0.601, hybrid 0.744 (+23.8 %
relative, p = 0.004), hybrid_random_bert 0.724, hybrid_frozen_bert 0.748. BUILD_NOTES.md, "Reproduction".
"""

from experiments.configs import digits_ablation


def get_config():
  c = digits_ablation.get_config()
  c.dataset = 'fashion_mnist'
  c.beit.image_size = 12
  c.curve_sizes = (10, 50, 200, 1000)
  c.curve_arms = ('beit', 'hybrid', 'hybrid_random_bert')
  c.curve_steps = 200
  c.train_per_class = 100       # The four-arm table: 100 images per class, 8 epochs (~200 steps).
  c.num_epochs = 8
  return c
