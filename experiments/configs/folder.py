r"""The hybrid on your own images: a folder with one sub-folder per class (or train/ and test/ folders of them).

  python -m experiments.make_image_folder --out=/tmp/fashion_folder
  python -m experiments.train --config=experiments/configs/folder.py --config.data.data_dir=/tmp/fashion_folder \
      --workdir=/tmp/cmtl_folder

Images are decoded once with Pillow (EXIF orientation, any mode to the channels, alpha on white) to the size and
channels the model's BEiT takes (here 12 px grey: `model.beit.image_size`; `data.image_size` / `data.channels`
decode to another, the model resizing on the device) by `data.resize` ('crop': shorter side then centre square;
'pad'), and prepared as array_record under `data.prepared_dir` (rebuilt when the folder's files change).
`--config.data.on_bad_image=skip` leaves unreadable files out and lists them in metrics.json. The model is the digits
one (a fresh 2-layer BEiT 192 wide, the first 2 MiniLM layers) at 12 px, for a CPU; for photos on an accelerator
raise `model.beit.image_size` and set `model.beit.num_channels=3`, or start from a pretrained BEiT
(`model.beit_path`: its size and channels are then the checkpoint's, unless set). Measured: BUILD_NOTES.md,
"Measured" (C10).
"""

from cmtl_jax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.data.dataset = 'folder'
  c.model.bert_layers = 2
  c.model.beit.image_size = 12
  c.optim.num_epochs = 8
  return c
