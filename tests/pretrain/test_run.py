"""A pretraining run: a killed run resumes to the uninterrupted run's parameters, a refused run leaves nothing, a
diverging one exports nothing; the Hugging Face export reloads through `model.beit_path` and equals transformers'
`BeitModel`."""

import ast
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmtl_jax import config as config_lib
from cmtl_jax import resolve
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import build as model_lib
from cmtl_jax.models import checkpoints
from cmtl_jax.pretrain import masking
from cmtl_jax.pretrain import run as run_lib
from tests.models.test_models import needs_torch
from tests.pretrain.conftest import pretraining_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Killed(Exception):
  pass


def _kill_after_first_epoch(line):
  if line.startswith('epoch 1/'):
    raise _Killed


def test_an_interrupted_run_resumes_to_the_same_parameters(finished_run, tmp_path):
  config, whole_dir, whole = finished_run
  workdir = str(tmp_path / 'interrupted')
  with pytest.raises(_Killed):
    run_lib.pretrain(config, workdir, log=_kill_after_first_epoch)
  assert run_lib.finished_epochs(workdir) == 1  # Epoch 1 was saved, no more.
  # Keys pretraining does not read (fine-tuning's) may differ on the rerun.
  finetuning = pretraining_config(config.data.data_dir)
  finetuning.optim.learning_rate, finetuning.optim.num_epochs, finetuning.ablation.arms = 0.5, 99, ('beit',)
  finetuning.model.variant = 'hybrid'
  lines = []
  resumed = run_lib.pretrain(finetuning, workdir, log=lines.append)
  assert lines[0] == 'resuming after epoch 1 of 2' and len(lines) == 2
  assert resumed['history'] == [dict(h, seconds=r['seconds']) for h, r in zip(whole['history'], resumed['history'])]
  jax.tree.map(np.testing.assert_array_equal, run_lib.load_state(workdir), run_lib.load_state(whole_dir))
  assert run_lib.finished_epochs(workdir) == 2 and run_lib.finished_epochs(str(tmp_path / 'none')) == 0
  # A finished run says so and exports the same weights again.
  lines = []
  run_lib.pretrain(config, workdir, log=lines.append)
  assert lines == ['already finished (2 epochs): exporting it again']
  jax.tree.map(np.testing.assert_array_equal, checkpoints.load_beit(os.path.join(workdir, 'beit')).params,
               run_lib.load_state(whole_dir)['params']['beit'])
  # Another config is refused in the same workdir.
  other = pretraining_config(config.data.data_dir)
  other.pretrain.mask_ratio = 0.5
  with pytest.raises(ConfigError, match='another run .*pretrain.mask_ratio'):
    run_lib.pretrain(other, workdir, log=None)


def test_a_refused_run_leaves_nothing_that_refuses_its_correction(data_dir, tmp_path):
  config = pretraining_config(data_dir)
  config.pretrain.vocab_size = 5000  # More visual tokens than the tokenizer sample has distinct patches.
  with pytest.raises(ConfigError, match='fewer than pretrain.vocab_size=5000'):
    run_lib.pretrain(config, str(tmp_path), log=None)
  assert os.listdir(tmp_path) == []


def test_the_cli_help_lists_every_pretrain_key_with_its_default():
  with open(os.path.join(REPO, 'experiments', 'pretrain.py')) as f:
    doc = ast.get_docstring(ast.parse(f.read()))
  listed = {key: ast.literal_eval(value) for key, value in re.findall(r'^  pretrain\.(\w+)=(\S+) ', doc, re.M)}
  assert listed == config_lib.base_config().pretrain.to_dict()


def test_the_export_reloads_through_beit_path(finished_run):
  config, workdir, result = finished_run
  assert result['beit_path'] == os.path.join(workdir, 'beit')
  assert sorted(os.listdir(result['beit_path'])) == ['config.json', 'model.safetensors']
  assert os.path.exists(os.path.join(workdir, 'tokenizer.npz')) and os.path.exists(os.path.join(workdir, 'run.json'))
  trained = run_lib.load_state(workdir)['params']['beit']
  checkpoint = checkpoints.load_beit(result['beit_path'])
  assert not checkpoint.report.fresh and not checkpoint.report.unused
  jax.tree.map(np.testing.assert_array_equal, checkpoint.params, trained)
  # Through the classifier's config: the BEiT baseline built on the pretrained BEiT.
  classify = config_lib.base_config()
  classify.data.data_dir, classify.model.variant = config.data.data_dir, 'beit'
  classify.model.beit_path = result['beit_path']
  model, params, pretrained, sources = model_lib.build_model(resolve.resolve(classify).model, 10, jax.random.key(0))
  assert sources['beit']['pretrained'] and model.beit_config.patch_size == 2
  np.testing.assert_array_equal(params['beit_encoder']['layer']['0']['lambda_1'],
                                trained['encoder']['layer']['0']['lambda_1'])
  with open(os.path.join(result['beit_path'], 'config.json')) as f:
    assert json.load(f)['use_mask_token'] is True
  # The workdir itself given as the BEiT: the error names the checkpoint inside it.
  with pytest.raises(checkpoints.MissingPathError, match=f"did you mean '{result['beit_path']}'"):
    checkpoints.load_beit(workdir)


@needs_torch
def test_the_export_equals_transformers_beit_model(finished_run):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  _, workdir, result = finished_run
  theirs = transformers.BeitModel.from_pretrained(result['beit_path']).eval()
  checkpoint = checkpoints.load_beit(result['beit_path'])
  ours = beit_lib.BeitModel(checkpoint.config)
  pixels = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
  mask = masking.block_masks(np.random.default_rng(1), 3, (4, 4), 0.4, 2)
  for bool_masked_pos in (None, mask):
    hidden, pooled = ours.apply({'params': checkpoint.params}, jnp.asarray(pixels),
                                bool_masked_pos=None if bool_masked_pos is None else jnp.asarray(bool_masked_pos))
    with torch.no_grad():
      out = theirs(torch.from_numpy(pixels.transpose(0, 3, 1, 2)),
                   bool_masked_pos=None if bool_masked_pos is None else torch.from_numpy(bool_masked_pos))
    assert np.max(np.abs(np.asarray(hidden) - out.last_hidden_state.numpy())) <= 1e-5
    assert np.max(np.abs(np.asarray(pooled) - out.pooler_output.numpy())) <= 1e-5


def test_a_diverging_run_stops_with_one_line_and_exports_nothing(data_dir, tmp_path):
  """The training core's guard: a loss or update that became NaN/inf stops the run before anything is exported
  (a learning rate of 1e8 once exported a checkpoint whose every tensor was NaN, exit status 0)."""
  config = pretraining_config(data_dir)
  config.pretrain.learning_rate, config.pretrain.warmup_fraction = 1e8, 0.0
  with pytest.raises(ConfigError, match='pretraining diverged in epoch 1 .*nothing was exported'):
    run_lib.pretrain(config, str(tmp_path), log=None)
  assert not os.path.exists(tmp_path / 'beit') and run_lib.finished_epochs(str(tmp_path)) == 0
