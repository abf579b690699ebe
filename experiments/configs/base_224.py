"""A paper-size hybrid for timing: BEiT-base (224 px, patch 16, 12 layers, width 768) -> BERT-base (12 layers, width
768), random weights, bf16 compute, on synthetic data. Nothing is learned; it measures the step on an accelerator.

  python -m experiments.benchmark --config=experiments/configs/base_224.py --parts=mfu --workdir=/tmp/cmtl_base

`model.bert_path` must hold a BERT-base config.json (only the architecture is read: `model.bert_pretrained=False`);
`experiments/device_check.sh prepare` writes one to .device/bert_base. Measured: BUILD_NOTES.md, "Measured" (C7).
"""

from cmtl_jax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.data.dataset = 'synthetic'
  c.data.gray_to_rgb = True
  c.model.bert_path = '.device/bert_base'
  c.model.bert_pretrained = False
  c.model.beit.update(dict(image_size=224, patch_size=16, num_channels=3, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, drop_path_rate=0.1))
  c.model.dtype = 'bfloat16'
  c.optim.batch_size = 64
  return c
