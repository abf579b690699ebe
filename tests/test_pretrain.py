"""BEiT pretraining: blockwise masks (ratio, blocks, a hand-checked grid), the loss over masked patches only, the
mask token, the tokenizer, a killed run resuming to the uninterrupted run's parameters, and the Hugging Face export
reloading through `beit_path` and through transformers' PyTorch `BeitModel`."""

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy
from scipy import ndimage

from cmtl_jax import config as config_lib
from cmtl_jax import data
from cmtl_jax import optim
from cmtl_jax import report
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import build as model_lib
from cmtl_jax.models import checkpoints
from cmtl_jax.models.configs import BeitConfig
from cmtl_jax.pretrain import masking
from cmtl_jax.pretrain import mim
from cmtl_jax.pretrain import probe
from cmtl_jax.pretrain import run as run_lib
from cmtl_jax.pretrain import tokenizer as tokenizer_lib
from tests import make_reference
from tests.conftest import TINY_BEIT
from tests.test_models import needs_torch

# 8 px at patch 2: a 4 x 4 patch grid, 6 of 16 patches masked at BEiT's 0.4.
PRETRAIN_BEIT = {**TINY_BEIT, 'patch_size': 2}


def _config(data_dir):
  c = config_lib.base_config()
  c.data_dir = data_dir
  c.beit.update(PRETRAIN_BEIT)
  c.train_per_class = 10
  c.batch_size = 32
  c.pretrain.num_epochs = 2
  c.pretrain.vocab_size = 16
  c.pretrain.tokenizer_patches = 2000
  c.pretrain.min_block_patches = 2
  return c


def _small_components(mask, min_block):
  """Patches in 4-connected masked regions smaller than `min_block`."""
  labels, count = ndimage.label(mask)
  sizes = np.bincount(labels.reshape(-1), minlength=count + 1)[1:]
  return int(sizes[sizes < min_block].sum())


def blocky(mask, min_block) -> bool:
  """Blockwise masking leaves fewer than `min_block` patches outside regions of `min_block` or more: only the last
  blocks, drawn when fewer than `min_block` patches were left to mask, may be smaller."""
  return _small_components(mask, min_block) < min_block


# --- Masking -----------------------------------------------------------------------------------------------------

def test_block_masks_have_the_configured_ratio_and_are_blocks():
  rng = np.random.default_rng(0)
  masks = masking.block_masks(rng, 300, (8, 8), 0.4, 4).reshape(300, 8, 8)
  assert masking.num_masked((8, 8), 0.4) == 26  # round(0.4 * 64)
  np.testing.assert_array_equal(masks.sum(axis=(1, 2)), 26)
  assert all(blocky(m, 4) for m in masks)
  # The check can fail: masks of the same ratio drawn patch by patch are mostly not blocks.
  scattered = np.stack([rng.permutation(64) < 26 for _ in range(300)]).reshape(300, 8, 8)
  assert np.mean([blocky(m, 4) for m in scattered]) < 0.2
  # Seeded: the same Generator seed gives the same masks.
  again = masking.block_masks(np.random.default_rng(0), 300, (8, 8), 0.4, 4).reshape(300, 8, 8)
  np.testing.assert_array_equal(again, masks)


def test_a_2x2_grid_masks_only_adjacent_pairs():
  """Hand-checked: 2 of 4 patches in blocks of at least 2 can only be a row or a column of the 2 x 2 grid, never a
  diagonal; a 1 x 1 block covers too little and a 3-long one does not fit."""
  rng = np.random.default_rng(1)
  seen = {tuple(masking.block_mask(rng, (2, 2), 2, 2).reshape(-1)) for _ in range(200)}
  rows_and_columns = {(1, 1, 0, 0), (0, 0, 1, 1), (1, 0, 1, 0), (0, 1, 0, 1)}
  assert seen == {tuple(bool(v) for v in pair) for pair in rows_and_columns}


def test_masking_refuses_impossible_counts():
  with pytest.raises(ValueError, match='cannot mask 5 of 2x2'):
    masking.block_mask(np.random.default_rng(0), (2, 2), 5, 1)


# --- Loss, mask token, tokenizer ---------------------------------------------------------------------------------

