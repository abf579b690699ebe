"""Stacked vs one-by-one: one grid group trained as a single vmapped program, and the same models trained one
after another through the single-model path, in one run on one machine.

  python -m experiments.benchmark_grid --config=experiments/configs/digits_grid.py

Times exclude compilation: each side's first epoch (which compiles) is left out, so with E epochs the steady-state
time covers epochs 2..E of every model. The stacked program is timed for each --vmap_widths value, in order (0 = all
models vectorised with vmap; 1 = the single-model program compiled once and run model after model, the CPU
default). Prints times and stacked / loop; `stacked_over_loop` in the JSON is the last --vmap_widths run.

Measured (CPU box, 2 cores, 2026-11-28, group batch_size=32 sgdm, 15 models x 2 timed epochs, --vmap_widths=1,1):
stacked 38.3 s / 37.6 s vs loop 38.6 s, stacked / loop = 0.994 / 0.974 (0.958 before the divergence check was
added). BUILD_NOTES.md, "Stacked vs loop".
"""

import json

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import cmtl_jax
from cmtl_jax import experiment
from cmtl_jax import folds as folds_lib
from cmtl_jax import grid
from cmtl_jax import model as model_lib
from cmtl_jax import optim
from cmtl_jax import stacked
from cmtl_jax import train
from experiments import cli

_CONFIG = cli.define_config('experiments/configs/digits_grid.py')
_EPOCHS = flags.DEFINE_integer('epochs', 3, 'Epochs per model (the first is excluded from the timing).')
_GROUP = flags.DEFINE_integer('group', 0, 'Which group of the grid to time.')
_VMAP_WIDTHS = flags.DEFINE_list('vmap_widths', ['0', '1'], 'Stacked programs to time: models vectorised together '
                                 '(0 = all).')


def main(argv):
  del argv
  with cli.one_line_errors():
    config = _CONFIG.value
    search = grid.GridSearchCV(config, {k: list(v) for k, v in config.grid.to_dict().items()}, cv=config.cv,
                               log=None)
    group = search.groups[_GROUP.value]
    config = grid.apply_params(config, group.params)
    config.num_epochs = _EPOCHS.value
    dataset = cmtl_jax.load_dataset(config)
    pool = np.sort(np.concatenate([dataset.train, dataset.val]))
    pairs = folds_lib.fold_indices(dataset.labels, pool, config.cv, config.seed)
    members = [(float(search.cells[c].get('learning_rate', config.learning_rate)), k)
               for c in group.cells for k in range(config.cv)]
    steps = train.steps_per_epoch(min(len(t) for t, _ in pairs), config.batch_size)
    model, loaded, pretrained, _ = model_lib.from_config(config, dataset.num_classes, jax.random.key(0))
    tx = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained)
    place = lambda params: model_lib.with_pretrained(params, loaded, pretrained)
    images, labels = cmtl_jax.data.stage(dataset)
    common = dict(num_epochs=config.num_epochs, batch_size=config.batch_size, num_classes=dataset.num_classes,
                  eval_batch_size=config.eval_batch_size)

    init_rngs, rngs = (jnp.stack(r) for r in zip(*(train.model_rngs(config.seed, k) for _, k in members)))
    runs = []  # One entry per --vmap_widths value, in order (a repeated width is timed again, e.g. warm).
    for width in map(int, _VMAP_WIDTHS.value):
      _, history = stacked.fit_stacked(
          model, tx, place(model_lib.init_stacked(model, init_rngs)), np.array([lr for lr, _ in members]),
          images, labels, folds_lib.pad_stack([pairs[k][0] for _, k in members]),
          folds_lib.pad_stack([pairs[k][1] for _, k in members]), rngs, vmap_width=width, **common)
      runs.append({'vmap_width': width, 'seconds': float(history['seconds'][0, -1] - history['seconds'][0, 0]),
                   'first_epoch_seconds': float(history['seconds'][0, 0])})

    loop, loop_first = 0.0, 0.0
    for lr, k in members:
      init_rng, train_rng = train.model_rngs(config.seed, k)
      tx_one = optim.from_config(config, steps_per_epoch=steps, pretrained=pretrained, learning_rate=lr)
      _, one = train.fit(model, tx_one, place(model_lib.init_params(model, init_rng)), images, labels,
                         pairs[k][0], pairs[k][1], rng=train_rng, steps=steps, log=None, **common)
      loop += one[-1]['seconds'] - one[0]['seconds']
      loop_first += one[0]['seconds']

    for run in runs:
      run['over_loop'] = run['seconds'] / loop
    result = {'machine': experiment.machine(), 'group': group.name, 'models': len(members),
              'epochs_timed': config.num_epochs - 1, 'loop_seconds': loop, 'loop_first_epochs_seconds': loop_first,
              'stacked': runs, 'stacked_over_loop': runs[-1]['over_loop']}
    print(json.dumps(result, indent=2))
    for run in runs:
      print(f'stacked (vmap_width={run["vmap_width"]}) {run["seconds"]:.1f}s vs loop {loop:.1f}s for '
            f'{len(members)} models x {config.num_epochs - 1} epochs: stacked / loop = {run["over_loop"]:.3f}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
