"""The paper-sized grid, for a GPU/TPU: 6 batch sizes x 8 learning rates (48 pairs) x {SGDM, Adam} x 5 folds.

  python -m experiments.grid_search --config=experiments/configs/paper_grid.py --workdir=/tmp/cmtl_paper_grid

480 fits in 12 compiled programs (one per optimiser x batch size, 8 learning rates x 5 folds = 40 models each).
The paper publishes no grid values; ours (BUILD_NOTES.md, "Grid engine") span the usual fine-tuning range for both
optimisers. All six MiniLM layers after a fresh 4-layer BEiT at 32 px on Fashion-MNIST (1,000 images per class).
Not run on the CPU box.
"""

from cmtl_jax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.data.dataset = 'fashion_mnist'
  c.data.train_per_class = 1000
  c.model.bert_layers = 0
  c.model.beit.update(dict(image_size=32, patch_size=4, hidden_size=384, num_hidden_layers=4, num_attention_heads=6,
                           intermediate_size=1536))
  c.optim.num_epochs = 10
  c.search.grid = {'optim': {'batch_size': (8, 16, 32, 64, 128, 256),
                             'learning_rate': (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
                             'optimizer': ('sgdm', 'adam')}}
  c.search.cv = 5
  return c
