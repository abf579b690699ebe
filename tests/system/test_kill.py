"""A grid killed with SIGKILL at a random moment and rerun loses nothing and trains no finished unit of work (a
group of models) twice."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import cv_scores, write_tiny_grid_config

pytestmark = pytest.mark.slow  # SIGKILLed CLI processes: the second tier.

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def grid_command(tmp_path_factory):
  """A tiny grid (2 groups x 2 learning rates x 2 folds) as a CLI command; its data dir is prepared once."""
  root = tmp_path_factory.mktemp('kill')
  config = write_tiny_grid_config(root / 'tiny_grid.py', root / 'tfds',
                                  {'optim.learning_rate': (1e-3, 3e-3), 'optim.optimizer': ('sgdm', 'adam')})
  return lambda workdir: [sys.executable, '-m', 'experiments.grid_search', f'--config={config}',
                          f'--workdir={workdir}']


def _run(command, kill_after=None):
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if kill_after is None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return
  try:
    process.wait(timeout=kill_after)
  except subprocess.TimeoutExpired:
    process.send_signal(signal.SIGKILL)
    process.wait()


def _finished_units(workdir):
  progress = os.path.join(workdir, 'progress')
  if not os.path.isdir(progress):
    return {}
  return {name: os.stat(os.path.join(progress, name)).st_mtime_ns for name in os.listdir(progress)
          if name.endswith('.json') and name[:-5].isdigit()}


def test_sigkill_at_random_moments_then_rerun_gives_the_uninterruptedcv_scores(grid_command, tmp_path):
  start = time.perf_counter()
  _run(grid_command(tmp_path / 'uninterrupted'))
  duration = time.perf_counter() - start
  expected = cv_scores(tmp_path / 'uninterrupted')
  with open(tmp_path / 'uninterrupted' / 'summary.md') as f:
    assert 'units of work: 2 trained in this run, 0 read back' in f.read()

  for seed in (0, 1):
    workdir = tmp_path / f'killed{seed}'
    kill_after = np.random.default_rng(seed).uniform(0.3, 0.95) * duration
    _run(grid_command(workdir), kill_after=kill_after)
    finished = _finished_units(workdir)
    _run(grid_command(workdir))
    assert cv_scores(workdir) == expected, f'seed {seed}, killed after {kill_after:.1f}s'
    # No finished unit was trained (and saved) again; the rerun trained exactly the others.
    assert {k: v for k, v in _finished_units(workdir).items() if k in finished} == finished
    with open(workdir / 'summary.md') as f:
      assert f'units of work: {2 - len(finished)} trained in this run, {len(finished)} read back' in f.read(), (
          seed, finished)
    leftovers = [os.path.join(d, n) for d, dirs, files in os.walk(workdir) for n in dirs + files if 'tmp' in n]
    assert not leftovers, leftovers
