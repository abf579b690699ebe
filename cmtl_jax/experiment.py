"""End-to-end runs from a config: one model (`train_and_evaluate`), a grid search, an ablation; their files."""

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax import ablation as ablation_lib
from cmtl_jax import classifier
from cmtl_jax import config as config_lib
from cmtl_jax import data
from cmtl_jax.search import grid as grid_lib
from cmtl_jax.search import halving
from cmtl_jax.models import build as model_lib
from cmtl_jax import optim
from cmtl_jax import report
from cmtl_jax import train
from cmtl_jax.errors import AllCellsDivergedError, ConfigError


def machine() -> str:
  """e.g. `host cpu:cpu x2 (2 CPUs)`; under jax.distributed `... x2 in 2 processes (2 CPUs on this host)`."""
  device = jax.devices()[0]
  where = f'{platform.node()} {device.platform}:{device.device_kind} x{jax.device_count()}'
  if jax.process_count() > 1:
    return f'{where} in {jax.process_count()} processes ({os.cpu_count()} CPUs on this host)'
  return f'{where} ({os.cpu_count()} CPUs)'


def train_and_evaluate(config, workdir: str = '', log=print) -> dict:
  """Trains the model `config` describes on its dataset's train split and scores validation and test.

  Writes `<workdir>/metrics.json` and an orbax checkpoint of the final params with the metadata needed to rebuild
  the classifier (`classifier.Classifier.load(workdir)`), when `workdir` is given. Returns the metrics dict.

  Raises:
    ConfigError (a ValueError) for any bad input, before anything is compiled; also when `workdir` already holds a
    saved classifier (`<workdir>/checkpoint`), which this run would otherwise train for and then fail to overwrite.
  """
  config_lib.validate(config)
  saved = os.path.join(os.path.abspath(workdir), classifier.CHECKPOINT_DIR) if workdir else ''
  if saved and os.path.exists(saved):
    raise ConfigError(f'workdir {workdir!r} already holds a trained classifier ({saved}): choose another '
                      f'--workdir or remove that directory.')
  start = time.perf_counter()
  dataset = data.load_dataset(config)
  if dataset.skipped and log:
    log(f'note: {len(dataset.skipped)} bad image file(s) skipped (listed in metrics.json), e.g. '
        f'{dataset.skipped[0][0]}: {dataset.skipped[0][1]}')
  if config.batch_size > len(dataset.train):
    raise ConfigError(f'batch_size {config.batch_size} is larger than the training split ({len(dataset.train)} '
                      f'examples): lower --config.batch_size.')
  init_rng, train_rng = train.model_rngs(config.seed)
  model, params, pretrained, sources = model_lib.build_model(config, dataset.num_classes, init_rng)
  data.check_channels(dataset, model.beit_config.num_channels, config.gray_to_rgb)
  if log:
    beit = sources['beit']
    log(f'the image side (BEiT) is pretrained: {beit["tensors_loaded"]} tensors from {beit["source"]}'
        if beit['pretrained'] else 'note: the image side (BEiT) is not pretrained: it starts from a fresh config.')
  steps = train.steps_per_epoch(len(dataset.train), config.batch_size)
  tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
  images, labels = data.stage(dataset)
  params, history = train.fit(
      model, tx, params, images, labels, dataset.train, dataset.val, num_epochs=config.num_epochs,
      batch_size=config.batch_size, num_classes=dataset.num_classes, rng=train_rng,
      eval_batch_size=config.eval_batch_size, label_smoothing=config.label_smoothing, log=log)
  test = train.evaluate(model, params, dataset, 'test', config.eval_batch_size)
  final = history[-1]
  results = {
      'val_accuracy': final['val_accuracy'], 'val_f1': final['val_f1'],
      'val_precision': final['val_precision'], 'val_recall': final['val_recall'],
      'test_accuracy': test['accuracy'], 'test_f1': test['f1'], 'test_precision': test['precision'],
      'test_recall': test['recall'], 'test_per_class': test['per_class'],
      'history': history, 'pretrained': sources, 'seconds': time.perf_counter() - start,
      'machine': machine(), 'dataset': {'name': dataset.name, 'train': len(dataset.train),
                                        'val': len(dataset.val), 'test': len(dataset.test),
                                        'skipped': [list(entry) for entry in dataset.skipped]},
      'config': config.to_dict(),
  }
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    metadata = {'beit_config': model.beit_config.to_dict(),
                'bert_config': model.bert_config.to_dict() if model.bert_config else None,
                'class_names': list(dataset.class_names), 'pooling': model.pooling,
                'bridge_norm': model.bridge_norm, 'dtype': jnp.dtype(model.dtype).name, 'pretrained': sources,
                'image_shape': list(dataset.images.shape[1:]),  # How image files are read for prediction.
                'config': config.to_dict()}
    classifier.save(workdir, params, metadata)
    with report.atomic(os.path.join(workdir, 'metrics.json')) as tmp, open(tmp, 'w') as f:
      json.dump(results, f, indent=2)
  if log:
    log(f'val_accuracy {results["val_accuracy"]:.4f}  test_accuracy {results["test_accuracy"]:.4f}  '
        f'in {results["seconds"]:.0f}s')
  return results


