"""The measurements behind `experiments/benchmark.py`, each a ratio of two timings taken in the same run.

- `step_mfu`: the hybrid's training step, model FLOP/s over the matmul peak measured on the same device.
- `recipe_step_ratio`: the step with the whole fine-tuning recipe (augmentation, mixup / CutMix, layer decay,
  AdamW's decay, EMA: `recipe_config`) over the plain step.
- `torch_speedup`: a PyTorch eager twin's time per example over ours (same config, batch and optimiser).
- `stacked_over_loop`: one grid group trained as a stack vs the same models one by one (one engine call each).
- `halving_epoch_fraction`: model-epochs of successive halving over those of the exhaustive search, and whether
  both pick the same cell.
- `profile` (no ratio): where the step's time goes, per kind of HLO instruction, from a `jax.profiler` trace.

Model FLOPs are counted from the architecture (`train_step_flops`: matmuls and attention, backward = 2x forward),
the usual MFU convention; XLA's own count of the compiled step (`cost_analysis`) is reported beside it.
"""

import collections
import copy
import dataclasses
import glob
import gzip
import json
import re
import tempfile
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax import data
from cmtl_jax import optim
from cmtl_jax import recipes
from cmtl_jax import resolve
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.devices import machine
from cmtl_jax.search import engine as engine_lib
from cmtl_jax.search import grid
from cmtl_jax.search import halving
from cmtl_jax.task import ClassifierTask
from cmtl_jax.train import classification
from cmtl_jax.train import core
from experiments import torch_twin


# ---------------------------------------------------------------------------------------------------------------
# FLOPs and the peak.

def matmul_peak(dtype: str = 'float32', size: int = 0, repeats: int = 10) -> float:
  """FLOP/s of the best of `repeats` jitted `[size, size] @ [size, size]` matmuls on the default device (size 2048
  on CPU, 8192 on accelerators)."""
  size = size or (2048 if jax.default_backend() == 'cpu' else 8192)
  a, b = (jax.random.normal(jax.random.key(i), (size, size), jnp.dtype(dtype)) for i in range(2))
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  best = np.inf
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size ** 3 / best


def synthetic_data(beit, num_examples: int, num_classes: int, seed: int = 0):
  """`data.synthetic_images` at the BEiT's input size and channels (so no resize): `([N, S, S, C], [N])` numpy."""
  return data.synthetic_images(seed, num_examples, beit.image_size, num_classes, beit.num_channels)


# ---------------------------------------------------------------------------------------------------------------
# The training step: MFU and PyTorch.

def _xla_flops(stage) -> float:
  """FLOPs XLA counts in a lowered or compiled program."""
  cost = stage.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', np.nan)) if cost else np.nan


def _task(config, num_classes: int):
  """(task, run) of the model a config describes."""
  run = resolve.resolve(config, 'train')
  return ClassifierTask(run.model, num_classes), run


def step_timer(config, *, num_classes: int = 10, steps: int = 20, seed: int = 0):
  """Compiles one epoch of `steps` training steps of the model `config` describes (its batch size, optimiser and
  dtype) on synthetic data and runs it once.

  Returns:
    (timer, info): `timer()` runs the epoch again and returns its seconds per step (compilation excluded;
    `timer.compiled` is the compiled epoch, for `profile_step`'s instruction names); `info`
    has `model_flops_per_step`, `xla_flops_per_step` (NaN where the backend gives no count), `batch_size`, `dtype`
    and `loss_finite` (every timed epoch's loss so far).
  """
  task, run = _task(config, num_classes)
  batch_size = run.optim.batch_size
  tx = optim.from_spec(run.optim, steps_per_epoch=steps, task=task)
  params = task.init(jax.random.key(seed))
  images, labels = synthetic_data(run.model.beit, steps * batch_size, num_classes, seed)
  images, labels = jnp.asarray(images), jnp.asarray(labels)
  train_idx = jnp.arange(len(labels), dtype=jnp.int32)
  raw_key = jax.random.key_data(jax.random.key(0))

  ema = run.optim.ema_decay > 0

  def lowered_epoch(num_steps):
    epoch = jax.jit(classification.make_train_epoch(task, tx, batch_size=batch_size, steps=num_steps,
                                                    augment=run.augment, ema_decay=run.optim.ema_decay),
                    donate_argnums=0)
    state = jax.eval_shape(lambda: core.init_state(params, tx, ema))
    return epoch.lower(state, raw_key, np.int32(1), images, labels, train_idx)

  # XLA counts a loop body once or per trip depending on the version: compare loops of 1 and 2 steps. The lowered
  # (not compiled) programs are enough for the count, which spares two compilations of a large model.
  one, two = _xla_flops(lowered_epoch(1)), _xla_flops(lowered_epoch(2))
  xla_per_step = two - one if two > 1.5 * one else one
  epoch = lowered_epoch(steps).compile()
  box = {'state': core.init_state(params, tx, ema), 'calls': 0}

  def timer() -> float:
    box['calls'] += 1
    start = time.perf_counter()
    box['state'], metrics = epoch(box['state'], raw_key, np.int32(box['calls']), images, labels, train_idx)
    loss = metrics['loss'].block_until_ready()
    seconds = time.perf_counter() - start
    info['loss_finite'] = info['loss_finite'] and bool(np.isfinite(float(loss)))
    return seconds / steps

  info = {'model_flops_per_step': task.train_step_flops(batch_size), 'xla_flops_per_step': xla_per_step,
          'batch_size': batch_size, 'dtype': run.model.dtype, 'loss_finite': True}
  timer()  # Warm-up: the first call of a compiled program also allocates.
  timer.compiled = epoch
  return timer, info