def test_the_loss_counts_only_masked_positions():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 16, 8)), jnp.float32)
  targets = rng.integers(0, 8, (2, 16))
  mask = np.zeros((2, 16), bool)
  mask[0, [1, 2, 5]] = mask[1, [0, 15]] = True
  loss, _ = mim.masked_token_loss(logits, jnp.asarray(targets), jnp.asarray(mask))
  planted = targets.copy()
  planted[1, 7] = (planted[1, 7] + 1) % 8  # An unmasked patch's target.
  assert float(mim.masked_token_loss(logits, jnp.asarray(planted), jnp.asarray(mask))[0]) == float(loss)
  planted[1, 15] = (planted[1, 15] + 1) % 8  # A masked one's.
  assert float(mim.masked_token_loss(logits, jnp.asarray(planted), jnp.asarray(mask))[0]) != float(loss)
  # The value: mean cross-entropy over the five masked positions.
  log_p = jax.nn.log_softmax(np.asarray(logits))
  want = -np.mean([log_p[b, n, targets[b, n]] for b, n in zip(*np.nonzero(mask))])
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)


def test_the_mask_token_replaces_masked_patch_embeddings():
  config = BeitConfig.from_dict({**PRETRAIN_BEIT, 'use_mask_token': True})
  module = beit_lib.BeitEmbeddings(config)
  pixels = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 1)), jnp.float32)
  mask = np.zeros((2, 16), bool)
  mask[0, 3] = mask[1, [0, 9]] = True
  params = module.init(jax.random.key(0), pixels)['params']
  params['mask_token'] = jnp.full_like(params['mask_token'], 7.0)
  params['position_embeddings'] = jnp.asarray(np.random.default_rng(1).normal(size=(1, 17, 32)), jnp.float32)
  plain = module.apply({'params': params}, pixels)
  masked = module.apply({'params': params}, pixels, bool_masked_pos=jnp.asarray(mask))
  kept = np.concatenate([np.ones((2, 1), bool), ~mask], axis=1)
  np.testing.assert_array_equal(np.asarray(masked)[kept], np.asarray(plain)[kept])
  want = 7.0 + np.asarray(params['position_embeddings'])[0, 1:][None].repeat(2, 0)[mask]
  np.testing.assert_allclose(np.asarray(masked)[:, 1:][mask], want, rtol=1e-6)
  with pytest.raises(ConfigError, match='use_mask_token'):
    beit_lib.BeitEmbeddings(config.replace(use_mask_token=False)).apply(
        {'params': {k: v for k, v in params.items() if k != 'mask_token'}}, pixels, bool_masked_pos=mask)


def test_tokens_are_the_nearest_centroids_of_normalised_patches():
  rng = np.random.default_rng(0)
  pixels = rng.uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
  tokenizer = tokenizer_lib.fit(rng.uniform(-1, 1, (40, 8, 8, 1)).astype(np.float32), 2, 8, 500, seed=0)
  got = np.asarray(tokenizer_lib.tokens(jnp.asarray(tokenizer.centroids), jnp.asarray(pixels), 2))
  # By hand: patch (r, c) of image b is pixels[b, 2r:2r+2, 2c:2c+2], row-major over the 4 x 4 grid.
  for b in range(3):
    for r in range(4):
      for c in range(4):
        x = pixels[b, 2 * r:2 * r + 2, 2 * c:2 * c + 2].reshape(-1)
        x = (x - x.mean()) / np.sqrt(((x - x.mean()) ** 2).mean() + tokenizer_lib.VARIANCE_FLOOR)
        assert got[b, 4 * r + c] == np.argmin(((tokenizer.centroids - x) ** 2).sum(-1))
  with pytest.raises(ConfigError, match='fewer than pretrain.vocab_size=64'):
    tokenizer_lib.fit(np.zeros((2, 8, 8, 1), np.float32), 2, 64, 500, seed=0)


