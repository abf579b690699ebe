"""End to end with the real hybrid: train, save, reload and predict; a grid search's files; the bad inputs a run
meets, each one line before anything trains."""

import json
import os

import jax
import numpy as np
from PIL import Image
import pytest

import cmtl_jax
from cmtl_jax import data
from cmtl_jax import experiment
from cmtl_jax import resolve
from cmtl_jax.errors import ConfigError
from cmtl_jax.search import engine as engine_lib
from cmtl_jax.search import stacked


@pytest.mark.parametrize('variant,dtype', [('hybrid', 'float32'), ('beit', 'bfloat16')])
def test_train_save_reload_predict(tiny_config, tmp_path, variant, dtype):
  tiny_config.model.variant, tiny_config.model.dtype, tiny_config.optim.num_epochs = variant, dtype, 2
  tiny_config.data.train_per_class, tiny_config.optim.batch_size = 40, 32  # 10 steps an epoch.
  results = cmtl_jax.train_and_evaluate(tiny_config, str(tmp_path), log=None)
  saved = json.loads((tmp_path / 'metrics.json').read_text())
  for key in ('val_accuracy', 'val_f1', 'val_precision', 'val_recall', 'test_accuracy'):
    assert saved[key] == pytest.approx(results[key])
  assert [h['epoch'] for h in saved['history']] == [1, 2]
  assert saved['val_accuracy'] == saved['history'][-1]['val_accuracy']
  assert saved['pretrained']['beit'] == {'pretrained': False, 'source': 'fresh'}
  assert (saved['pretrained']['bert'] is None) == (variant == 'beit')
  assert saved['history'][-1]['loss'] < saved['history'][0]['loss']
  assert saved['run']['model']['variant'] == variant and saved['run']['optim']['num_epochs'] == 2
  classifier = cmtl_jax.Classifier.load(str(tmp_path))
  assert (classifier.model.bert_config is None) == (variant == 'beit')
  assert classifier.model.dtype == np.dtype(dtype)  # It predicts as it was trained and scored.
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(classifier.params))  # Parameters stay float32.
  dataset = data.load_dataset(resolve.resolve(tiny_config).data)
  predictions = classifier.predict(dataset.images[dataset.test])
  assert np.mean(predictions == dataset.labels[dataset.test]) == pytest.approx(saved['test_accuracy'], abs=1e-6)
  assert classifier.class_names == tuple(str(i) for i in range(10))


def test_a_grid_search_writes_its_results_summary_and_heatmaps(tiny_config, tmp_path, fake):
  tiny_config.search.grid = {'optim': {'learning_rate': (1e-3, 3e-3)}}
  search = experiment.grid_search(tiny_config, str(tmp_path), log=None, command='python -m experiments.grid_search',
                                  build_task=fake)
  results = json.loads((tmp_path / 'cv_results.json').read_text())
  assert [p['optim.learning_rate'] for p in results['params']] == [1e-3, 3e-3]
  assert results['rank_test_accuracy'] == search.cv_results_['rank_test_accuracy'].tolist()
  assert (tmp_path / 'cv_results.csv').read_text().count('\n') == 3
  assert os.path.getsize(tmp_path / 'heatmap_adam.png') > 0
  summary = (tmp_path / 'summary.md').read_text()
  assert f'{search.test_scores_["accuracy"]:.4f}' in summary and f'{search.best_score_:.4f}' in summary


BAD = [
    ('data.dataset', 'no_such_dataset', "unknown dataset 'no_such_dataset'"),
    ('optim.batch_size', 100000, 'optim.batch_size 100000 is larger than the training split'),
    ('model.bert_path', '/no/such/dir', "BERT weights path '/no/such/dir' does not exist"),
    ('model.beit_path', './no/such/dir', "BEiT weights path './no/such/dir' does not exist"),
    ('model.beit.num_channels', 3, 'digits images have 1 channel\\(s\\) but BEiT expects 3'),
]


@pytest.mark.parametrize('key,value,message', BAD)
def test_bad_input_is_one_value_error_before_anything_trains(tiny_config, monkeypatch, key, value, message):
  monkeypatch.setattr(engine_lib.Engine, 'train', lambda *a, **k: pytest.fail('trained before refusing'))
  tiny_config.update_from_flattened_dict({key: value})
  with pytest.raises(ValueError, match=message):
    cmtl_jax.train_and_evaluate(tiny_config, '', log=None)