def _op_kind(hlo_op: str) -> str:
  """`ynn_fusion.128` -> `ynn_fusion`: the kind of an HLO instruction, from its name."""
  return re.sub(r'[._]\d+$', '', hlo_op)


def _op_names(hlo_text: str) -> dict:
  """Instruction name -> the end of its `op_name` metadata (which layer and primitive it came from)."""
  found = re.finditer(r'%([\w.-]+) = [^\n]*?op_name="([^"]*)"', hlo_text)
  return {m.group(1): m.group(2).replace('jit(train_epoch)/while/body/closed_call/', '') for m in found}


def wall_shares(events) -> tuple:
  """Wall time attributed to trace events: each instant is split evenly among the events open then, and an instant
  when none is open goes to the event that ended last before it.

  The second rule is for asynchronous ops: on XLA:CPU a `dot` thunk that Eigen runs (e.g. a weight gradient whose
  lhs contracts its first dimension) has an event that covers only its launch, and its work goes on in the thread
  pool until the next thunk that needs the result starts; summing event durations misses that time.

  Args:
    events: (start, end, key) triples; times in any unit.

  Returns:
    (shares, idle): `{key: attributed time}`, whose sum is the span from the first start to the last end, and the
    part of that span when no event was open.
  """
  bounds = sorted([(start, 1, i) for i, (start, _, _) in enumerate(events)] +
                  [(end, 0, i) for i, (_, end, _) in enumerate(events)])  # At equal times ends come first.
  shares, idle, open_, last_ended, previous = collections.Counter(), 0, set(), None, None
  for time_, is_start, i in bounds:
    if previous is not None and time_ > previous:
      if open_:
        for j in open_:
          shares[events[j][2]] += (time_ - previous) / len(open_)
      else:
        shares[events[last_ended][2]] += time_ - previous
        idle += time_ - previous
    previous = time_
    if is_start:
      open_.add(i)
    else:
      open_.discard(i)
      last_ended = i
  return dict(shares), idle


