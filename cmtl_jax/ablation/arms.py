"""The ablation's arms: each a setting of model keys, the fresh-BEiT twins, and what each arm's sides are.

- `beit`: BEiT alone (the paper's baseline);
- `hybrid`: BEiT -> pretrained BERT layers (the paper's model);
- `hybrid_random_bert`: the same architecture with the BERT layers freshly initialised (extra capacity without
  transferred knowledge);
- `hybrid_frozen_bert`: pretrained BERT layers frozen except their LayerNorms; BEiT, adapter and head train;
- `fresh_beit`, `hybrid_fresh_beit`, `hybrid_random_bert_fresh_beit`: the first three with `model.beit_path`'s BEiT
  freshly initialised (its architecture, random weights) where the others load its weights (e.g. from
  `experiments.pretrain`): what image pretraining adds.
"""

from typing import Sequence

from cmtl_jax.errors import ConfigError

ARMS = {
    'beit': {'model.variant': 'beit', 'model.bert_pretrained': True, 'model.freeze_bert': False,
             'model.beit_pretrained': True},
    'hybrid': {'model.variant': 'hybrid', 'model.bert_pretrained': True, 'model.freeze_bert': False,
               'model.beit_pretrained': True},
    'hybrid_random_bert': {'model.variant': 'hybrid', 'model.bert_pretrained': False, 'model.freeze_bert': False,
                           'model.beit_pretrained': True},
    'hybrid_frozen_bert': {'model.variant': 'hybrid', 'model.bert_pretrained': True, 'model.freeze_bert': True,
                           'model.beit_pretrained': True},
}
# Each arm with a pretrained BEiT (`model.beit_path`) and its twin: the same BEiT architecture with random weights.
FRESH_BEIT_TWINS = {'beit': 'fresh_beit', 'hybrid': 'hybrid_fresh_beit',
                    'hybrid_random_bert': 'hybrid_random_bert_fresh_beit'}
ARMS.update({twin: {**ARMS[arm], 'model.beit_pretrained': False} for arm, twin in FRESH_BEIT_TWINS.items()})
BASELINE = 'beit'


def validate_arms(arms: Sequence[str], key: str, beit_path: str) -> None:
  """Raises ConfigError for an empty, unknown or repeated arm, or a fresh-BEiT arm without `beit_path` (it would
  be its twin)."""
  unknown = [a for a in arms if a not in ARMS]
  if not arms or unknown:
    raise ConfigError(f'{key} must name at least one of {", ".join(ARMS)}; got {list(arms)!r}.')
  if len(set(arms)) != len(arms):
    raise ConfigError(f'{key} repeats an arm: {list(arms)!r}.')
  fresh = [a for a in arms if not ARMS[a]['model.beit_pretrained']]
  if fresh and not beit_path:
    raise ConfigError(f'{key} names {", ".join(fresh)}, which differ from their twins only by a fresh BEiT, but '
                      f'every BEiT is fresh without a checkpoint: set --config.model.beit_path (e.g. P/beit from '
                      f'python -m experiments.pretrain --workdir=P).')


def pretrained_sides(model, arm: str) -> dict:
  """Which sides of `arm` start from checkpoints, for an ablation whose model is `model` (a `resolve.ModelSpec`)."""
  settings = ARMS[arm]
  if not model.beit_path:
    beit = 'fresh (not pretrained)'
  elif settings['model.beit_pretrained']:
    beit = f'pretrained ({model.beit_path})'
  else:
    beit = f'fresh (random init, architecture of {model.beit_path})'
  if settings['model.variant'] == 'beit':
    bert = 'none'
  elif not settings['model.bert_pretrained']:
    bert = 'fresh (random init, same architecture)'
  else:
    bert = f'pretrained ({model.bert_path or "packaged all-MiniLM-L6-v2"})'
    if settings['model.freeze_bert']:
      bert += ', frozen except LayerNorms'
  return {'beit': beit, 'bert': bert}
