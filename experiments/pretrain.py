r"""BEiT masked image modelling on a dataset's images (labels unused); writes a Hugging Face BEiT checkpoint to
<workdir>/beit (cmtl_jax/pretrain/run.py lists every file). Rerunning the same command resumes after the last
finished epoch; Ctrl-C stops it there.

  python -m experiments.pretrain --config=experiments/configs/digits.py --workdir=/tmp/cmtl_pretrain \
      [--config.pretrain.num_epochs=20 --config.pretrain.vocab_size=512 --config.pretrain.mask_ratio=0.4 ...]
  python -m experiments.pretrain --config=experiments/configs/digits.py --workdir=/tmp/cmtl_pretrain --probe
  python -m experiments.train --config=experiments/configs/digits.py --config.beit_path=/tmp/cmtl_pretrain/beit ...

Any training config works. Pretraining reads its dataset keys, `beit.*` (the model), `batch_size`, `seed`,
`warmup_fraction`, `decay`, `grad_clip`, `dtype`, and the `pretrain.*` keys (defaults in cmtl_jax/config.py):
  pretrain.mask_ratio=0.4          share of the patch grid masked per image, in blocks
  pretrain.min_block_patches=4     smallest masked block, in patches
  pretrain.vocab_size=256          visual tokens (k-means centroids of normalised patches)
  pretrain.tokenizer_patches=20000 patches sampled to fit the tokenizer
  pretrain.learning_rate=1.5e-3    AdamW peak learning rate
  pretrain.weight_decay=0.05       AdamW weight decay on matrices
  pretrain.num_epochs=10           epochs over the training images
An override of a key it does not read (`--config.num_epochs`, `--config.learning_rate`: fine-tuning's) is refused.

--probe: after pretraining (or, with --probe_only, instead of it), scores a scikit-learn LogisticRegression on the
frozen BEiT's pooled features (the training pool fits it, the held-out test split scores it), and the same probe on
the same BEiT architecture with random weights (from `seed`): the margin is what pretraining taught. Both go to
<workdir>/probe.json.
"""

import json
import os
import sys

from absl import app
from absl import flags

from cmtl_jax import pretrain as pretrain_lib
from cmtl_jax import report
from cmtl_jax.errors import ConfigError
from experiments import cli

_CONFIG = cli.define_config('experiments/configs/digits.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the pretraining run (resumed when it holds one).',
                               required=True)
_PROBE = flags.DEFINE_bool('probe', False, 'Linear-probe the pretrained BEiT afterwards.')
_PROBE_ONLY = flags.DEFINE_bool('probe_only', False, 'Only linear-probe <workdir>/beit (no training).')


def main(argv):
  del argv
  with cli.one_line_errors():
    config, workdir = _CONFIG.value, _WORKDIR.value
    pretrain_lib.run.check_overrides(cli.overridden_keys(sys.argv))
    pretrained_path = os.path.join(workdir, pretrain_lib.run.BEIT_DIR)
    if _PROBE_ONLY.value and not os.path.isdir(pretrained_path):
      raise ConfigError(f'--probe_only: {workdir!r} holds no pretrained BEiT ({pretrained_path} is missing): run '
                        f'without --probe_only first.')
    if not _PROBE_ONLY.value:
      try:
        pretrain_lib.pretrain(config, workdir)
      except KeyboardInterrupt:
        print(f'\ninterrupted with {pretrain_lib.run.finished_epochs(workdir)} of {config.pretrain.num_epochs} '
              f'epochs saved: rerun the same command to resume.', file=sys.stderr)
        sys.exit(130)
    if _PROBE.value or _PROBE_ONLY.value:
      scores = pretrain_lib.compare_with_fresh(config, pretrained_path)
      print(f'linear probe test accuracy: pretrained {scores["pretrained"]["test_accuracy"]:.4f}, fresh '
            f'{scores["fresh"]["test_accuracy"]:.4f} ({scores["test_accuracy_margin"]:+.4f})')
      with report.atomic(os.path.join(workdir, 'probe.json')) as tmp, open(tmp, 'w') as f:
        json.dump(scores, f, indent=2, default=float)

if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