def profile_step(config, *, num_classes: int = 10, steps: int = 10, top: int = 12) -> dict:
  """Where the training step's time goes: one epoch of `steps` steps under `jax.profiler.trace`, the trace's
  events of the step's program (those with an `hlo_op`, on CPU one per thunk, on GPUs one per kernel) summed by
  kind of HLO instruction (`dot`, `ynn_fusion`, `copy`, ...) and by instruction.

  Returns:
    `seconds_per_step` (wall, traced), `op_seconds_per_step` (sum over events; thunks may overlap),
    `kinds`: [(kind, seconds per step)] longest first, `ops`: the `top` longest instructions as
    (name, seconds per step, op_name); and by wall time (`wall_shares`, which also counts the work of asynchronous
    ops that runs after their events end): `wall_kinds` and `wall_ops` alike, `idle_seconds_per_step` (no event
    open) and `span_seconds_per_step` (first event's start to last event's end, what `wall_kinds` sums to).
  """
  timer, _ = step_timer(config, num_classes=num_classes, steps=steps)
  hlo_text = timer.compiled.as_text()
  module = re.match(r'HloModule ([^,\s]+)', hlo_text).group(1)
  names = _op_names(hlo_text)
  with tempfile.TemporaryDirectory() as workdir:
    with jax.profiler.trace(workdir, create_perfetto_trace=True):
      seconds = timer()
    path, = glob.glob(f'{workdir}/**/perfetto_trace.json.gz', recursive=True)
    with gzip.open(path) as f:
      events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  intervals = []  # (start, end, op) in microseconds.
  for event in events:
    args = event.get('args') or {}
    if event.get('ph') == 'X' and 'hlo_op' in args and args.get('hlo_module', module) == module:
      intervals.append((event['ts'], event['ts'] + event['dur'], args['hlo_op']))
  per_op = collections.Counter()
  for start, end, op in intervals:
    per_op[op] += (end - start) * 1e-6 / steps
  wall, idle = wall_shares(intervals)
  wall_op = collections.Counter({op: t * 1e-6 / steps for op, t in wall.items()})

  def by_kind(counter):
    kinds = collections.Counter()
    for op, op_seconds in counter.items():
      kinds[_op_kind(op)] += op_seconds
    return kinds.most_common()

  span = (max(end for _, end, _ in intervals) - min(start for start, _, _ in intervals)) * 1e-6 / steps
  return {'seconds_per_step': seconds, 'op_seconds_per_step': sum(per_op.values()), 'kinds': by_kind(per_op),
          'ops': [(op, t, names.get(op, '')) for op, t in per_op.most_common(top)],
          'span_seconds_per_step': span, 'idle_seconds_per_step': idle * 1e-6 / steps, 'wall_kinds': by_kind(wall_op),
          'wall_ops': [(op, t, names.get(op, '')) for op, t in wall_op.most_common(top)]}


def torch_timer(config, *, num_classes: int = 10, steps: int = 20, seed: int = 0):
  """The PyTorch eager twin of the same model, batch, optimiser and synthetic data, warmed up: `(timer, info)` as
  `step_timer` (timer() = median seconds of `steps` eager steps), or None without torch."""
  if not torch_twin.available():
    return None
  run = resolve.resolve(config, 'train')
  images, labels = synthetic_data(run.model.beit, steps * run.optim.batch_size, num_classes, seed)
  return torch_twin.step_timer(run.model.beit, run.model.bert, num_classes, images, labels,
                               batch_size=run.optim.batch_size, optimizer=run.optim.optimizer,
                               learning_rate=run.optim.learning_rate, steps=steps, seed=seed)


def recipe_config(config):
  """`config` with the whole fine-tuning recipe on: BEiT's (`recipes.beit_finetune`: augmentation, mixup / CutMix,
  layer decay, AdamW's decay) and an EMA of the weights."""
  recipe = copy.deepcopy(config)
  recipes.beit_finetune(recipe, optim__ema_decay=0.9998)
  return recipe


def time_steps(config, *, rounds: int = 5, steps: int = 20, with_torch: bool = False, num_classes: int = 10,
               with_recipe: bool = True) -> dict:
  """MFU (and the PyTorch ratio, and the step with the whole recipe) in interleaved rounds: each round measures the
  matmul peak, our step, the recipe's step and the twin's step back to back, and forms its ratios from those; the
  result is the median round. A machine whose speed drifts (a shared VM) then moves numerator and denominator
  together instead of biasing one of them."""
  dtypes = ('float32',) if jax.default_backend() == 'cpu' else ('float32', 'bfloat16')
  dtype = config.model.dtype
  ours, info = step_timer(config, steps=steps, num_classes=num_classes)
  recipe_timer = step_timer(recipe_config(config), steps=steps, num_classes=num_classes)[0] if with_recipe else None
  twin = torch_timer(config, steps=steps, num_classes=num_classes) if with_torch else None
  twin_timer, twin_info = twin if twin is not None else (None, None)
  per_round = []
  for _ in range(rounds):
    peaks = {d: matmul_peak(d) for d in dtypes}
    peak = peaks.get(dtype, peaks['float32'])
    row = {'matmul_peak_flops': peaks, 'seconds_per_step': ours()}
    row['step_mfu'] = info['model_flops_per_step'] / row['seconds_per_step'] / peak
    if recipe_timer is not None:
      row['recipe_seconds_per_step'] = recipe_timer()
      row['recipe_step_ratio'] = row['recipe_seconds_per_step'] / row['seconds_per_step']
    if twin_timer is not None:
      row['torch_seconds_per_step'] = twin_timer()
      row['torch_speedup'] = row['torch_seconds_per_step'] / row['seconds_per_step']
    per_round.append(row)
  median = lambda key: float(np.median([r[key] for r in per_round]))
  step = {**info, 'seconds_per_step': median('seconds_per_step'),
          'seconds_per_example': median('seconds_per_step') / info['batch_size'],
          'model_flops_per_second': info['model_flops_per_step'] / median('seconds_per_step')}
  result = {'rounds': per_round, 'step': step, 'step_mfu': median('step_mfu'),
            'matmul_peak_flops': {d: float(np.median([r['matmul_peak_flops'][d] for r in per_round]))
                                  for d in dtypes}}
  if recipe_timer is not None:
    result['recipe_step_ratio'] = median('recipe_step_ratio')
  if twin_timer is not None:
    result['torch'] = {**twin_info, 'seconds_per_step': median('torch_seconds_per_step')}
    result['torch_speedup'] = median('torch_speedup')
  return result