def test_a_workdir_holding_a_classifier_is_refused_before_any_training(tiny_config, tmp_path, monkeypatch):
  """Training into a workdir that already has `checkpoint/` would train fully, then fail to save over it."""
  (tmp_path / 'checkpoint' / '0').mkdir(parents=True)
  monkeypatch.setattr(engine_lib.Engine, 'train', lambda *a, **k: pytest.fail('trained before refusing'))
  with pytest.raises(ConfigError, match='already holds a trained classifier'):
    cmtl_jax.train_and_evaluate(tiny_config, str(tmp_path), log=None)


def test_a_training_workdir_and_a_search_workdir_are_not_mixed(tiny_config, tmp_path, fake, monkeypatch):
  monkeypatch.setattr(engine_lib.Engine, 'train', lambda *a, **k: pytest.fail('trained before refusing'))
  (tmp_path / 'search').mkdir()
  (tmp_path / 'search' / 'run.json').write_text('{}')
  with pytest.raises(ConfigError, match='holds a search or an ablation arm'):
    cmtl_jax.train_and_evaluate(tiny_config, str(tmp_path / 'search'), log=None)
  (tmp_path / 'trained').mkdir()
  (tmp_path / 'trained' / 'metrics.json').write_text('{}')
  tiny_config.search.grid = {'optim': {'learning_rate': (1e-3,)}}
  with pytest.raises(ConfigError, match='holds a trained classifier'):
    experiment.grid_search(tiny_config, str(tmp_path / 'trained'), log=None, build_task=fake)


def test_a_batch_larger_than_a_fold_is_refused_before_any_training(tiny_config, monkeypatch):
  monkeypatch.setattr(stacked.Stack, 'train', lambda *a, **k: pytest.fail('trained before refusing'))
  tiny_config.search.grid = {'optim': {'batch_size': (32, 4096)}}
  with pytest.raises(ConfigError, match='optim.batch_size 4096 is larger than a CV training fold'):
    experiment.grid_search(tiny_config, '', log=None)


def test_a_workdir_of_another_kind_is_refused(tiny_config, tmp_path):
  tiny_config.search.grid = {'optim': {'learning_rate': (1e-3,)}}
  (tmp_path / 'run.json').write_text('{not json')
  with pytest.raises(ConfigError, match='run.json is unreadable: this workdir is not a search of cmtl_jax'):
    experiment.grid_search(tiny_config, str(tmp_path), log=None)
  (tmp_path / 'run.json').unlink()
  (tmp_path / 'grid_config.json').write_text('{}')  # Written by the flat-config versions.
  with pytest.raises(ConfigError, match='holds a search of an older cmtl_jax'):
    experiment.grid_search(tiny_config, str(tmp_path), log=None)


def _class_folder(root, counts, size=(8, 8)):
  for c, n in enumerate(counts):
    (root / f'class_{c}').mkdir(parents=True, exist_ok=True)
    for i in range(n):
      Image.fromarray(np.full(size, 20 * c + i, np.uint8), 'L').save(root / f'class_{c}' / f'{i}.png')
  return str(root)


def test_a_folder_dataset_needs_its_path(tiny_config):
  tiny_config.data.dataset, tiny_config.data.data_dir = 'folder', ''
  with pytest.raises(ConfigError, match='dataset folder needs --config.data.data_dir=PATH'):
    cmtl_jax.train_and_evaluate(tiny_config, '', log=None)


def test_a_class_smaller_than_the_folds_is_named(tiny_config, tmp_path):
  root = _class_folder(tmp_path / 'images', [6, 3])
  tiny_config.data.update(dict(dataset='folder', data_dir=root, prepared_dir=str(tmp_path / 'prepared'),
                               val_fraction=0.3))
  tiny_config.search.cv = 4
  tiny_config.search.grid = {'optim': {'learning_rate': (1e-3,)}}
  with pytest.raises(ConfigError, match=r"class 'class_1' has 3 image\(s\) .*fewer than cv=4 folds need \(4\)"):
    experiment.grid_search(tiny_config, '', log=None)
  assert data.load_dataset(resolve.resolve(tiny_config).data).num_classes == 2  # One model needs no folds.


def test_a_heatmap_names_the_grid_keys_it_folds_into_its_cells():
  from cmtl_jax import plots  # pylint: disable=g-import-not-at-top
  params = [{'augment.mixup': m, 'optim.learning_rate': lr, 'seed': 0} for m in (0.0, 0.8) for lr in (1e-3, 1e-2)]
  assert plots.folded_keys(params) == ['augment.mixup']  # seed takes one value: nothing folded over it.
  assert plots.folded_keys(params[:2]) == []
