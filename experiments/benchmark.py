"""Performance benchmark: train-step MFU, PyTorch eager twin, stacked vs loop, successive halving vs exhaustive.

  python -m experiments.benchmark --workdir=/tmp/cmtl_bench

Prints each measurement and writes <workdir>/benchmark.json with `step_mfu` (model FLOP/s / the matmul peak
measured in the same run), `recipe_step_ratio` (the step with the whole fine-tuning recipe / the plain step; both
from --parts=mfu),
`torch_speedup` (PyTorch time / ours, per example; needs `pip install torch==2.13.0`),
`stacked_over_loop` (one grid group stacked / the same models one by one) and `halving_epoch_fraction`. The step
parts use --config (default: the embedded digits hybrid), the grid parts --grid_config (the digits grid); the
halving part runs the exhaustive search and halving on it, at --grid_config.optim.num_epochs=9 by default here.
Fewer parts: --parts=mfu,torch. A bf16 step: --config.model.dtype=bfloat16 (GPU/TPU; its MFU is over the bf16 peak).
--parts=check compares the default device with the host CPU (for GPUs/TPUs; experiments/device_check.sh).
MFU, the recipe's and the PyTorch ratio are the median of --rounds interleaved rounds (peak, our step, the recipe's
step, PyTorch step). Add
--compilation_cache_dir=DIR so that the stacked part's one-by-one loop compiles its program once, not per model.
--parts=profile traces one epoch of the step with jax.profiler and prints where its time goes, by kind of HLO
instruction (matmuls, transposes, elementwise fusions, ...) and the longest instructions with the layer they come
from, twice: summed over the ops' events, and by wall time (which counts the work of asynchronous ops, such as
XLA:CPU's Eigen dots, that goes on after their events end) (BUILD_NOTES.md, "CPU benchmark").

Measured: BUILD_NOTES.md, "Measured" (the command above on the 2-core CPU box, and the GPU check).
"""

import json
import os

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import benchmarking as benchmark
from experiments import cli

_CONFIG = cli.define_config('experiments/configs/digits.py')
_GRID_CONFIG = config_flags.DEFINE_config_file('grid_config', 'experiments/configs/digits_grid.py',
                                               'Grid config for the stacked and halving parts.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where benchmark.json is written.', required=True)
_PARTS = flags.DEFINE_list('parts', ['mfu', 'torch', 'stacked', 'halving'],
                           f'Which of {", ".join(benchmark.PARTS)} to run.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Training steps per timed call (step parts).')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved rounds of (matmul peak, our step, the recipe\'s step, PyTorch '
                              'step); the ratios reported are the median round\'s (step parts).')
_STACKED_EPOCHS = flags.DEFINE_integer('stacked_epochs', 3, 'Epochs per model in the stacked part (the first, '
                                       'which compiles, is not timed).')
_VMAP_WIDTHS = flags.DEFINE_list('vmap_widths', ['1'], 'Stacked programs to time (0 = all models vectorised).')
_HALVING_EPOCHS = flags.DEFINE_integer('halving_epochs', 9, 'num_epochs of the grid in the halving part.')


def main(argv):
  del argv
  with cli.one_line_errors():
    unknown = set(_PARTS.value) - set(benchmark.PARTS)
    if unknown:
      raise cli.ConfigError(f'unknown --parts {sorted(unknown)}: choose from {", ".join(benchmark.PARTS)}.')
    grid_config = _GRID_CONFIG.value
    if 'halving' in _PARTS.value:
      grid_config.optim.num_epochs = _HALVING_EPOCHS.value
    result = benchmark.run(_CONFIG.value, grid_config, parts=_PARTS.value, steps=_STEPS.value, rounds=_ROUNDS.value,
                           stacked_epochs=_STACKED_EPOCHS.value, vmap_widths=[int(w) for w in _VMAP_WIDTHS.value])
    os.makedirs(_WORKDIR.value, exist_ok=True)
    with open(os.path.join(_WORKDIR.value, 'benchmark.json'), 'w') as f:
      json.dump(result, f, indent=1, default=str)
    print(json.dumps({k: result[k] for k in ('step_mfu', 'recipe_step_ratio', 'torch_speedup', 'stacked_over_loop',
                                             'halving_epoch_fraction')}))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
