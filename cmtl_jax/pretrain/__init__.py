"""BEiT pretraining by masked image modelling (Bao et al. 2021) on unlabelled images: `masking.py` (blockwise masks),
`tokenizer.py` (the k-means visual tokenizer), `mim.py` (the model, the loss over masked patches, the train step),
`run.py` (`pretrain(config, workdir)`: the resumable loop and the Hugging Face export), `probe.py` (a linear probe of
frozen features)."""

from cmtl_jax.pretrain.probe import compare_with_fresh, linear_probe, probe_config
from cmtl_jax.pretrain.run import pretrain

__all__ = ['compare_with_fresh', 'linear_probe', 'pretrain', 'probe_config']
