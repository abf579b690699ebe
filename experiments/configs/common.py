"""Helpers the presets share: each preset is `base_config()` plus these, one level deep, so a change to one preset
cannot change what another's recorded result describes (each figure's command is in BUILD_NOTES.md, "Measured")."""

from cmtl_jax import recipes


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


def small_data_recipe(c, *, hflip: float) -> None:
  """The fine-tuning recipe for a fresh BEiT on a few hundred small images: BEiT's (`recipes.beit_finetune`) without
  mixup and CutMix, with crops of 50-100 % of the image, RandAugment at magnitude 5 and no layer decay (the BEiT
  side starts random). `hflip`: 0 where orientation carries the class (digits). Measured against no augmentation in
  BUILD_NOTES.md ("Measured", C10; "Reproduction")."""
  recipes.beit_finetune(c, augment__mixup=0.0, augment__cutmix=0.0, augment__scale=(0.5, 1.0),
                        augment__auto_augment='rand-m5-mstd0.5-inc1', augment__hflip=hflip, optim__layer_decay=1.0)
