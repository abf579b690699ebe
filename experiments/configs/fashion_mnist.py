"""The hybrid on Fashion-MNIST (Debian's dataset-fashion-mnist idx files), 28x28 images resized to 16x16.

  python -m experiments.train --config=experiments/configs/fashion_mnist.py --workdir=/tmp/cmtl_fashion

`data.train_per_class` keeps the run CPU-sized (200 images per class in the train + validation pool); set
`--config.data.train_per_class=0` for all 60,000 training images on an accelerator. The test split is the official
10,000-image one.
"""

from cmtl_jax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.data.dataset = 'fashion_mnist'
  c.data.train_per_class = 200
  c.model.bert_layers = 2
  c.optim.num_epochs = 8
  return c
