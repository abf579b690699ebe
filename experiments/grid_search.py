r"""GridSearchCV over the config's `grid` with stratified K-fold CV; resumable in --workdir.

  python -m experiments.grid_search --config=experiments/configs/digits_grid.py --workdir=/tmp/cmtl_grid

The search is the config's `search` group (`search.grid`, shaped like the config: `search.grid.optim.learning_rate`).
Writes cv_results.json, cv_results.csv, heatmap_<optimizer>.png and summary.md into --workdir. Rerunning the same
command skips finished work; a different config in an existing workdir is refused.

Successive halving instead of the exhaustive search (resumable too: a rerun goes on after the last finished round,
with the surviving models' train states read back from --workdir/states):

  python -m experiments.grid_search --config=experiments/configs/digits_grid.py --config.search.kind=halving \
      --config.optim.num_epochs=9 --workdir=/tmp/cmtl_halving

Several processes (hosts) running one grid together, each on its devices' share of every group's models; process 0
writes the outputs (on one machine, for a try: two CPU processes):

  python -m experiments.grid_search --config=... --workdir=... --coordinator_address=localhost:1234 \
      --num_processes=2 --process_id=0 &
  python -m experiments.grid_search --config=... --workdir=... --coordinator_address=localhost:1234 \
      --num_processes=2 --process_id=1
"""

import sys

from absl import app
from absl import flags

from cmtl_jax import experiment
from experiments import cli

_CONFIG = cli.define_config('experiments/configs/digits_grid.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints of finished groups and outputs.',
                               required=True)
_INITIALIZE_DISTRIBUTED = cli.define_distributed_flags()


def main(argv):
  del argv
  _INITIALIZE_DISTRIBUTED()
  with cli.one_line_errors():
    cli.refuse_unread(_CONFIG.value, 'search')
    experiment.grid_search(_CONFIG.value, _WORKDIR.value, command='python -m experiments.grid_search ' +
                           ' '.join(sys.argv[1:]))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
