"""Helpers the presets share: each preset is `base_config()` plus these, one level deep, so a change to one preset
cannot change what another's recorded result describes (each figure's command is in BUILD_NOTES.md, "Measured")."""


def small_hybrid(c, image_size: int = 8) -> None:
  """The CPU-sized hybrid of the grid and the ablations: a fresh 1-layer BEiT (patch 4, width 96, 3 heads, MLP 384)
  at `image_size` px -> the first MiniLM layer."""
  c.model.bert_layers = 1
  c.model.beit.update(dict(image_size=image_size, patch_size=4, hidden_size=96, num_hidden_layers=1,
                           num_attention_heads=3, intermediate_size=384))


def nested_cv(c, *, cv: int, max_epochs: int, min_steps: int, learning_rates=(1e-4, 1e-3)) -> None:
  """The ablation's protocol on a CPU: Adam at batch 32, every arm choosing its learning rate from
  `learning_rates` and its best epoch up to `max_epochs` (or `min_steps` optimiser steps on small sets) on one
  stratified inner split holding out 20 %, inside `cv` outer folds."""
  c.search.grid = {'optim': {'learning_rate': tuple(learning_rates)}}
  c.search.cv = cv
  c.optim.optimizer = 'adam'
  c.optim.batch_size = 32
  c.optim.num_epochs = max_epochs
  c.optim.eval_batch_size = 64
  c.ablation.min_steps = min_steps
  c.ablation.inner_cv = 1
  c.data.val_fraction = 0.2