def test_a_saved_tokenizer_reads_back_and_one_of_another_normalisation_is_refused(tmp_path):
  tokenizer = tokenizer_lib.PatchTokenizer(np.arange(12, dtype=np.float32).reshape(3, 4), 2)
  tokenizer.save(str(tmp_path / 'tokenizer.npz'))
  back = tokenizer_lib.PatchTokenizer.load(str(tmp_path / 'tokenizer.npz'))
  np.testing.assert_array_equal(back.centroids, tokenizer.centroids)
  assert back.patch_size == 2
  np.savez(tmp_path / 'other.npz', centroids=tokenizer.centroids, patch_size=2, variance_floor=0.5)
  with pytest.raises(ConfigError, match='fitted with variance floor 0.5'):
    tokenizer_lib.PatchTokenizer.load(str(tmp_path / 'other.npz'))


@pytest.mark.parametrize('key,value,message', [
    ('mask_ratio', 1.5, 'pretrain.mask_ratio must lie strictly between 0 and 1'),
    ('mask_ratio', 0.0, 'pretrain.mask_ratio must lie strictly between 0 and 1'),
    ('min_block_patches', 0, 'pretrain.min_block_patches must be >= 1'),
    ('tokenizer_patches', 0, 'pretrain.tokenizer_patches must be >= 1'),
    ('num_epochs', 0, 'pretrain.num_epochs must be >= 1'),
    ('vocab_size', 1, 'pretrain.vocab_size must be >= 2'),
    ('learning_rate', 0.0, 'pretrain.learning_rate must be > 0'),
    ('weight_decay', -0.1, 'pretrain.weight_decay >= 0'),
])
def test_pretrain_keys_are_validated(key, value, message):
  c = config_lib.base_config()
  c.pretrain[key] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(c)


# --- The run: resume and export ----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def finished_run(data_dir, tmp_path_factory):
  """An uninterrupted 2-epoch pretraining run: (config, workdir, result)."""
  config = _config(data_dir)
  workdir = str(tmp_path_factory.mktemp('pretrain_whole'))
  return config, workdir, run_lib.pretrain(config, workdir, log=None)


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
  assert int(run_lib.load_state(workdir)['step']) == whole['steps_per_epoch']  # Epoch 1 was saved, no more.
  # Keys pretraining does not read (fine-tuning's) may differ on the rerun.
  finetuning = _config(config.data_dir)
  finetuning.learning_rate, finetuning.num_epochs, finetuning.arms = 0.5, 99, ('beit',)
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
  other = _config(config.data_dir)
  other.pretrain.mask_ratio = 0.5
  with pytest.raises(ConfigError, match='another config'):
    run_lib.pretrain(other, workdir, log=None)


def test_a_refused_run_leaves_nothing_that_refuses_its_correction(data_dir, tmp_path):
  config = _config(data_dir)
  config.pretrain.vocab_size = 5000  # More visual tokens than the tokenizer sample has distinct patches.
  with pytest.raises(ConfigError, match='fewer than pretrain.vocab_size=5000'):
    run_lib.pretrain(config, str(tmp_path), log=None)
  assert os.listdir(tmp_path) == []


def test_overrides_of_keys_pretraining_ignores_are_refused():
  assert set(run_lib.READS) <= set(config_lib.base_config())
  run_lib.check_overrides(['pretrain.num_epochs', 'beit.image_size', 'data_dir', 'batch_size', 'seed'])
  with pytest.raises(ConfigError, match=r'not read --config.num_epochs, a fine-tuning key: did you mean '
                                        r'--config.pretrain.num_epochs\?'):
    run_lib.check_overrides(['seed', 'num_epochs'])
  with pytest.raises(ConfigError, match=r'not read --config.grid.learning_rate, a fine-tuning key \(it reads'):
    run_lib.check_overrides(['grid.learning_rate'])


def test_the_cli_help_lists_every_pretrain_key_with_its_default():
  with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'experiments', 'pretrain.py')) as f:
    doc = ast.get_docstring(ast.parse(f.read()))
  listed = {key: ast.literal_eval(value) for key, value in re.findall(r'^  pretrain\.(\w+)=(\S+) ', doc, re.M)}
  assert listed == config_lib.base_config().pretrain.to_dict()


