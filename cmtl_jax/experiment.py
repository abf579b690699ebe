"""End-to-end runs from a config: one model (`train_and_evaluate`), a grid search, an ablation, BEiT pretraining;
each resolves the config once (`resolve.resolve`) and writes its files (results, reports, plots)."""

import math
import os
import time

import jax
import jax.numpy as jnp

from cmtl_jax import ablation as ablation_lib
from cmtl_jax import classifier
from cmtl_jax import data
from cmtl_jax import plots
from cmtl_jax import pretrain as pretrain_lib
from cmtl_jax import report
from cmtl_jax import resolve
from cmtl_jax import workdir as workdir_lib
from cmtl_jax.devices import machine
from cmtl_jax.errors import AllCellsDivergedError, ConfigError
from cmtl_jax.search import engine as engine_lib
from cmtl_jax.search import grid as grid_lib
from cmtl_jax.search import halving
from cmtl_jax.search import store as store_lib
from cmtl_jax.task import ClassifierTask
from cmtl_jax.train import classification


def _eta(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s'


def train_and_evaluate(config, workdir: str = '', log=print) -> dict:
  """Trains the model `config` describes on its dataset's train split and scores validation (every epoch) and test.

  Writes `<workdir>/metrics.json` (the scores, the per-epoch history, the resolved run, where each side's weights
  came from) and an orbax checkpoint of the final params with what rebuilds the classifier
  (`classifier.Classifier.load(workdir)`), when `workdir` is given. Returns the metrics dict.

  Raises:
    ConfigError (a ValueError) for any bad input, before anything is compiled; also when `workdir` already holds a
    saved classifier (`<workdir>/checkpoint`), which this run would otherwise train for and then fail to overwrite.
  """
  run = resolve.resolve(config, 'train')
  saved = os.path.join(os.path.abspath(workdir), classifier.CHECKPOINT_DIR) if workdir else ''
  if saved and os.path.exists(saved):
    raise ConfigError(f'workdir {workdir!r} already holds a trained classifier ({saved}): choose another '
                      f'--workdir or remove that directory.')
  if workdir and os.path.exists(os.path.join(workdir, store_lib.FINGERPRINT)):
    raise ConfigError(f'workdir {workdir!r} holds a search or an ablation arm ({store_lib.FINGERPRINT}): train into '
                      f'another --workdir.')
  start = time.perf_counter()
  dataset = data.load_dataset(run.data)
  if dataset.skipped and log:
    log(f'note: {len(dataset.skipped)} bad image file(s) skipped (listed in metrics.json), e.g. '
        f'{dataset.skipped[0][0]}: {dataset.skipped[0][1]}')
  if run.optim.batch_size > len(dataset.train):
    raise ConfigError(f'optim.batch_size {run.optim.batch_size} is larger than the training split '
                      f'({len(dataset.train)} examples): lower --config.optim.batch_size.')
  data.check_channels(dataset, run.model.beit.num_channels, run.data.gray_to_rgb)
  task = ClassifierTask(run.model, dataset.num_classes)
  if log:
    beit = task.sources['beit']
    log(f'the image side (BEiT) is pretrained: {beit["tensors_loaded"]} tensors from {beit["source"]}'
        if beit['pretrained'] else 'note: the image side (BEiT) is not pretrained: it starts from a fresh config.')
  images, labels = data.stage(dataset)
  engine = engine_lib.Engine(images, labels, resolve.ONE_DEVICE)
  fit = engine_lib.Fit('model', task, run.optim, run.augment, dataset.train, dataset.val, run.seed, 0)
  epochs = run.optim.num_epochs

  def log_epoch(names, epoch, row):
    del names
    if log:
      elapsed = float(row['seconds'][0])
      log(f'epoch {epoch}/{epochs}  loss {float(row["loss"][0]):.4f}  val_acc {float(row["accuracy"][0]):.4f}  '
          f'val_f1 {float(row["f1"][0]):.4f}  {_eta(elapsed)} elapsed  ETA {_eta(elapsed / epoch * (epochs - epoch))}')

  trained = engine.train([fit], on_epoch=log_epoch)['model']
  params = engine.params('model')
  history = [{'epoch': e + 1, 'loss': float(trained['loss'][e]), 'seconds': float(trained['seconds'][e]),
              'diverged': not math.isfinite(trained['loss'][e]),  # A diverged model's loss is NaN from then on.
              **{f'val_{m}': float(trained[m][e]) for m in ('accuracy', 'f1', 'precision', 'recall')}}
             for e in range(epochs)]
  test = classification.evaluate(task, params, images, labels, dataset.test, run.optim.eval_batch_size)
  final = history[-1]
  decoding = {'image_size': int(dataset.images.shape[1]), 'channels': int(dataset.images.shape[3]),
              'resize': run.data.resize}
  results = {
      'val_accuracy': final['val_accuracy'], 'val_f1': final['val_f1'],
      'val_precision': final['val_precision'], 'val_recall': final['val_recall'],
      'test_accuracy': test['accuracy'], 'test_f1': test['f1'], 'test_precision': test['precision'],
      'test_recall': test['recall'], 'test_per_class': test['per_class'],
      'history': history, 'pretrained': task.sources, 'seconds': time.perf_counter() - start,
      'machine': machine(), 'dataset': {'name': dataset.name, 'train': len(dataset.train),
                                        'val': len(dataset.val), 'test': len(dataset.test),
                                        'image_shape': list(dataset.images.shape[1:]),
                                        'model_input': [run.model.beit.image_size] * 2 + [run.model.beit.num_channels],
                                        'skipped': [list(entry) for entry in dataset.skipped]},
      'run': run.to_dict(),
  }
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    model = task.model
    metadata = {'beit_config': model.beit_config.to_dict(),
                'bert_config': model.bert_config.to_dict() if model.bert_config else None,
                'class_names': list(dataset.class_names), 'pooling': model.pooling,
                'bridge_norm': model.bridge_norm, 'dtype': jnp.dtype(model.dtype).name, 'pretrained': task.sources,
                'image_shape': list(dataset.images.shape[1:]), 'decoding': decoding, 'run': run.to_dict()}
    classifier.save(workdir, params, metadata)
    workdir_lib.write_json(os.path.join(workdir, 'metrics.json'), results, indent=2)
  if log:
    log(f'val_accuracy {results["val_accuracy"]:.4f}  test_accuracy {results["test_accuracy"]:.4f}  '
        f'in {results["seconds"]:.0f}s')
  return results


def grid_search(config, workdir: str = '', log=print, command: str = '',
                build_task=ClassifierTask) -> grid_lib.BaseSearchCV:
  """Runs the search `config.search` describes (resuming what `workdir` holds), refits the best cell, and writes
  cv_results.json / .csv, one heatmap per optimiser and summary.md into `workdir`. `build_task` makes a cell's task
  from its model spec (tests pass a fake one)."""
  run = resolve.resolve(config, 'search')
  s = run.search
  common = dict(cv=s.cv, refit=s.refit, score_epoch=s.score_epoch, build_task=build_task,
                log=log if jax.process_index() == 0 else None)
  if s.kind == 'halving':
    search = halving.HalvingGridSearchCV(config, s.param_grid, factor=s.halving_factor,
                                         min_epochs=s.halving_min_epochs, **common)
  else:
    search = grid_lib.GridSearchCV(config, s.param_grid, **common)
  start = time.perf_counter()
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
    results = (report.rows(search.cv_results_, search.cv_results_['iter'] == 0) if search.kind == 'halving'
               else search.cv_results_)
    for optimizer in sorted({p.get('optim.optimizer', run.optim.optimizer) for p in results['params']}):
      plots.heatmap(os.path.join(workdir, f'heatmap_{optimizer}.png'), results, optimizer)
    report.write_summary(os.path.join(workdir, 'summary.md'), search, machine(), seconds, command)
  if log and jax.process_index() == 0:
    log(f'best cell {search.best_params_}: mean CV {s.refit} {search.best_score_:.4f}; '
        f'test accuracy of the refit model {search.test_scores_["accuracy"]:.4f}; {seconds:.0f}s')
  return search


def ablation(config, workdir: str, log=print, commands=(), build_task=ClassifierTask) -> dict:
  """The nested-CV ablation a config describes (`ablation.run`): writes ablation.json (every score, choice, inner
  split and cost), report.md, ablation_bars.png, training_curves.png and, with `ablation.curve_sizes`,
  learning_curve.png into `workdir`. Finished work is saved under `workdir/searches` and resumed. `build_task`
  makes each arm's task from its model spec (tests pass a fake one).

  Raises:
    ConfigError for bad input, including a training-set size too small for the folds, before anything trains.
  """
  run = resolve.resolve(config, 'ablation')
  start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  result = ablation_lib.run(config, os.path.join(workdir, 'searches'), log, build_task)
  seconds = time.perf_counter() - start
  point = result['points'][result['table_size']]
  plots.ablation_bars(os.path.join(workdir, 'ablation_bars.png'), point['table'])
  plots.training_curves_plot(os.path.join(workdir, 'training_curves.png'), point)
  if result['curve_sizes']:
    plots.learning_curve_plot(os.path.join(workdir, 'learning_curve.png'), result['points'], result['curve_sizes'])
  summary = {'machine': machine(), 'seconds': seconds, **result, 'commands': list(commands)}
  workdir_lib.write_json(os.path.join(workdir, 'ablation.json'), summary)
  report.write_ablation_report(os.path.join(workdir, 'report.md'), summary=summary, run=run, commands=commands,
                               baseline=ablation_lib.BASELINE, conclusions=ablation_lib.conclusions)
  if log:
    table = point['table']
    log('; '.join(f'{name} accuracy {row["accuracy"]["mean"]:.4f} ± {row["accuracy"]["std"]:.4f}'
                  for name, row in table.items()) + f'; {seconds:.0f}s')
  return summary


def pretrain(config, workdir: str, log=print) -> dict:
  """BEiT masked image modelling (`pretrain.pretrain`), then its loss curve as `<workdir>/loss.png`."""
  result = pretrain_lib.pretrain(config, workdir, log)
  plots.loss_curve_plot(os.path.join(workdir, 'loss.png'), result['history'])
  return result
