"""One grid run by two processes under jax.distributed, each computing its devices' share of every group's models:
the same cv_results as one process on the same 2-device mesh."""

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from cmtl_jax import data
from cmtl_jax import resolve
from tests.helpers import cv_scores, write_tiny_grid_config

pytestmark = pytest.mark.slow  # Several processes: the system tier.

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices_per_process):
  return {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices_per_process}',
          'PYTHONPATH': REPO}


def _grid_cli(config_file, workdir, *, processes=1, devices_per_process=1):
  """Runs `experiments.grid_search` as its users do, with `processes` processes joined by the distributed flags;
  returns (cv_results.json's scores, each process's output)."""
  port = _free_port()
  joined = lambda i: ([f'--coordinator_address=localhost:{port}', f'--num_processes={processes}',
                       f'--process_id={i}'] if processes > 1 else [])
  logs = [tempfile.TemporaryFile('w+') for _ in range(processes)]  # Files, not pipes: no process blocks on output.
  runs = [subprocess.Popen([sys.executable, '-m', 'experiments.grid_search', f'--config={config_file}',
                            f'--workdir={workdir}', *joined(i)], cwd=REPO, env=_env(devices_per_process),
                           stdout=log, stderr=subprocess.STDOUT, text=True) for i, log in enumerate(logs)]
  deadline = time.monotonic() + 900
  try:  # Until all are done, one fails (the others would wait for it) or the deadline passes.
    while any(run.poll() is None for run in runs) and time.monotonic() < deadline:
      if any(run.poll() not in (None, 0) for run in runs):
        break
      time.sleep(1)
  finally:
    for run in runs:
      if run.poll() is None:
        run.kill()
        run.wait()
  outputs = []
  for run, log in zip(runs, logs):
    log.seek(0)
    outputs.append(log.read())
    log.close()
    assert run.returncode == 0, outputs[-1][-3000:]
  return cv_scores(workdir), outputs


def test_the_grid_cli_in_two_processes_gives_the_one_process_results(tiny_config, tmp_path):
  data.load_dataset(resolve.resolve(tiny_config).data)  # Prepared once, before two processes read it.
  config_file = write_tiny_grid_config(tmp_path / 'two_groups.py', tiny_config.data.data_dir,
                                       {'optim.learning_rate': (5e-4, 1e-3)}, optim__batch_size=64,
                                       search__grid__seed=(0, 1))
  # Two seeds x two learning rates: one program, so one group of 8 models (4 cells x 2 folds), one unit of work.
  together, outputs = _grid_cli(config_file, tmp_path / 'together', processes=2)
  alone, _ = _grid_cli(config_file, tmp_path / 'alone', devices_per_process=2)  # The same 2-device mesh.
  assert together == alone
  # Process 0 reports and writes the outputs; process 1 computes its share of the models and stays quiet.
  assert 'best cell' in outputs[0] and 'best cell' not in outputs[1]
  summary = (tmp_path / 'together' / 'summary.md').read_text()
  assert 'x2 in 2 processes' in summary and 'units of work: 1 trained in this run, 0 read back' in summary
