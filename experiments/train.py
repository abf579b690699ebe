r"""Trains one classifier from a config file and writes metrics.json and a checkpoint into --workdir.

  python -m experiments.train --config=experiments/configs/digits.py --workdir=/tmp/cmtl_digits \
      [--config.optimizer=sgdm --config.learning_rate=1e-3 --config.variant=beit ...]
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
    cmtl_jax.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