def check_against_cpu(config, *, num_classes: int = 10, steps: int = 3, seed: int = 0, rtol: float = 2e-2) -> dict:
  """The same logits and short training run on the default device and on the host CPU (jax's CPU backend),
  compared: accelerators may compute float32 matmuls in TF32, so agreement is to `rtol` of the values' scale."""
  task, run = _task(config, num_classes)
  batch_size = run.optim.batch_size
  tx = optim.from_spec(run.optim, steps_per_epoch=steps, task=task)
  params = task.init(jax.random.key(seed))
  images, labels = synthetic_data(run.model.beit, steps * batch_size, num_classes, seed)
  raw_key = jax.random.key_data(jax.random.key(seed + 1))
  out = {}
  for name, device in (('device', jax.devices()[0]), ('cpu', jax.devices('cpu')[0])):
    with jax.default_device(device):
      p, im, lb = jax.device_put((params, images, labels), device)
      logits = jax.jit(lambda q, x: task.apply(q, x))(p, im[:8])
      epoch = jax.jit(classification.make_train_epoch(task, tx, batch_size=batch_size, steps=steps))
      state, metrics = epoch(core.init_state(p, tx), raw_key, np.int32(1), im, lb,
                             jnp.arange(len(labels), dtype=jnp.int32))
      out[name] = {'logits': np.asarray(logits, np.float32), 'loss': float(metrics['loss']),
                   'head': np.asarray(state['params']['head']['kernel'], np.float32)}
  scale = lambda x: float(np.abs(x).max()) + 1e-6
  result = {'device': str(jax.devices()[0]),
            'logits_max_diff': float(np.abs(out['device']['logits'] - out['cpu']['logits']).max()),
            'logits_scale': scale(out['cpu']['logits']), 'loss_device': out['device']['loss'],
            'loss_cpu': out['cpu']['loss'],
            'head_max_diff': float(np.abs(out['device']['head'] - out['cpu']['head']).max()),
            'head_scale': scale(out['cpu']['head'])}
  result['ok'] = bool(result['logits_max_diff'] <= rtol * result['logits_scale'] and
                      abs(result['loss_device'] - result['loss_cpu']) <= rtol * abs(result['loss_cpu']) and
                      result['head_max_diff'] <= rtol * result['head_scale'])
  return result


# ---------------------------------------------------------------------------------------------------------------
# The grid: stacked vs loop, halving vs exhaustive.

