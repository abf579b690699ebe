r"""The hybrid on your own images: a folder with one sub-folder per class (or train/ and test/ folders of them).

  python -m experiments.make_image_folder --out=/tmp/fashion_folder
  python -m experiments.train --config=experiments/configs/folder.py --config.data_dir=/tmp/fashion_folder \
      --workdir=/tmp/cmtl_folder

Measured (CPU box, 2 cores, AMD EPYC family 25 (Zen 3), 2026-11-30, beside other jobs): the folder above
(Fashion-MNIST, 200 training and 100 test images per class, PNG / JPEG / RGBA PNG / GIF at 28-56 px) trains in 92 s
(97 s wall with preparing the folder), val accuracy 0.8150, test accuracy 0.8010, test macro F1 0.8006 (1,800 train /
200 val / 1,000 test); a second run from a fresh folder gave the same figures in 209 s. `python -m experiments.predict
--workdir=/tmp/cmtl_folder --images=/tmp/fashion_folder/test` reads the test folder again (7 s) and its
predictions.csv gives the same 0.801.

Images are decoded once with Pillow (EXIF orientation, any mode to `channels`, alpha on white), brought to
`image_size` (0 = beit.image_size, here 12 px) by `resize` ('crop': shorter side then centre square; 'pad'), and
prepared as array_record under `prepared_dir` (rebuilt when the folder's files change). `--config.on_bad_image=skip`
leaves unreadable files out and lists them in metrics.json. The model is the digits-sized one (fresh 2-layer BEiT
192 wide, first 2 MiniLM layers) at 12 px, for a CPU; for photos on an accelerator raise `image_size`,
`beit.image_size` and `channels` (3) or start from a pretrained BEiT (`beit_path`, `gray_to_rgb`).
"""

from experiments.configs import digits


def get_config():
  c = digits.get_config()  # The embedded default's model, optimiser and length.
  c.dataset = 'folder'
  c.beit.image_size = 12
  return c
