"""The pretraining CLI SIGKILLed at a random moment and interrupted with Ctrl-C, then rerun: the exported BEiT equals
an uninterrupted run's; --probe_only probes it beside the same BEiT with random weights."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from cmtl_jax.pretrain import run as run_lib
from tests.pretrain.conftest import PRETRAIN_BEIT

pytestmark = pytest.mark.slow  # Subprocesses: the system tier.

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_cli_sigkilled_and_rerun_writes_the_uninterrupted_checkpoint(data_dir, tmp_path):
  """A SIGKILL at a random moment (perhaps inside an orbax save), then the same command: the exported BEiT equals
  an uninterrupted run's, tensor for tensor, and no orbax temporary directory is left."""
  repo = REPO
  overrides = [f'--config.data.data_dir={data_dir}', '--config.data.train_per_class=20',
               '--config.pretrain.batch_size=32', '--config.pretrain.num_epochs=6', '--config.pretrain.vocab_size=16',
               '--config.pretrain.tokenizer_patches=2000', '--config.pretrain.min_block_patches=2'] + [
                   f'--config.model.beit.{k}={v}' for k, v in PRETRAIN_BEIT.items()]
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