def stacked_vs_loop(config, *, group: int = 0, epochs: int = 3, vmap_widths: Sequence[int] = (1,),
                    dataset: Optional[data.Dataset] = None) -> dict:
  """One group of the config's `search.grid` (cells that differ only in learning rate, x folds) trained on the
  engine as one stack (once per `vmap_widths` value) and model by model (one engine call per model), for `epochs`
  epochs each; the first epoch (compilation) is left out of every time."""
  run = resolve.resolve(config, 'search')
  search = grid.GridSearchCV(config, run.search.param_grid, cv=run.search.cv, refit=None, log=None)
  dataset = search.prepare(dataset or data.load_dataset(run.data, validation=False))
  program = search.fits([0], dataset.num_classes)[0].program
  cells = [c for c in range(len(search.cells)) if search.fits([c], dataset.num_classes)[0].program == program]
  fits = [dataclasses.replace(f, optim=f.optim.replace(num_epochs=epochs))
          for f in search.fits(cells, dataset.num_classes)]
  images, labels = data.stage(dataset)
  runs = []
  for width in vmap_widths:
    engine = engine_lib.Engine(images, labels, run.devices.replace(vmap_width=width, models_per_program=len(fits)))
    history = engine.train(fits)
    seconds = history[fits[0].name]['seconds']
    runs.append({'vmap_width': width, 'seconds': float(seconds[-1] - seconds[0]),
                 'first_epoch_seconds': float(seconds[0])})
  loop = 0.0
  for fit in fits:
    one = engine_lib.Engine(images, labels, resolve.ONE_DEVICE).train([fit])[fit.name]['seconds']
    loop += float(one[-1] - one[0])
  for r in runs:
    r['over_loop'] = r['seconds'] / loop
  name = ' '.join(f'{k}={v}' for k, v in sorted(search.cells[cells[0]].items()) if k != 'optim.learning_rate')
  return {'group': name or 'all', 'models': len(fits), 'epochs_timed': epochs - 1, 'loop_seconds': loop,
          'stacked': runs, 'stacked_over_loop': runs[-1]['over_loop']}


def halving_vs_exhaustive(config, *, dataset: Optional[data.Dataset] = None) -> dict:
  """The exhaustive search and successive halving over the config's `search.grid` on the same folds (no refit)."""
  run = resolve.resolve(config, 'search')
  param_grid, s = run.search.param_grid, run.search
  dataset = dataset or data.load_dataset(run.data, validation=False)
  out = {}
  for name, search in (('exhaustive', grid.GridSearchCV(config, param_grid, cv=s.cv, refit=None, log=None)),
                       ('halving', halving.HalvingGridSearchCV(
                           config, param_grid, factor=s.halving_factor, min_epochs=s.halving_min_epochs,
                           cv=s.cv, refit=None, log=None))):
    start = time.perf_counter()
    search.fit(dataset)
    out[name] = {'seconds': time.perf_counter() - start, 'best_params': search.best_params_,
                 'best_score': search.best_score_, 'search': search}
  halved = out['halving'].pop('search')
  exhaustive = out['exhaustive'].pop('search')
  last = [p for p, i in zip(halved.cv_results_['params'], halved.cv_results_['iter']) if i == halved.n_iterations_ - 1]
  return {**out, 'num_epochs': run.optim.num_epochs, 'rounds': list(zip(halved.n_candidates_, halved.n_resources_)),
          'epochs_trained': halved.epochs_trained_, 'exhaustive_epochs': halved.exhaustive_epochs_,
          'halving_epoch_fraction': halved.epoch_fraction_,
          'same_winner': halved.best_params_ == exhaustive.best_params_,
          'exhaustive_best_in_last_round': exhaustive.best_params_ in last,
          'seconds_fraction': out['halving']['seconds'] / out['exhaustive']['seconds']}


# ---------------------------------------------------------------------------------------------------------------
# All of it.

PARTS = ('check', 'mfu', 'torch', 'profile', 'stacked', 'halving')


