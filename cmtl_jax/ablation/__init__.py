"""The ablation: does text pretraining help the image model? Nested cross-validation, every arm tuned on its own.

  arms.py        the arms (settings of model keys) and their fresh-BEiT twins
  nested.py      nested CV of an arm on the engine: inner selection of cell and epoch, final fits, sizes
  references.py  the reference rows: pixel logistic regression, most frequent class
  compare.py     paired differences with corrected intervals and t-tests, flags, the report's sentences

`run(config, workdir)` runs `ablation.arms` at `data.train_per_class` and `ablation.curve_arms` at every
`ablation.curve_sizes` entry.
"""

import os
from typing import Callable, Optional

from cmtl_jax import resolve
from cmtl_jax import task as task_lib
from cmtl_jax.ablation import arms as arms_lib
from cmtl_jax.ablation import compare as compare_lib
from cmtl_jax.ablation import nested
from cmtl_jax.ablation.arms import ARMS, BASELINE, FRESH_BEIT_TWINS
from cmtl_jax.ablation.compare import conclusions


def run(config, workdir: str = '', log: Optional[Callable] = print,
        build_task: Callable = task_lib.ClassifierTask) -> dict:
  """The ablation a config describes: `ablation.arms` at `data.train_per_class`, and `ablation.curve_arms` at every
  `ablation.curve_sizes` entry, by nested CV. A size shared by both runs once. Every size is checked before any arm
  trains. Finished work is saved under `workdir` (`n<size>/<arm>/...`) and resumed on a rerun.

  Returns `{'points': {size: nested.run_point result + 'table': compare(...)}, 'table_size': size,
  'curve_sizes': [...], 'run': the resolved run}` (sizes as strings, for JSON).

  Raises:
    ConfigError: bad keys or values, unknown or repeated arms, a size too small for the folds or a batch.
  """
  r = resolve.resolve(config, 'ablation')
  arms_lib.validate_arms(r.ablation.arms, 'ablation.arms', r.model.beit_path)
  if r.ablation.curve_sizes:
    arms_lib.validate_arms(r.ablation.curve_arms, 'ablation.curve_arms', r.model.beit_path)
  nested.search_space(r)
  points = nested.plan(config, r)
  wanted = {r.data.train_per_class: list(r.ablation.arms)}
  for size in r.ablation.curve_sizes:
    wanted.setdefault(size, [])
    wanted[size] += [a for a in r.ablation.curve_arms if a not in wanted[size]]
  out = {}
  for size, arms in wanted.items():
    result = nested.run_point(config, [a for a in ARMS if a in arms], points[size],
                              os.path.join(workdir, f'n{size}') if workdir else '', log, build_task)
    result['table'] = compare_lib.compare(result)
    out[str(size)] = result
  return {'points': out, 'table_size': str(r.data.train_per_class),
          'curve_sizes': [str(s) for s in r.ablation.curve_sizes], 'run': r.to_dict()}


__all__ = ['ARMS', 'BASELINE', 'FRESH_BEIT_TWINS', 'conclusions', 'run']
