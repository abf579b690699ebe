"""The ablation: BEiT alone vs the hybrid vs its controls, with CV on the same folds, paired tests, learning curve.

  python -m experiments.ablation --config=experiments/configs/digits_ablation.py --workdir=/tmp/cmtl_ablation
  python -m experiments.ablation --config=experiments/configs/digits_ablation.py --workdir=/tmp/cmtl_ablation_grid \
      --grid_workdir=/tmp/cmtl_grid   # hyperparameters = the best cell of a finished grid; heatmaps in the report

Writes report.md, ablation.json, ablation_bars.png and learning_curve.png into --workdir. Rerunning the same
command skips finished arms. Measured results: the config files' docstrings and BUILD_NOTES.md, "Reproduction".
"""

import sys

from absl import app
from absl import flags

from cmtl_jax import experiment
from experiments import cli

_CONFIG = cli.define_config('experiments/configs/digits_ablation.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints of finished arms and the report.',
                               required=True)
_GRID_WORKDIR = flags.DEFINE_string('grid_workdir', '', 'A finished grid_search workdir: use its best cell.')


def main(argv):
  del argv
  with cli.one_line_errors():
    experiment.ablation(_CONFIG.value, _WORKDIR.value, _GRID_WORKDIR.value,
                        commands=['python -m experiments.ablation ' + ' '.join(sys.argv[1:])])


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