def test_the_export_reloads_through_beit_path(finished_run):
  config, workdir, result = finished_run
  assert result['beit_path'] == os.path.join(workdir, 'beit')
  assert sorted(os.listdir(result['beit_path'])) == ['config.json', 'model.safetensors']
  assert os.path.exists(os.path.join(workdir, 'tokenizer.npz')) and os.path.exists(os.path.join(workdir, 'loss.png'))
  trained = run_lib.load_state(workdir)['params']['beit']
  checkpoint = checkpoints.load_beit(result['beit_path'])
  assert not checkpoint.report.fresh and not checkpoint.report.unused
  jax.tree.map(np.testing.assert_array_equal, checkpoint.params, trained)
  # Through the classifier's config: the BEiT baseline built on the pretrained BEiT.
  classify = config_lib.base_config()
  classify.data_dir, classify.variant, classify.beit_path = config.data_dir, 'beit', result['beit_path']
  config_lib.validate(classify)
  model, params, pretrained, sources = model_lib.build_model(classify, 10, jax.random.key(0))
  assert sources['beit']['pretrained'] and model.beit_config.patch_size == 2
  np.testing.assert_array_equal(params['beit_encoder']['layer']['0']['lambda_1'],
                                trained['encoder']['layer']['0']['lambda_1'])
  with open(os.path.join(result['beit_path'], 'config.json')) as f:
    assert json.load(f)['use_mask_token'] is True
  # The workdir itself given as the BEiT: the error names the checkpoint inside it.
  with pytest.raises(checkpoints.MissingPathError, match=f"did you mean '{result['beit_path']}'"):
    checkpoints.load_beit(workdir)


def test_every_beit_parameter_has_a_hugging_face_name_that_reads_back():
  config = BeitConfig.from_dict({**PRETRAIN_BEIT, 'use_mask_token': True, 'use_relative_position_bias': True,
                                 'use_shared_relative_position_bias': True, 'use_mean_pooling': False})
  for path in checkpoints.expected_shapes(config):
    name, permutation = checkpoints.hf_beit_name(path)
    assert checkpoints.map_name(name, 'beit')[0] == path
  assert checkpoints.hf_beit_name('embeddings.patch_embeddings.projection.kernel') == (
      'embeddings.patch_embeddings.projection.weight', (3, 2, 0, 1))


@pytest.mark.parametrize('reference', ['beit_absolute_1ch', 'beit_relative_3ch', 'beit_shared_3ch'])
def test_the_export_writes_the_names_and_tensors_transformers_wrote(reference, tmp_path):
  """Without torch: checkpoints that transformers' `BeitModel.save_pretrained` wrote (tests/make_reference.py), read
  and written back by `save_beit`, hold the same tensor names and values."""
  directory = os.path.join(make_reference.REFERENCE, reference)
  checkpoint = checkpoints.load_beit(directory)
  checkpoints.save_beit(str(tmp_path), checkpoint.config, checkpoint.params)
  theirs = safetensors_numpy.load_file(os.path.join(directory, 'model.safetensors'))
  ours = safetensors_numpy.load_file(str(tmp_path / 'model.safetensors'))
  assert sorted(ours) == sorted(theirs)
  for name, tensor in theirs.items():
    np.testing.assert_array_equal(ours[name], tensor, err_msg=name)


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


# --- The linear probe --------------------------------------------------------------------------------------------

def test_probe_features_are_the_pooled_output_in_order(finished_run):
  _, _, result = finished_run
  checkpoint = checkpoints.load_beit(result['beit_path'])
  images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 1)).astype(np.uint8)
  got = probe.features(checkpoint.config, checkpoint.params, images, batch_size=4)  # 4 + 3, the last padded.
  pixels = data.preprocess(jnp.asarray(images), 8, 1)
  want = beit_lib.BeitModel(checkpoint.config).apply({'params': checkpoint.params}, pixels)[1]
  np.testing.assert_allclose(got, np.asarray(want), atol=1e-6)


