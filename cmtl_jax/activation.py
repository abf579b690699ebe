"""The exact GELU of BERT's and BEiT's MLPs in the form BERT and PyTorch write it, `x (1 + erf(x / sqrt 2)) / 2`.

transformers' Flax 'gelu' is `jax.nn.gelu(approximate=False)`, which computes the same function as
`0.5 x erfc(-x / sqrt 2)`: more accurate where x << 0 and GELU(x) ~ 0, but XLA:CPU expands `erfc` into two
branches with an `exp` and selects between them, ~2.5x the time of `erf`'s rational polynomial (a `[544, 1536]`
activation: 412 vs 166 us). The two forms differ by less than 1e-6 in absolute value (tests/test_activation.py);
`gelu_erf` is the formula of the BERT paper's code and of `torch.nn.functional.gelu`, so the PyTorch twin computes
it too. The train step of the embedded default took ~0.975x the time with it (BUILD_NOTES.md, "CPU benchmark").

`intercept_gelu` computes transformers' BERT and BEiT intermediate layers whose `hidden_act` is 'gelu' with it,
without forking their modules: parameters and checkpoints are unchanged.
"""

import contextlib

import flax.linen as nn
from jax import lax
import numpy as np
from transformers.models.beit import modeling_flax_beit
from transformers.models.bert import modeling_flax_bert

_INTERMEDIATES = (modeling_flax_bert.FlaxBertIntermediate, modeling_flax_beit.FlaxBeitIntermediate)


def gelu_erf(x):
  """GELU(x) = x * Phi(x) = x (1 + erf(x / sqrt 2)) / 2, in the dtype of `x`."""
  return 0.5 * x * (1 + lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


def _gelu_interceptor(next_fun, args, kwargs, context):
  """transformers' intermediate layer (`dense`, then the activation) with `gelu_erf` as the activation, where the
  layer's config asks for 'gelu'; any other method, module or activation runs unchanged."""
  module = context.module
  if (type(module) not in _INTERMEDIATES or context.method_name != '__call__' or kwargs or len(args) != 1
      or module.config.hidden_act != 'gelu'):
    return next_fun(*args, **kwargs)
  hidden_states, = args
  # FlaxBertIntermediate / FlaxBeitIntermediate.__call__ (transformers 4.57) with `activation` replaced;
  # tests/test_activation.py pins the two to each other.
  return gelu_erf(module.dense(hidden_states))


@contextlib.contextmanager
def intercept_gelu():
  """Within it, the 'gelu' intermediate layers of transformers' Flax BERT and BEiT compute `gelu_erf`."""
  with nn.intercept_methods(_gelu_interceptor):
    yield
