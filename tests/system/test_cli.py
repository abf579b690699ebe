"""The command lines as users run them (subprocesses): bad input is one `error:` line and exit status 2; train then
predict; a folder made, trained on and predicted; a grid whose every cell diverged."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import make_reference
from tests.helpers import TINY_BEIT, write_tiny_grid_config

pytestmark = pytest.mark.slow  # Subprocesses: the system tier.

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [f'--config.model.beit.{k}={v}' for k, v in TINY_BEIT.items() if k in ('image_size', 'hidden_size',
                                                                              'num_attention_heads',
                                                                              'intermediate_size')]


def _run(*args, timeout=600, env=None):
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                        env=env)


def _one_error_line(run, message):
  assert run.returncode == 2, run.stderr[-2000:]
  assert 'Traceback' not in run.stderr
  errors = [line for line in run.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and message in errors[0], run.stderr[-2000:]


@pytest.mark.parametrize('override,message', [
    ('data.dataset=no_such_dataset', "unknown dataset 'no_such_dataset'"),
    ('optim.learning_rate=-0.1', 'optim.learning_rate must be a positive number'),
    ('optim.batch_size=100000', 'optim.batch_size 100000 is larger than the training split'),
    ('model.beit.num_channels=3', 'digits images have 1 channel(s) but BEiT expects 3'),
    ('no_such_key=1', "unknown config key 'no_such_key'"),
    ('learning_rate=0.1', "config key 'learning_rate' is now one of optim.learning_rate, pretrain.learning_rate"),
    ('search.cv=3', 'training one model does not read --config.search.cv'),
    ('optim.batch_size=abc', 'flag --config.optim.batch_size=abc: invalid literal for int()'),
    ('search.grid.augment.mixup=(0.0,0.8)', 'training one model does not read --config.search.grid.augment.mixup'),
])
def test_train_prints_one_line_and_exits_2(tmp_path, data_dir, override, message):
  run = _run('experiments.train', f'--workdir={tmp_path}', f'--config.data.data_dir={data_dir}',
             '--config.model.bert_layers=1', '--config.optim.num_epochs=1', f'--config.{override}')
  _one_error_line(run, message)
  assert not os.path.exists(tmp_path / 'metrics.json')


# A misspelled key beside an explicit config file: ml_collections raises AttributeError while it applies the
# overrides, after the flag was defined; every entry point reports it as one line naming the nearest keys.
@pytest.mark.parametrize('entry,config_file,override,message', [
    ('train', 'digits.py', 'optim.learning_rat=0.1', "nearest valid keys: optim.learning_rate"),
    ('grid_search', 'digits_grid.py', 'optim.batch_sizes=3', "nearest valid keys: optim.batch_size"),
    ('ablation', 'digits_ablation.py', 'model.beit.imag_size=3', "nearest valid keys: model.beit.image_size"),
    ('benchmark', 'digits.py', 'model.beit.no_such=1', "unknown config key 'model.beit.no_such'"),
    ('pretrain', 'digits.py', 'num_epochs=3', "config key 'num_epochs' is now one of optim.num_epochs, "
                                              "pretrain.num_epochs"),
    ('pretrain', 'digits.py', 'optim.num_epochs=3', 'pretraining does not read --config.optim.num_epochs: did you '
                                                    'mean --config.pretrain.num_epochs?'),
])
def test_every_entry_point_names_a_misspelled_or_unread_key_in_one_line(tmp_path, entry, config_file, override,
                                                                       message):
  _one_error_line(_run(f'experiments.{entry}', f'--workdir={tmp_path}', f'--config=experiments/configs/{config_file}',
                       f'--config.{override}'), message)


@pytest.mark.parametrize('entry_point', ['train', 'grid_search', 'ablation', 'pretrain'])
def test_a_missing_config_file_is_one_line(tmp_path, entry_point):
  _one_error_line(_run(f'experiments.{entry_point}', f'--workdir={tmp_path}', '--config=experiments/configs/nope.py'),
                  "cannot read the config file: Failed loading config file")


BERT_DIR = os.path.join(make_reference.REFERENCE, 'bert_tiny')
BEIT_DIR = os.path.join(make_reference.REFERENCE, 'beit_absolute_1ch')  # 8 px, patch 4, 1 channel.


@pytest.mark.parametrize('fault', ['hidden_size_edited', 'truncated', 'beit_hidden_size', 'bert_as_beit'])
def test_checkpoint_faults_are_one_line_and_exit_2(tmp_path, data_dir, fault):
  directory = str(tmp_path / 'ckpt')
  shutil.copytree(BERT_DIR, directory, ignore=shutil.ignore_patterns('reference.npz'))
  args = [f'--config.model.bert_path={directory}', '--config.model.bert_layers=1']
  if fault == 'hidden_size_edited':
    with open(os.path.join(directory, 'config.json')) as f:
      config = json.load(f)
    with open(os.path.join(directory, 'config.json'), 'w') as f:
      json.dump({**config, 'hidden_size': 48}, f)
    message = f'the bert weights in {directory}/model.safetensors do not fit its config.json'
  elif fault == 'truncated':
    path = os.path.join(directory, 'model.safetensors')
    os.truncate(path, os.path.getsize(path) - 1000)
    message = f"cannot read {path}: it is truncated: tensor '"
  elif fault == 'beit_hidden_size':  # The checkpoint is 8 px, 1 channel: image_size resizes, hidden_size is fixed.
    args = [f'--config.model.beit_path={BEIT_DIR}', '--config.model.beit.hidden_size=48']
    message = 'model.beit.hidden_size=48 but the checkpoint at'
  else:
    args = [f'--config.model.beit_path={directory}']
    message = "holds a 'bert' model, not 'beit'"
  _one_error_line(_run('experiments.train', f'--workdir={tmp_path}/run', '--config=experiments/configs/digits.py',
                       f'--config.data.data_dir={data_dir}', *args), message)


def test_train_then_predict(tmp_path, data_dir):
  workdir = tmp_path / 'run'
  cache = tmp_path / 'xla_cache'  # --compilation_cache_dir wins over the session's cache in the environment.
  env = {**os.environ, 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'}
  run = _run('experiments.train', f'--workdir={workdir}', f'--compilation_cache_dir={cache}',
             '--config=experiments/configs/digits.py', f'--config.data.data_dir={data_dir}',
             '--config.optim.num_epochs=1', '--config.model.bert_layers=1', *TINY, env=env)
  assert run.returncode == 0, run.stderr[-2000:]
  assert 'epoch 1/1' in run.stdout and 'ETA' in run.stdout
  assert os.path.isfile(workdir / 'metrics.json')
  assert os.listdir(cache), 'no compiled program was written to --compilation_cache_dir'
  np.save(tmp_path / 'x.npy', np.zeros((3, 8, 8), np.uint8))
  run = _run('experiments.predict', f'--workdir={workdir}', f'--images={tmp_path / "x.npy"}')
  assert run.returncode == 0, run.stderr[-2000:]
  lines = run.stdout.strip().splitlines()
  assert len(lines) == 4 and lines[0].startswith(f'{tmp_path / "x.npy"}[0]\t')
  assert lines[3].startswith('3 image(s): ') and lines[3].endswith(f'probabilities in {workdir / "predictions.csv"}')
  with open(workdir / 'predictions.csv') as f:
    assert len(f.read().strip().splitlines()) == 4  # The header and one row per image.


def test_make_a_folder_train_on_it_and_predict_it(tmp_path):
  images, workdir = tmp_path / 'digits', tmp_path / 'run'
  run = _run('experiments.make_image_folder', f'--out={images}', '--source=digits', '--per_class=20')
  assert run.returncode == 0, run.stderr[-2000:]
  assert sorted(os.listdir(images)) == [str(i) for i in range(10)]
  run = _run('experiments.train', '--config=experiments/configs/folder.py', f'--config.data.data_dir={images}',
             f'--config.data.prepared_dir={tmp_path / "prepared"}', f'--workdir={workdir}',
             '--config.optim.num_epochs=1', '--config.optim.batch_size=16', '--config.model.bert_layers=1', *TINY)
  assert run.returncode == 0, run.stderr[-2000:]
  with open(workdir / 'metrics.json') as f:
    assert json.load(f)['dataset']['test'] == 40  # 20 % of 10 x 20 images.
  run = _run('experiments.predict', f'--workdir={workdir}', f'--images={images}')
  assert run.returncode == 0, run.stderr[-2000:]
  assert run.stdout.strip().splitlines()[-1].startswith('200 image(s): ')
  with open(workdir / 'predictions.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 200 and set(rows[0]) == {'file', 'class_index', 'class_name'} | {f'p_{i}' for i in range(10)}


def test_a_grid_whose_every_cell_diverged_writes_its_scores_and_exits_2(tmp_path, data_dir):
  config = write_tiny_grid_config(tmp_path / 'diverging.py', data_dir, {'optim.learning_rate': (1e8, 1e9)},
                                  optim__optimizer='sgdm', optim__grad_clip=0.0)
  workdir = tmp_path / 'grid'
  _one_error_line(_run('experiments.grid_search', f'--config={config}', f'--workdir={workdir}'),
                  'every cell of the grid diverged')
  results = json.loads((workdir / 'cv_results.json').read_text())
  assert results['mean_test_accuracy'] == [None, None]  # NaN: every fit diverged.
  assert not (workdir / 'summary.md').exists()  # No best cell, no refit model, no summary of one.
