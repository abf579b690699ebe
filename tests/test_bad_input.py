"""Every bad input: the library raises a ValueError saying what is wrong; the CLI prints that line and exits 2."""

import json
import os
import subprocess
import sys

import ml_collections
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


# Caught by config.validate before anything is read or compiled.
BAD_CONFIG = [
    ('no_such_key', 1, "unknown config key 'no_such_key'"),
    ('beit.no_such_field', 1, "unknown config key 'beit.no_such_field': nearest valid keys: beit."),
    ('batch_size', 32.5, 'batch_size must be an integer, got 32.5'),
    ('learning_rate', '1e-3', "learning_rate must be a number, got '1e-3'"),
    ('freeze_bert', 1, 'freeze_bert must be True or False, got 1'),
    ('arms', 'beit', "arms must be a list, got 'beit'"),
    ('cv', 1, 'cv must be >= 2 folds'),
    ('vmap_width', -2, 'vmap_width must be >= -1'),
    ('models_per_program', -1, 'models_per_program must be >= 0'),
    ('refit', 'auc', "unknown refit 'auc'"),
    ('score_epoch', 'first', "unknown score_epoch 'first'"),
    ('curve_sizes', (10, 0), 'curve_sizes must be positive integers'),
    ('label_smoothing', 1.0, 'label_smoothing must lie in [0, 1)'),
    ('beit.patch_size', 3, 'beit.image_size 8 is not a multiple of beit.patch_size 3'),
    ('beit.hidden_size', 33, 'beit.hidden_size 33 is not divisible by beit.num_attention_heads 2'),
    ('beit.image_sizes', 1, "unknown config key 'beit.image_sizes': nearest valid keys: beit.image_size"),
    ('resize', 'stretch', "unknown resize 'stretch': choose one of crop, pad"),
    ('on_bad_image', 'ignore', "unknown on_bad_image 'ignore': choose one of error, skip"),
    ('channels', 2, 'channels must be 1 (grey), 3 (RGB) or 0 (beit.num_channels), got 2'),
    ('image_size', -8, 'image_size must be >= 0'),
    ('data_memory_fraction', 0.0, 'data_memory_fraction must lie in (0, 1]'),
    ('data_memory_fraction', 1.5, 'data_memory_fraction must lie in (0, 1]'),
]


