"""BEiT masked image modelling on a dataset's images (labels unused); writes a Hugging Face BEiT checkpoint to
<workdir>/beit (cmtl_jax/pretrain/run.py lists every file). Any training config works: its dataset and beit.* keys,
with the pretrain.* keys of cmtl_jax/config.py; rerunning the same command resumes after the last finished epoch.

  python -m experiments.pretrain --config=experiments/configs/digits.py --workdir=/tmp/cmtl_pretrain \
      [--config.pretrain.num_epochs=20 --config.pretrain.vocab_size=512 --config.pretrain.mask_ratio=0.4 ...]
  python -m experiments.pretrain --config=experiments/configs/digits.py --workdir=/tmp/cmtl_pretrain --probe
  python -m experiments.train --config=experiments/configs/digits.py --config.beit_path=/tmp/cmtl_pretrain/beit ...

--probe: after pretraining (or, with --probe_only, instead of it), scores a scikit-learn LogisticRegression on the
frozen BEiT's pooled features (the training pool fits it, the held-out test split scores it), and the same probe on
the same BEiT with random weights (`beit.*`, `seed`): the margin is what pretraining taught. Both go to
<workdir>/probe.json.
"""

import json
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
      scores = {}
      for name, beit_path in (('pretrained', os.path.join(_WORKDIR.value, pretrain_lib.run.BEIT_DIR)),
                              ('fresh', '')):
        with config.unlocked():
          config.beit_path = beit_path
        scores[name] = pretrain_lib.probe_config(config)
      margin = scores['pretrained']['test_accuracy'] - scores['fresh']['test_accuracy']
      print(f'linear probe test accuracy: pretrained {scores["pretrained"]["test_accuracy"]:.4f}, fresh '
            f'{scores["fresh"]["test_accuracy"]:.4f} ({margin:+.4f})')
      with open(os.path.join(_WORKDIR.value, 'probe.json'), 'w') as f:
        json.dump({**scores, 'test_accuracy_margin': margin}, f, indent=2, default=float)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
