"""Workdir plumbing: atomic writes, Ctrl-C held over a save, fingerprints compared and named."""

import json
import os
import signal

import numpy as np
import pytest

from cmtl_jax import workdir
from cmtl_jax.errors import ConfigError


def test_an_atomic_write_leaves_the_old_file_when_the_block_fails(tmp_path):
  path = str(tmp_path / 'out.json')
  workdir.write_json(path, {'a': np.float32(1.5), 'b': np.arange(2), 'c': (1, 2)})
  assert json.loads(open(path).read()) == {'a': 1.5, 'b': [0, 1], 'c': [1, 2]}
  with pytest.raises(RuntimeError):
    with workdir.atomic(path) as tmp:
      open(tmp, 'w').write('half')
      raise RuntimeError('killed')
  assert json.loads(open(path).read())['a'] == 1.5 and sorted(os.listdir(tmp_path)) == ['out.json']


def test_a_fingerprint_of_another_run_is_refused_naming_what_differs(tmp_path):
  workdir.check_fingerprint(str(tmp_path), 'run.json', {'a': 1}, 'a test run')  # Nothing there yet.
  workdir.write_fingerprint(str(tmp_path), 'run.json', {'a': 1, 'b': {'c': (1, 2)}})
  workdir.check_fingerprint(str(tmp_path), 'run.json', {'a': 1, 'b': {'c': [1, 2]}}, 'a test run')
  with pytest.raises(ConfigError, match=r'holds a test run of another run \(different settings: b.c\)'):
    workdir.check_fingerprint(str(tmp_path), 'run.json', {'a': 1, 'b': {'c': [1, 3]}}, 'a test run')


def test_ctrl_c_waits_for_the_save_in_progress():
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own (a CI job may ignore SIGINT).
  try:
    finished = []
    with pytest.raises(KeyboardInterrupt):
      with workdir.interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        finished.append('the save')  # Still runs: the interrupt waits for the block's end.
    assert finished == ['the save'] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, previous)
