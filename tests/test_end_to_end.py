"""train_and_evaluate end to end on digits with a tiny model: files, history, and a reloaded classifier."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cmtl_jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('variant,dtype', [('hybrid', 'float32'), ('beit', 'bfloat16')])
def test_train_save_reload_predict(tiny_config, tmp_path, variant, dtype):
  tiny_config.variant = variant
  tiny_config.dtype = dtype
  tiny_config.num_epochs = 2
  results = cmtl_jax.train_and_evaluate(tiny_config, str(tmp_path), log=None)
  with open(tmp_path / 'metrics.json') as f:
    saved = json.load(f)
  for key in ('val_accuracy', 'val_f1', 'val_precision', 'val_recall', 'test_accuracy'):
    assert saved[key] == pytest.approx(results[key])
  assert [h['epoch'] for h in saved['history']] == [1, 2]
  assert saved['val_accuracy'] == saved['history'][-1]['val_accuracy']
  assert saved['pretrained']['beit'] == {'pretrained': False, 'source': 'fresh'}
  if variant == 'hybrid':
    assert saved['pretrained']['bert']['pretrained'] is True
  else:
    assert saved['pretrained']['bert'] is None
  assert saved['history'][-1]['loss'] < saved['history'][0]['loss']

  classifier = cmtl_jax.Classifier.load(str(tmp_path))
  assert (classifier.model.bert_config is None) == (variant == 'beit')
  assert classifier.model.dtype == np.dtype(dtype)  # It predicts as it was trained and scored.
  dataset = cmtl_jax.load_dataset(tiny_config)
  predictions = classifier.predict(dataset.images[dataset.test])
  accuracy = np.mean(predictions == dataset.labels[dataset.test])
  assert accuracy == pytest.approx(saved['test_accuracy'], abs=1e-6)
  assert classifier.class_names == tuple(str(i) for i in range(10))


@pytest.mark.slow
def test_cli_train_then_predict(tmp_path, data_dir):
  workdir = tmp_path / 'run'
  common = ['--config=experiments/configs/digits.py', f'--config.data_dir={data_dir}', '--config.num_epochs=1',
            '--config.bert_layers=1', '--config.beit.image_size=8', '--config.beit.hidden_size=32',
            '--config.beit.num_attention_heads=2', '--config.beit.intermediate_size=64']
  cache = tmp_path / 'xla_cache'  # --compilation_cache_dir wins over the session's cache in the environment.
  env = {**os.environ, 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'}
  run = subprocess.run([sys.executable, '-m', 'experiments.train', f'--workdir={workdir}',
                        f'--compilation_cache_dir={cache}', *common],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
  assert run.returncode == 0, run.stderr[-2000:]
  assert 'epoch 1/1' in run.stdout and 'ETA' in run.stdout
  assert os.path.isfile(workdir / 'metrics.json')
  assert os.listdir(cache), 'no compiled program was written to --compilation_cache_dir'
  images = np.zeros((3, 8, 8), np.uint8)
  np.save(tmp_path / 'x.npy', images)
  run = subprocess.run([sys.executable, '-m', 'experiments.predict', f'--workdir={workdir}',
                        f'--images={tmp_path / "x.npy"}'], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-2000:]
  lines = run.stdout.strip().splitlines()
  assert len(lines) == 4 and lines[0].startswith(f'{tmp_path / "x.npy"}[0]\t')
  assert lines[3].startswith('3 image(s): ') and lines[3].endswith(f'probabilities in {workdir / "predictions.csv"}')
  with open(workdir / 'predictions.csv') as f:
    assert len(f.read().strip().splitlines()) == 4  # The header and one row per image.