def test_the_linear_probe_scores_a_logistic_regression_on_frozen_features(finished_run, digits_small):
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  _, _, result = finished_run
  checkpoint = checkpoints.load_beit(result['beit_path'])
  scores = probe.linear_probe(checkpoint.config, checkpoint.params, digits_small)
  train = np.concatenate([digits_small.train, digits_small.val])
  x = probe.features(checkpoint.config, checkpoint.params, digits_small.images[train])
  by_hand = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=0))
  by_hand.fit(x, digits_small.labels[train])
  x_test = probe.features(checkpoint.config, checkpoint.params, digits_small.images[digits_small.test])
  assert scores['test_accuracy'] == by_hand.score(x_test, digits_small.labels[digits_small.test])
  assert scores['num_train'] == len(train) and scores['num_test'] == len(digits_small.test)


@pytest.fixture(scope='module')
def digits_small(data_dir):
  return data.load_dataset(_config(data_dir))


# --- The CLI, SIGKILLed ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_cli_sigkilled_and_rerun_writes_the_uninterrupted_checkpoint(data_dir, tmp_path):
  """A SIGKILL at a random moment (perhaps inside an orbax save), then the same command: the exported BEiT equals
  an uninterrupted run's, tensor for tensor, and no orbax temporary directory is left."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  overrides = [f'--config.data_dir={data_dir}', '--config.train_per_class=20', '--config.batch_size=32',
               '--config.pretrain.num_epochs=6', '--config.pretrain.vocab_size=16',
               '--config.pretrain.tokenizer_patches=2000', '--config.pretrain.min_block_patches=2'] + [
                   f'--config.beit.{k}={v}' for k, v in PRETRAIN_BEIT.items()]
  command = lambda workdir: [sys.executable, '-m', 'experiments.pretrain', '--config=experiments/configs/digits.py',
                             f'--workdir={workdir}'] + overrides

  environment = {**os.environ, 'PYTHONUNBUFFERED': '1'}

  def run(workdir, kill_at_line=None, sig=signal.SIGKILL):
    """The command's stdout; with `kill_at_line`, sent `sig` after printing that line (SIGKILL a random 0 - 0.3 s
    after), then its stderr."""
    err_file = tmp_path / 'stderr.txt'  # A file, not a pipe: the progress bar would fill a pipe nobody reads.
    with open(err_file, 'w') as err:
      # The child inherits an ignored SIGINT (a shell's background job ignores it, a CI runner's say), and Python
      # then installs no KeyboardInterrupt handler: give this process a handler while the child starts.
      ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
      try:
        process = subprocess.Popen(command(workdir), cwd=repo, stdout=subprocess.PIPE, stderr=err, text=True,
                                   env=environment)
      finally:
        signal.signal(signal.SIGINT, ignored)
      if kill_at_line is None:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, err_file.read_text()[-3000:]
        return out
      for line in process.stdout:
        if line.startswith(kill_at_line):
          if sig == signal.SIGKILL:  # Anywhere in the next epoch, perhaps inside its save.
            time.sleep(np.random.default_rng(0).uniform(0, 0.3))
          process.send_signal(sig)  # Ctrl-C: at once, so that epochs are left to interrupt.
          break
      process.communicate(timeout=600)
    assert process.returncode == (130 if sig == signal.SIGINT else -sig), err_file.read_text()[-3000:]
    return err_file.read_text()

  run(tmp_path / 'whole')
  run(tmp_path / 'killed', kill_at_line='epoch 2/6')
  # Ctrl-C: no traceback, one line saying how far the run got.
  err = run(tmp_path / 'killed', kill_at_line='epoch ', sig=signal.SIGINT)
  saved = run_lib.finished_epochs(str(tmp_path / 'killed'))
  assert 'Traceback' not in err and f'interrupted with {saved} of 6 epochs saved: rerun the same command' in err, err
  out = run(tmp_path / 'killed')
  assert out.startswith('resuming after epoch ') and 'epoch 6/6' in out, out
  whole = safetensors_numpy.load_file(str(tmp_path / 'whole' / 'beit' / 'model.safetensors'))
  killed = safetensors_numpy.load_file(str(tmp_path / 'killed' / 'beit' / 'model.safetensors'))
  assert sorted(whole) == sorted(killed)
  for name, tensor in whole.items():
    np.testing.assert_array_equal(killed[name], tensor, err_msg=name)
  leftovers = [n for d, dirs, files in os.walk(tmp_path / 'killed') for n in dirs + files if 'tmp' in n]
  assert not leftovers, leftovers
  # --probe_only: the pretrained BEiT's probe beside the same BEiT's with random weights, and their margin.
  probe = subprocess.run(command(tmp_path / 'killed') + ['--probe_only'], cwd=repo, capture_output=True, text=True,
                         timeout=600)
  assert probe.returncode == 0, probe.stderr[-3000:]
  scores = json.loads((tmp_path / 'killed' / 'probe.json').read_text())
  assert scores['pretrained']['beit'] != scores['fresh']['beit']
  assert scores['test_accuracy_margin'] == pytest.approx(
      scores['pretrained']['test_accuracy'] - scores['fresh']['test_accuracy'])
  assert f'fresh {scores["fresh"]["test_accuracy"]:.4f}' in probe.stdout


def test_ctrl_c_waits_for_the_save_in_progress():
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own (a CI job may ignore SIGINT).
  try:
    finished = []
    with pytest.raises(KeyboardInterrupt):
      with report.interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        finished.append('the save')  # Still runs: the interrupt waits for the block's end.
    assert finished == ['the save'] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, previous)


def test_weight_decay_spares_what_beit_spares_in_pretraining_and_fine_tuning():
  config = BeitConfig.from_dict({**PRETRAIN_BEIT, 'use_mask_token': True})
  model = mim.MaskedImageModel(config, vocab_size=8)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 16), bool)))
  decayed = {'.'.join(k.key for k in path) for path, d in
             jax.tree_util.tree_flatten_with_path(optim.decay_mask(params['params']))[0] if d}
  assert 'beit.embeddings.mask_token' in decayed and 'lm_head.kernel' in decayed
  assert 'beit.encoder.layer.0.attention.attention.query.kernel' in decayed
  spared = {'beit.embeddings.cls_token', 'beit.embeddings.position_embeddings', 'lm_head.bias',
            'beit.encoder.layer.0.lambda_1', 'layernorm.scale'}
  assert not spared & decayed
  # Fine-tuning applies the same rule to the classifier's tree.
  classify = config_lib.base_config()
  classify.beit.update(PRETRAIN_BEIT)
  classify.bert_layers = 1
  model = model_lib.build_model(classify, 10, jax.random.key(0))[0]
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))['params']
  decayed = {'.'.join(k.key for k in path) for path, d in
             jax.tree_util.tree_flatten_with_path(optim.decay_mask(params))[0] if d}
  assert 'beit_encoder.layer.0.attention.attention.query.kernel' in decayed
  assert not {'beit_embeddings.position_embeddings', 'beit_embeddings.cls_token'} & decayed


def test_probe_config_probes_the_checkpoint_or_a_fresh_beit(finished_run, digits_small):
  config, _, result = finished_run
  config = config.copy_and_resolve_references()
  config.beit_path = result['beit_path']
  scores = probe.probe_config(config, log=None)
  checkpoint = checkpoints.load_beit(result['beit_path'])
  assert scores == {**probe.linear_probe(checkpoint.config, checkpoint.params, digits_small),
                    'beit': f'local:{result["beit_path"]}'}
  config.beit_path = ''
  fresh = probe.probe_config(config, log=None)
  params = beit_lib.BeitModel(checkpoint.config.replace(use_mask_token=False)).init(
      jax.random.key(config.seed), jnp.zeros((1, 8, 8, 1)))['params']
  assert fresh == {**probe.linear_probe(checkpoint.config.replace(use_mask_token=False), params, digits_small),
                   'beit': 'fresh'}
  # The CLI's comparison: the checkpoint against its own architecture with random weights, and the margin.
  both = probe.compare_with_fresh(config, result['beit_path'], log=None)
  assert both['pretrained'] == scores
  params = beit_lib.BeitModel(checkpoint.config).init(jax.random.key(config.seed), jnp.zeros((1, 8, 8, 1)))['params']
  assert both['fresh'] == {**probe.linear_probe(checkpoint.config, params, digits_small),
                           'beit': f'fresh (architecture of local:{result["beit_path"]})'}
  assert both['test_accuracy_margin'] == scores['test_accuracy'] - both['fresh']['test_accuracy']
