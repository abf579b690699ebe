"""The ablation: BEiT alone vs the hybrid vs its controls, with CV on the same folds, paired tests, learning curve.

  python -m experiments.ablation --config=experiments/configs/digits_ablation.py --workdir=/tmp/cmtl_ablation

Nested cross-validation: every arm chooses its own hyperparameters (the config's `search.grid`) and training length
inside each outer training set (cmtl_jax/ablation/). Writes report.md, ablation.json, ablation_bars.png,
training_curves.png and learning_curve.png into --workdir. Rerunning the same command resumes finished searches.
Measured results: the config files' docstrings and BUILD_NOTES.md, "Reproduction".
"""

import sys

from absl import app
from absl import flags

from cmtl_jax import experiment
from experiments import cli

_CONFIG = cli.define_config('experiments/configs/digits_ablation.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints of finished arms and the report.',
                               required=True)


def main(argv):
  del argv
  with cli.one_line_errors():
    cli.refuse_unread(_CONFIG.value, 'ablation')
    experiment.ablation(_CONFIG.value, _WORKDIR.value,
                        commands=['python -m experiments.ablation ' + ' '.join(sys.argv[1:])])


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
