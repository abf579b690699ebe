r"""The embedded default: the hybrid (fresh 2-layer BEiT -> first 2 pretrained MiniLM layers) on scikit-learn digits.

  python -m experiments.train --config=experiments/configs/digits.py --workdir=/tmp/cmtl_digits

The BEiT-only baseline on the same data:

  python -m experiments.train --config=experiments/configs/digits.py --workdir=/tmp/cmtl_digits_beit \
      --config.model.variant=beit

The BEiT is `config.FRESH_BEIT` (16 px, patch 4, width 192, 2 layers). Two MiniLM layers (of six) keep a run within a
few minutes on a 2-core CPU; `--config.model.bert_layers=0` keeps all six (about 3x slower per epoch, and it wants a
smaller learning rate: BUILD_NOTES.md, "Adapter and learning rates"). Measured: BUILD_NOTES.md, "Measured" (C1).
"""

from cmtl_jax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.data.dataset = 'digits'
  c.model.bert_layers = 2
  c.optim.num_epochs = 8
  return c