def grid_search(config, workdir: str = '', log=print, command: str = '') -> grid_lib.GridSearchCV:
  """Runs the grid `config.grid` describes (resuming finished groups, or halving rounds, in `workdir`), refits the
  best cell, and writes cv_results.json / .csv, one heatmap per optimiser and summary.md into `workdir`."""
  param_grid = {k: list(v) for k, v in config.grid.to_dict().items()}
  start = time.perf_counter()
  common = dict(cv=config.cv, refit=config.refit, score_epoch=config.score_epoch,
                models_per_program=config.models_per_program, log=log if jax.process_index() == 0 else None)
  if config.search == 'halving':
    search = halving.HalvingGridSearchCV(config, param_grid, factor=config.halving_factor,
                                         min_epochs=config.halving_min_epochs, **common)
  else:
    search = grid_lib.GridSearchCV(config, param_grid, **common)
  try:
    search.fit(workdir=workdir)
  except AllCellsDivergedError:
    if workdir and jax.process_index() == 0:  # The scores are still written (all NaN), then the error line.
      report.write_cv_results(workdir, search.cv_results_)
    raise
  seconds = time.perf_counter() - start
  if workdir and jax.process_index() == 0:  # Under jax.distributed every process holds the results; one writes.
    report.write_cv_results(workdir, search.cv_results_)
    # Halving: the first round, where every cell trained the same epochs, is the comparable map.
    results = report.rows(search.cv_results_, search.cv_results_['iter'] == 0) if config.search == 'halving' \
        else search.cv_results_
    optimizers = sorted({p.get('optimizer', config.optimizer) for p in results['params']})
    for optimizer in optimizers:
      report.heatmap(os.path.join(workdir, f'heatmap_{optimizer}.png'), results, optimizer)
    report.write_summary(os.path.join(workdir, 'summary.md'), search, machine(), seconds, command)
  if log and jax.process_index() == 0:
    log(f'best cell {search.best_params_}: mean CV {config.refit} {search.best_score_:.4f}; '
        f'test accuracy of the refit model {search.test_scores_["accuracy"]:.4f}; {seconds:.0f}s')
  return search


def ablation(config, workdir: str, log=print, commands=()) -> dict:
  """The nested-CV ablation a config describes (`ablation_lib.run`): writes ablation.json (every score, choice,
  inner split and cost), report.md, ablation_bars.png, training_curves.png and, with `config.curve_sizes`,
  learning_curve.png into `workdir`. Finished searches are checkpointed under `workdir/searches` and resumed.

  Raises:
    ConfigError for bad input, including a training-set size too small for the folds, before anything trains.
  """
  config_lib.validate(config)
  start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  result = ablation_lib.run(config, os.path.join(workdir, 'searches'), log)
  seconds = time.perf_counter() - start
  point = result['points'][result['table_size']]
  report.ablation_bars(os.path.join(workdir, 'ablation_bars.png'), point['table'])
  report.training_curves_plot(os.path.join(workdir, 'training_curves.png'), point)
  if result['curve_sizes']:
    report.learning_curve_plot(os.path.join(workdir, 'learning_curve.png'), result['points'], result['curve_sizes'])
  summary = {'machine': machine(), 'seconds': seconds, 'config': config.to_dict(), **result,
             'commands': list(commands)}
  with report.atomic(os.path.join(workdir, 'ablation.json')) as tmp, open(tmp, 'w') as f:
    json.dump(summary, f, indent=1, default=_json_number)
  report.write_ablation_report(os.path.join(workdir, 'report.md'), summary=summary, config=config,
                               commands=commands, baseline=ablation_lib.BASELINE,
                               conclusions=ablation_lib.conclusions)
  if log:
    table = point['table']
    log('; '.join(f'{name} accuracy {row["accuracy"]["mean"]:.4f} ± {row["accuracy"]["std"]:.4f}'
                  for name, row in table.items()) + f'; {seconds:.0f}s')
  return summary


def _json_number(value):
  """numpy scalars in ablation.json."""
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f'{type(value).__name__} is not JSON serialisable')
