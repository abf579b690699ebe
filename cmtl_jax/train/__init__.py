"""The training core (`core`: state, step with its divergence guard, epoch with its key rule) and classification on
it (`classification`: loss, epoch, prediction, scores). Masked image modelling supplies its own loss to the same
core (`cmtl_jax/pretrain/mim.py`)."""
