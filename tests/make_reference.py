"""Writes tests/golden/reference/: tiny random Hugging Face BERT and BEiT checkpoints (transformers 5's PyTorch
classes, `save_pretrained`), inputs, and the outputs transformers computes for them, so that tests/test_models.py
can compare our models with transformers' where torch is not installed. Where it is, the tests also run transformers
live (`build_case`, `reference_outputs`) and check these files against it.

  python -m tests.make_reference      # needs torch and transformers >= 5; rewrites tests/golden/reference/
"""

import json
import os
import shutil

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, 'golden', 'reference')
PIXEL_SEED, NOISE = 7, 0.05

# Each case: a config (dict) for transformers' BertConfig / BeitConfig, and for BEiT the image size the inputs have.
_BEIT = dict(patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0)
CASES = {
    'bert_tiny': dict(kind='bert', config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                               intermediate_size=37, vocab_size=99, max_position_embeddings=16)),
    # Absolute positions, LayerScale, mean pooling, 1 channel.
    'beit_absolute_1ch': dict(kind='beit', config=dict(_BEIT, image_size=8, num_channels=1,
                                                        use_absolute_position_embeddings=True,
                                                        layer_scale_init_value=0.1, use_mean_pooling=True)),
    # Per-layer relative position bias, no LayerScale, CLS pooling after the final LayerNorm, 3 channels.
    'beit_relative_3ch': dict(kind='beit', config=dict(_BEIT, image_size=12, num_channels=3,
                                                        use_relative_position_bias=True, layer_scale_init_value=0.0,
                                                        use_mean_pooling=False)),
    # Shared and per-layer relative bias, absolute positions, a mask token, 3 channels.
    'beit_shared_3ch': dict(kind='beit', config=dict(_BEIT, image_size=8, num_channels=3,
                                                      use_shared_relative_position_bias=True,
                                                      use_relative_position_bias=True,
                                                      use_absolute_position_embeddings=True, use_mask_token=True)),
    # A 224 px checkpoint (14 x 14 patches) run at 112 px: positions resized as transformers resizes them.
    'beit_224_at_112': dict(kind='beit', image_size=112,
                            config=dict(_BEIT, image_size=224, patch_size=16, hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=24, num_channels=3,
                                        use_absolute_position_embeddings=True, use_relative_position_bias=True,
                                        use_shared_relative_position_bias=True)),
}


def build_case(name: str, directory: str):
  """Saves case `name`'s random model (every parameter perturbed, so none is a trivial 0 or 1) into `directory`
  with `save_pretrained`; returns the torch model (eval mode)."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  case = CASES[name]
  torch.manual_seed(sum(map(ord, name)))
  if case['kind'] == 'bert':
    model = transformers.BertModel(transformers.BertConfig(**case['config']))
  else:
    model = transformers.BeitModel(transformers.BeitConfig(**case['config']))
  with torch.no_grad():
    for parameter in model.parameters():
      parameter.add_(NOISE * torch.randn_like(parameter))
  model.eval()
  model.save_pretrained(directory)
  return model


def case_inputs(name: str) -> np.ndarray:
  """BERT: token ids `[2, 6]`; BEiT: pixels `[B, S, S, C]` (channels last, as our models take them)."""
  case = CASES[name]
  rng = np.random.default_rng(PIXEL_SEED)
  if case['kind'] == 'bert':
    return rng.integers(1, case['config']['vocab_size'], (2, 6))
  size = case.get('image_size', case['config']['image_size'])
  batch = 2 if size < 64 else 1  # Small files.
  return rng.normal(size=(batch, size, size, case['config']['num_channels'])).astype(np.float32)


def reference_outputs(model, kind: str, inputs: np.ndarray) -> dict:
  """transformers' outputs. BERT: `embedded` (the encoder's input) and `last_hidden_state`; BEiT:
  `last_hidden_state` and `pooled`."""
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    if kind == 'bert':
      out = model(torch.from_numpy(inputs), output_hidden_states=True)
      return {'embedded': out.hidden_states[0].numpy(), 'last_hidden_state': out.last_hidden_state.numpy()}
    out = model(torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous())
    return {'last_hidden_state': out.last_hidden_state.numpy(), 'pooled': out.pooler_output.numpy()}


def minilm_reference():
  """The packaged all-MiniLM-L6-v2 under transformers: (inputs: token ids `[2, 7]`, outputs as for BERT above)."""
  import transformers  # pylint: disable=g-import-not-at-top
  from cmtl_jax.models import checkpoints  # pylint: disable=g-import-not-at-top
  model = transformers.BertModel.from_pretrained(checkpoints.packaged_bert_path()).eval()
  ids = np.random.default_rng(PIXEL_SEED).integers(1000, 5000, (2, 7))
  return ids, reference_outputs(model, 'bert', ids)


def main():
  import transformers  # pylint: disable=g-import-not-at-top
  shutil.rmtree(REFERENCE, ignore_errors=True)
  for name, case in CASES.items():
    directory = os.path.join(REFERENCE, name)
    model = build_case(name, directory)
    inputs = case_inputs(name)
    np.savez(os.path.join(directory, 'reference.npz'), inputs=inputs,
             **reference_outputs(model, case['kind'], inputs))
  ids, outputs = minilm_reference()
  os.makedirs(os.path.join(REFERENCE, 'minilm'))
  np.savez(os.path.join(REFERENCE, 'minilm', 'reference.npz'), inputs=ids, **outputs)
  with open(os.path.join(REFERENCE, 'VERSION.json'), 'w') as f:
    json.dump({'transformers': transformers.__version__}, f)
  print(f'wrote {REFERENCE} with transformers {transformers.__version__}')


if __name__ == '__main__':
  main()
