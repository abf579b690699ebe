"""Every bad input: the library raises a ValueError saying what is wrong; the CLI prints that line and exits 2."""

import os
import subprocess
import sys

import pytest

import cmtl_jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BAD = [
    ('dataset', 'no_such_dataset', "unknown dataset 'no_such_dataset'"),
    ('variant', 'clip', "unknown variant 'clip': choose one of hybrid, beit"),
    ('optimizer', 'rmsprop', "unknown optimizer 'rmsprop': choose one of sgdm, adam"),
    ('learning_rate', -0.1, 'learning_rate must be a positive number'),
    ('learning_rate', 0.0, 'learning_rate must be a positive number'),
    ('batch_size', 0, 'batch_size must be a positive number'),
    ('batch_size', 100000, 'batch_size 100000 is larger than the training split'),
    ('bert_path', '/no/such/dir', "BERT weights path '/no/such/dir' does not exist"),
    ('beit_path', './no/such/dir', "BEiT weights path './no/such/dir' does not exist"),
    ('beit.num_channels', 3, 'digits images have 1 channel(s) but BEiT expects 3'),
]


def _set(config, key, value):
  *parents, last = key.split('.')
  for parent in parents:
    config = config[parent]
  config[last] = value


@pytest.mark.parametrize('key,value,message', BAD)
def test_library_raises_value_error(tiny_config, key, value, message):
  _set(tiny_config, key, value)
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    cmtl_jax.train_and_evaluate(tiny_config, '', log=None)


@pytest.mark.parametrize('key,value,message', BAD)
def test_cli_prints_one_line_and_exits_2(tmp_path, data_dir, key, value, message):
  run = subprocess.run(
      [sys.executable, '-m', 'experiments.train', f'--workdir={tmp_path}', f'--config.data_dir={data_dir}',
       '--config.bert_layers=1', '--config.num_epochs=1', f'--config.{key}={value}'],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert run.returncode == 2, run.stderr[-2000:]
  assert 'Traceback' not in run.stderr
  errors = [line for line in run.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and message in errors[0], run.stderr[-2000:]
  assert not os.path.exists(tmp_path / 'metrics.json')
