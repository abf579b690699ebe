r"""Trains one classifier from a config file and writes metrics.json and a checkpoint into --workdir.

  python -m experiments.train --config=experiments/configs/digits.py --workdir=/tmp/cmtl_digits \
      [--config.optim.optimizer=sgdm --config.optim.learning_rate=1e-3 --config.model.variant=beit ...]

Every key and its default: cmtl_jax/config.py. An override of a key training one model does not read (a search's,
an ablation's, pretraining's) is refused with one line.
"""

from absl import app
from absl import flags

import cmtl_jax
from experiments import cli

_CONFIG = cli.define_config('experiments/configs/digits.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for metrics.json and the checkpoint.', required=True)


def main(argv):
  del argv
  with cli.one_line_errors():
    cli.refuse_unread(_CONFIG.value, 'train')
    cmtl_jax.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