def run(config, grid_config, *, parts: Sequence[str] = PARTS, steps: int = 20, rounds: int = 5,
        stacked_epochs: int = 3, vmap_widths: Sequence[int] = (1,), log=print) -> dict:
  """Runs the chosen `parts` in one process and returns `benchmark.json`'s content (keys `step_mfu`,
  `torch_speedup`, `stacked_over_loop`, `halving_epoch_fraction`; None for a part not run; `check`: the device
  against the CPU)."""
  result = {'machine': machine(), 'backend': jax.default_backend(), 'parts': list(parts),
            'step_mfu': None, 'recipe_step_ratio': None, 'torch_speedup': None, 'stacked_over_loop': None,
            'halving_epoch_fraction': None}
  if 'check' in parts:
    result['check'] = check_against_cpu(config)
    if log:
      c = result['check']
      log(f'{c["device"]} vs CPU: logits differ by {c["logits_max_diff"]:.2e} (scale {c["logits_scale"]:.2e}), '
          f'loss {c["loss_device"]:.6f} vs {c["loss_cpu"]:.6f}, trained head by {c["head_max_diff"]:.2e}: '
          f'{"OK" if c["ok"] else "MISMATCH"}')
  if 'mfu' in parts or 'torch' in parts:
    timed = time_steps(config, rounds=rounds, steps=steps, with_torch='torch' in parts)
    result.update(timed)
    step = timed['step']
    if log:
      for i, r in enumerate(timed['rounds']):
        peak = r['matmul_peak_flops'].get(config.model.dtype, r['matmul_peak_flops']['float32'])
        line = (f'round {i + 1}: peak {peak / 1e9:.1f} GFLOP/s, step {1e3 * r["seconds_per_step"]:.2f} ms, '
                f'MFU {r["step_mfu"]:.3f}')
        if 'recipe_step_ratio' in r:
          line += f', with the recipe {1e3 * r["recipe_seconds_per_step"]:.2f} ms ({r["recipe_step_ratio"]:.2f}x)'
        if 'torch_speedup' in r:
          line += f', PyTorch {1e3 * r["torch_seconds_per_step"]:.2f} ms: torch / ours {r["torch_speedup"]:.2f}'
        log(line)
      log(f'train step ({config.model.dtype}, batch {config.optim.batch_size}), median of {rounds} rounds: '
          f'{1e3 * step["seconds_per_step"]:.2f} ms, {step["model_flops_per_second"] / 1e9:.1f} model GFLOP/s: '
          f'MFU {result["step_mfu"]:.3f} (XLA counts {step["xla_flops_per_step"] / step["model_flops_per_step"]:.2f}x '
          f'the model FLOPs)')
      if 'torch' in parts and result['torch_speedup'] is None:
        log('PyTorch not installed (pip install torch==2.13.0): torch_speedup skipped')
      elif 'torch' in parts:
        log(f'PyTorch {result["torch"]["torch_version"]} eager ({result["torch"]["threads"]} threads): '
            f'{1e3 * result["torch"]["seconds_per_step"]:.2f} ms/step; torch / ours = {result["torch_speedup"]:.2f}')
  if 'profile' in parts:
    result['profile'] = profile = profile_step(config, steps=steps)
    if log:
      span = profile['span_seconds_per_step']
      for view, total, title in [
          ('', profile['op_seconds_per_step'],
           f'profile of one {steps}-step epoch: {1e3 * profile["seconds_per_step"]:.2f} ms/step wall, '
           f'{1e3 * profile["op_seconds_per_step"]:.2f} ms/step in the program\'s ops, by kind of HLO instruction:'),
          ('wall_', span,
           f'by wall time ({1e3 * span:.2f} ms/step from the first op to the last; each instant split among the ops '
           f'running then, an instant with none ({1e3 * profile["idle_seconds_per_step"]:.2f} ms/step) counted to '
           f'the op that ended last: asynchronous ops such as Eigen dots run on after their events end):')]:
        log(title)
        for kind, seconds in profile[f'{view}kinds'][:12]:
          log(f'  {kind:32s} {1e3 * seconds:8.2f} ms {seconds / total:6.1%}')
        log('longest instructions:' if not view else 'longest instructions by wall time:')
        for op, seconds, op_name in profile[f'{view}ops']:
          log(f'  {op:32s} {1e3 * seconds:8.2f} ms  {op_name[-100:]}')
  if 'stacked' in parts:
    result['stacked'] = stacked_vs_loop(grid_config, epochs=stacked_epochs, vmap_widths=vmap_widths)
    result['stacked_over_loop'] = result['stacked']['stacked_over_loop']
    if log:
      for r in result['stacked']['stacked']:
        log(f'group {result["stacked"]["group"]}: stacked (vmap_width={r["vmap_width"]}) {r["seconds"]:.1f}s vs '
            f'loop {result["stacked"]["loop_seconds"]:.1f}s for {result["stacked"]["models"]} models x '
            f'{stacked_epochs - 1} epochs: stacked / loop = {r["over_loop"]:.3f}')
  if 'halving' in parts:
    result['halving'] = halving_vs_exhaustive(grid_config)
    result['halving_epoch_fraction'] = result['halving']['halving_epoch_fraction']
    if log:
      h = result['halving']
      log(f'halving {h["rounds"]} (cells, epochs): {h["epochs_trained"]} of {h["exhaustive_epochs"]} model-epochs '
          f'= {h["halving_epoch_fraction"]:.3f}, {h["seconds_fraction"]:.3f} of the time; same winner: '
          f'{h["same_winner"]} ({h["halving"]["best_params"]} vs {h["exhaustive"]["best_params"]})')
  return result
