r"""BEiT masked image modelling on a dataset's images (labels unused); writes a Hugging Face BEiT checkpoint to
<workdir>/beit (cmtl_jax/pretrain/run.py lists every file). Rerunning the same command resumes after the last
finished epoch; Ctrl-C stops it there.

  python -m experiments.pretrain --config=experiments/configs/digits.py --workdir=/tmp/cmtl_pretrain \
      [--config.pretrain.num_epochs=20 --config.pretrain.vocab_size=512 --config.pretrain.mask_ratio=0.4 ...]
  python -m experiments.pretrain --config=experiments/configs/digits.py --workdir=/tmp/cmtl_pretrain --probe
  python -m experiments.train --config=experiments/configs/digits.py \
      --config.model.beit_path=/tmp/cmtl_pretrain/beit ...

Any training config works. Pretraining reads `seed`, the `data.*` keys, `model.beit.*` (the BEiT, fresh),
`model.dtype`, and the `pretrain.*` keys (defaults in cmtl_jax/config.py):
  pretrain.mask_ratio=0.4          share of the patch grid masked per image, in blocks
  pretrain.min_block_patches=4     smallest masked block, in patches
  pretrain.vocab_size=256          visual tokens (k-means centroids of normalised patches)
  pretrain.tokenizer_patches=20000 patches sampled to fit the tokenizer
  pretrain.learning_rate=1.5e-3    AdamW peak learning rate
  pretrain.weight_decay=0.05       AdamW weight decay on matrices
  pretrain.batch_size=32           images per step
  pretrain.num_epochs=10           epochs over the training images
  pretrain.warmup_fraction=0.1     linear warmup, as a share of the steps
  pretrain.decay='cosine'          after warmup: cosine, linear or constant
  pretrain.grad_clip=1.0           global-norm clip (0 = off)
  pretrain.scale=(1.0,1.0)         random resized crop: area share range (BEiT: 0.08-1; (1, 1) = off)
  pretrain.ratio=(1.0,1.0)         its aspect-ratio range (BEiT: 3/4-4/3)
  pretrain.hflip=0.0               left-right flip probability (BEiT: 0.5)
An override of any other key (`--config.optim.num_epochs`, `--config.optim.learning_rate`: fine-tuning's) is refused.

--probe: after pretraining (or, with --probe_only, instead of it), scores a scikit-learn LogisticRegression on the
frozen BEiT's pooled features (the training pool fits it, the held-out test split scores it), and the same probe on
the same BEiT architecture with random weights (from `seed`): the margin is what pretraining taught. Both go to
<workdir>/probe.json.
"""

import os
import sys

from absl import app
from absl import flags

from cmtl_jax import experiment
from cmtl_jax import pretrain as pretrain_lib
from cmtl_jax import workdir as workdir_lib
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
    cli.refuse_unread(config, 'pretrain')
    pretrained_path = os.path.join(workdir, pretrain_lib.run.BEIT_DIR)
    if _PROBE_ONLY.value and not os.path.isdir(pretrained_path):
      raise ConfigError(f'--probe_only: {workdir!r} holds no pretrained BEiT ({pretrained_path} is missing): run '
                        f'without --probe_only first.')
    if not _PROBE_ONLY.value:
      try:
        experiment.pretrain(config, workdir)
      except KeyboardInterrupt:
        print(f'\ninterrupted with {pretrain_lib.run.finished_epochs(workdir)} of {config.pretrain.num_epochs} '
              f'epochs saved: rerun the same command to resume.', file=sys.stderr)
        sys.exit(130)
    if _PROBE.value or _PROBE_ONLY.value:
      scores = pretrain_lib.compare_with_fresh(config, pretrained_path)
      print(f'linear probe test accuracy: pretrained {scores["pretrained"]["test_accuracy"]:.4f}, fresh '
            f'{scores["fresh"]["test_accuracy"]:.4f} ({scores["test_accuracy_margin"]:+.4f})')
      workdir_lib.write_json(os.path.join(workdir, 'probe.json'), scores, indent=2)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
