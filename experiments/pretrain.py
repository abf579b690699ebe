"""BEiT masked image modelling on a dataset's images (labels unused); writes a Hugging Face BEiT checkpoint to
<workdir>/beit (cmtl_jax/pretrain/run.py lists every file). Any training config works: its dataset and beit.* keys,
with the pretrain.* keys of cmtl_jax/config.py; rerunning the same command resumes after the last finished epoch.

  python -m experiments.pretrain --config=experiments/configs/digits.py --workdir=/tmp/cmtl_pretrain \
      [--config.pretrain.num_epochs=20 --config.pretrain.vocab_size=512 --config.pretrain.mask_ratio=0.4 ...]
  python -m experiments.pretrain --config=experiments/configs/digits.py --workdir=/tmp/cmtl_pretrain --probe
  python -m experiments.train --config=experiments/configs/digits.py --config.beit_path=/tmp/cmtl_pretrain/beit ...

--probe: after pretraining (or, with --probe_only, instead of it), scores a scikit-learn LogisticRegression on the
frozen BEiT's pooled features (the training pool fits it, the held-out test split scores it).
"""

import os

from absl import app
from absl import flags

from cmtl_jax import pretrain as pretrain_lib
from experiments import cli

_CONFIG = cli.define_config('experiments/configs/digits.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the pretraining run (resumed when it holds one).',
                               required=True)
_PROBE = flags.DEFINE_bool('probe', False, 'Linear-probe the pretrained BEiT afterwards.')
_PROBE_ONLY = flags.DEFINE_bool('probe_only', False, 'Only linear-probe <workdir>/beit (no training).')


def main(argv):
  del argv
  with cli.one_line_errors():
    config = _CONFIG.value
    if not _PROBE_ONLY.value:
      pretrain_lib.pretrain(config, _WORKDIR.value)
    if _PROBE.value or _PROBE_ONLY.value:
      with config.unlocked():
        config.beit_path = os.path.join(_WORKDIR.value, pretrain_lib.run.BEIT_DIR)
      pretrain_lib.probe_config(config)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
