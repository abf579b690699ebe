r"""The embedded default: the hybrid (fresh 2-layer BEiT -> first 2 pretrained MiniLM layers) on scikit-learn digits.

  python -m experiments.train --config=experiments/configs/digits.py --workdir=/tmp/cmtl_digits

The BEiT-only baseline on the same data:

  python -m experiments.train --config=experiments/configs/digits.py --workdir=/tmp/cmtl_digits_beit \
      --config.variant=beit

Two MiniLM layers (of six) keep a run within a few minutes on a 2-core CPU; `--config.bert_layers=0` keeps all six
(about 3x slower per epoch, and it wants a smaller learning rate: see BUILD_NOTES.md, "Adapter and learning rates").
Measured result: BUILD_NOTES.md, "Measured".
"""

from cmtl_jax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.dataset = 'digits'
  c.bert_layers = 2
  c.num_epochs = 8
  return c