@pytest.mark.parametrize('key,value,message', BAD_CONFIG)
def test_every_config_key_is_validated_up_front(tiny_config, key, value, message):
  from cmtl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  # Built from a plain dict (as from JSON or a grid cell): ConfigDict's own assignment type check is not in play.
  raw = tiny_config.to_dict()
  _set(raw, key, value)
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)').replace('[', r'\[')):
    config_lib.validate(ml_collections.ConfigDict(raw))


def test_freezing_bert_without_bert_is_refused(tiny_config):
  tiny_config.variant, tiny_config.freeze_bert = 'beit', True
  with pytest.raises(ValueError, match='freeze_bert needs variant hybrid'):
    cmtl_jax.train_and_evaluate(tiny_config, '', log=None)


@pytest.mark.slow
# The CLI path is the same for every library error: a few representative ones (each is a ~10 s subprocess).
@pytest.mark.parametrize('key,value,message', [
    BAD[0], BAD[3], BAD[6], BAD[9], BAD_CONFIG[6],
    ('no_such_key', 1, "unknown config key 'no_such_key'"),
    ('batch_size', 'abc', "flag --config.batch_size=abc: invalid literal for int()"),
])
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


# A misspelled key beside an explicit config file: ml_collections raises AttributeError while it applies the
# overrides, after the flag was defined; every entry point reports it as one line naming the nearest keys.
# One subprocess per entry point; the message for each kind of misspelling is checked in process below.
@pytest.mark.parametrize('entry,config_file,override,message', [
    ('train', 'digits.py', 'learning_rat=0.1', "unknown config key 'learning_rat': nearest valid keys: "
                                               "learning_rate"),
    ('grid_search', 'digits_grid.py', 'batch_sizes=3', "nearest valid keys: batch_size"),
    ('ablation', 'digits_ablation.py', 'beit.imag_size=3', "nearest valid keys: beit.image_size"),
    ('benchmark', 'digits.py', 'beit.no_such=1', "unknown config key 'beit.no_such'"),
])
def test_a_misspelled_key_beside_a_config_file_is_one_line(tmp_path, entry, config_file, override, message):
  run = subprocess.run(
      [sys.executable, '-m', f'experiments.{entry}', f'--workdir={tmp_path}',
       f'--config=experiments/configs/{config_file}', f'--config.{override}'],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert run.returncode == 2, run.stderr[-2000:]
  assert 'Traceback' not in run.stderr
  errors = [line for line in run.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and message in errors[0], run.stderr[-2000:]


@pytest.mark.parametrize('override,message', [
    ('--config.no_such_key=1', "unknown config key 'no_such_key'"),
    ('--config.beit.no_such=1', "unknown config key 'beit.no_such': nearest valid keys: beit."),
    ('--grid_config.learning_rat=0.1', "unknown config key 'learning_rat': nearest valid keys: learning_rate"),
])
def test_the_cli_names_a_misspelled_override_and_its_nearest_keys(override, message):
  from experiments import cli  # pylint: disable=g-import-not-at-top
  assert cli._unknown_override(['prog', '--config=c.py', '--config.learning_rate=0.1', override]).startswith(message)
  assert cli._unknown_override(['prog', '--config=c.py', '--config.learning_rate=0.1']) == ''


def test_suggestions_name_keys_not_groups():
  from cmtl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  message = config_lib.unknown_key_message('pretrain.epochs')
  names = message.split('nearest valid keys: ')[1].rstrip('.').split(', ')
  assert 'pretrain.num_epochs' in names
  assert all(config_lib.key_exists(name) for name in names), names
  assert not any(isinstance(config_lib.base_config().get(name), ml_collections.ConfigDict) for name in names), names


def test_batch_larger_than_a_fold_is_refused_before_any_training(tiny_config, monkeypatch):
  from cmtl_jax.search import grid  # pylint: disable=g-import-not-at-top
  from cmtl_jax.search import stacked  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(stacked.Stack, 'train', lambda *a, **k: pytest.fail('trained before refusing'))
  with pytest.raises(ValueError, match='batch_size 4096 is larger than a CV training fold'):
    grid.GridSearchCV(tiny_config, {'batch_size': [32, 4096]}, cv=2, log=None).fit()


def test_corrupt_grid_workdir_is_refused(tiny_config, tmp_path):
  from cmtl_jax.search import grid  # pylint: disable=g-import-not-at-top
  (tmp_path / 'grid_config.json').write_text('{not json')
  with pytest.raises(ValueError, match='grid_config.json is unreadable: this workdir is not a grid run'):
    grid.GridSearchCV(tiny_config, {'learning_rate': [1e-3]}, cv=2, log=None).fit(workdir=str(tmp_path))


@pytest.mark.slow
def test_grid_cli_with_every_cell_diverged_writes_scores_and_exits_2(tmp_path, data_dir):
  from conftest import write_tiny_grid_config  # pylint: disable=g-import-not-at-top
  config = write_tiny_grid_config(tmp_path / 'diverging.py', data_dir, {'learning_rate': (1e8, 1e9)},
                                  optimizer='sgdm', grad_clip=0.0)
  workdir = tmp_path / 'grid'
  run = subprocess.run([sys.executable, '-m', 'experiments.grid_search', f'--config={config}',
                        f'--workdir={workdir}'], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert run.returncode == 2, run.stderr[-2000:]
  assert 'Traceback' not in run.stderr
  errors = [line for line in run.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and 'every cell of the grid diverged' in errors[0], run.stderr[-2000:]
  results = json.loads((workdir / 'cv_results.json').read_text())
  assert results['mean_test_accuracy'] == [None, None]  # NaN: every fit diverged.
  assert not (workdir / 'summary.md').exists()  # No best cell, no refit model, no summary of one.


def test_a_workdir_holding_a_classifier_is_refused_before_any_training(tiny_config, tmp_path, monkeypatch):
  """Training into a workdir that already has `checkpoint/` would train fully, then fail to save over it."""
  from cmtl_jax import train  # pylint: disable=g-import-not-at-top
  (tmp_path / 'checkpoint' / '0').mkdir(parents=True)
  monkeypatch.setattr(train, 'fit', lambda *a, **k: pytest.fail('trained before refusing'))
  with pytest.raises(ValueError, match='already holds a trained classifier'):
    cmtl_jax.train_and_evaluate(tiny_config, str(tmp_path), log=None)
