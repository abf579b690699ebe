"""Published fine-tuning recipes as config changes: `beit_finetune(config)` applies BEiT's.

BEiT-base's ImageNet fine-tuning (Bao et al. 2021, arXiv:2106.08254, Appendix, "Hyperparameters for fine-tuning";
the command in unilm/beit's README and the defaults of its run_class_finetuning.py): AdamW, weight decay 0.05,
layer-wise LR decay 0.65, warmup 20 of 100 epochs then cosine decay, no gradient clipping, drop path 0.1; random
resized crop (0.08-1 of the area, aspect 3/4-4/3) with flips, RandAugment 'rand-m9-mstd0.5-inc1', random erasing
0.25, mixup 0.8 and CutMix 1.0 (switch probability 0.5), label smoothing 0.1; no EMA of the weights. Its peak LR
(4e-3 at batch 1024) is left to the search: the paper's question is a grid over learning rates.
"""

BEIT_FINETUNE = {
    'optim.optimizer': 'adam',
    'optim.weight_decay': 0.05,
    'optim.layer_decay': 0.65,
    'optim.warmup_fraction': 0.2,
    'optim.decay': 'cosine',
    'optim.grad_clip': 0.0,
    'model.beit.drop_path_rate': 0.1,
    'augment.scale': (0.08, 1.0),
    'augment.ratio': (3 / 4, 4 / 3),
    'augment.hflip': 0.5,
    'augment.auto_augment': 'rand-m9-mstd0.5-inc1',
    'augment.reprob': 0.25,
    'augment.mixup': 0.8,
    'augment.cutmix': 1.0,
    'augment.mixup_prob': 1.0,
    'augment.mixup_switch_prob': 0.5,
    'augment.smoothing': 0.1,
}


def apply(config, changes: dict) -> None:
  """Sets each dotted key of `changes` ('optim.layer_decay': 0.65) in `config` (an ml_collections ConfigDict)."""
  for key, value in changes.items():
    *groups, name = key.split('.')
    node = config
    for group in groups:
      node = node[group]
    node[name] = value


def beit_finetune(config, **overrides) -> None:
  """Applies BEiT's fine-tuning recipe (`BEIT_FINETUNE`, the module docstring's source) to `config`, then
  `overrides` as dotted keys with '__' for '.' (`augment__hflip=0.0` for data whose orientation carries the
  class)."""
  apply(config, {**BEIT_FINETUNE, **{k.replace('__', '.'): v for k, v in overrides.items()}})
