r"""The paper's full setting on Fashion-MNIST, CPU-sized: a BEiT pretrained here by masked image modelling on the
60,000 training images (labels unused), then the nested ablation with both sides pretrained, against the same arms
with that BEiT fresh.

  apt-get install dataset-fashion-mnist   # once
  python -m experiments.pretrain --config=experiments/configs/fashion_mnist_full.py --config.train_per_class=0 \
      --workdir=/tmp/cmtl_fashion_mim --probe
  python -m experiments.ablation --config=experiments/configs/fashion_mnist_full.py \
      --config.beit_path=/tmp/cmtl_fashion_mim/beit --workdir=/tmp/cmtl_fashion_full

The model and protocol are the Fashion-MNIST learning curve's (fashion_mnist_curve.py: 12 px, a 1-layer BEiT of
width 96 with patch 4, the first MiniLM layer, 3 outer folds, learning rate from {1e-4, 1e-3}, the best epoch up to
24 or 800 optimiser steps), at 10 / 50 / 200 images per class. Pretraining: 2-patch blocks or larger on the 3 x 3
patch grid, 4 of 9 patches masked, 256 k-means visual tokens, AdamW at 1.5e-3, 10 epochs.

Measured on the CPU box (2 cores, AMD EPYC family 25 (Zen 3), 2026-11-30, beside another job), first command:
pretraining 2 min 24 s (18,750 steps; masked-token loss 3.45 -> 2.11, accuracy 0.20 -> 0.41), 8 min 27 s with both
linear probes. Linear probe on the 10,000 test images: pretrained BEiT **0.8290**, the same BEiT with random weights
0.7000 (+0.129). The second command (six arms at three sizes) has not been run on this machine.
"""

from experiments.configs import fashion_mnist_curve


def get_config():
  c = fashion_mnist_curve.get_config()
  c.arms = ('beit', 'hybrid', 'hybrid_random_bert', 'fresh_beit', 'hybrid_fresh_beit',
            'hybrid_random_bert_fresh_beit')
  c.curve_arms = c.arms
  c.curve_sizes = (10, 50, 200)
  c.train_per_class = 200       # The table's size (also the curve's largest point).
  c.pretrain.min_block_patches = 2
  c.pretrain.num_epochs = 10
  return c
