"""The embedded-default grid: 2 batch sizes x 3 learning rates x {SGDM, Adam} x 5 stratified folds on digits.

  python -m experiments.grid_search --config=experiments/configs/digits_grid.py --workdir=/tmp/cmtl_grid

A CPU-sized hybrid: a fresh 1-layer BEiT (8 px input, patch 4, width 96) -> the first MiniLM layer. Four compiled
programs (one per optimiser x batch size), each training 3 learning rates x 5 folds = 15 models at once.
Measured on the CPU box (2 cores, 24 GiB, 2026-11-28): 7 min 26 s wall (4 groups of 15 models x 4 epochs, then
the refit); best cell batch_size=32, learning_rate=1e-4, adam: mean CV accuracy 0.9569 +- 0.0107; best SGDM cell
batch_size=32, learning_rate=1e-2: 0.9520 +- 0.0040; refit model on the held-out test split: accuracy 0.9528.
BUILD_NOTES.md, "Measured".

Successive halving on the same grid at 9 epochs (`--config.search=halving --config.num_epochs=9`, factor 3): rounds
(12 cells, 1 epoch), (4, 3), (2, 9) = 160 of the exhaustive 540 model-epochs (0.296), the same best cell (Adam,
batch 32, LR 1e-4, 0.9833) as the exhaustive search at 9 epochs; 292 s vs 1112 s (CPU box, 2026-11-28, through
`python -m experiments.benchmark --parts=halving`). BUILD_NOTES.md, "Successive halving".
"""

from cmtl_jax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.dataset = 'digits'
  c.bert_layers = 1
  c.beit.update(dict(image_size=8, patch_size=4, hidden_size=96, num_hidden_layers=1, num_attention_heads=3,
                     intermediate_size=384))
  c.num_epochs = 4
  c.grid.batch_size = (32, 64)
  c.grid.learning_rate = (1e-4, 1e-3, 1e-2)
  c.grid.optimizer = ('sgdm', 'adam')
  c.cv = 5
  return c
