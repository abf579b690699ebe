r"""The hybrid on your own photos: a folder with one sub-folder per class (or train/ and test/ folders of them),
trained with the fine-tuning recipe at CPU size.

  python -m experiments.make_image_folder --out=/tmp/photos5 --per_class=40 --test_per_class=100 --classes=5
  python -m experiments.train --config=experiments/configs/folder.py --config.data.data_dir=/tmp/photos5 \
      --workdir=/tmp/cmtl_folder

`--config=experiments/configs/folder.py:plain` is the same run without augmentation (the comparison in
BUILD_NOTES.md, "Measured", C10).

Images are decoded once with Pillow (EXIF orientation, any mode to RGB, alpha on white) to 24 px squares
(`data.resize`: 'crop', shorter side then centre), and prepared as array_record under `data.prepared_dir` (rebuilt
when the folder's files change). `--config.data.on_bad_image=skip` leaves unreadable files out and lists them in
metrics.json. The model: a fresh 2-layer BEiT 192 wide (patch 4, 36 tokens, RGB) -> the first 2 MiniLM layers.

The recipe is `common.small_data_recipe` (BEiT's, README "The fine-tuning recipe", without mixup and CutMix, with
crops of 50-100 % of the image, RandAugment at magnitude 5 and no layer decay for the fresh BEiT), trained 150
epochs: on 5 classes x 40 images BEiT's full recipe (mixup 0.8, CutMix 1.0, RandAugment m9) learnt slowly and
scored under no augmentation (BUILD_NOTES.md, "Measured", C10). Left-right flips are on: turn them off
(`--config.augment.hflip=0`) where orientation carries the class. 150 epochs suit a few hundred images; lower
`optim.num_epochs` for larger folders. For photos on an accelerator raise `model.beit.image_size` (e.g. 224), or
start from a pretrained BEiT (`model.beit_path`: its size and channels are then the checkpoint's, unless set; add
`--config.optim.layer_decay=0.65`).
"""

from cmtl_jax import config as config_lib
from experiments.configs import common


def get_config(variant: str = 'recipe'):
  c = config_lib.base_config()
  c.data.dataset = 'folder'
  c.model.bert_layers = 2
  c.model.beit.image_size = 24
  c.model.beit.num_channels = 3
  c.optim.num_epochs = 150
  c.optim.learning_rate = 1e-4
  if variant == 'recipe':
    common.small_data_recipe(c, hflip=0.5)
  elif variant != 'plain':
    raise ValueError(f"folder.py takes 'recipe' (the default) or 'plain', not {variant!r}")
  return c
