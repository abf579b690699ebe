"""The search engine: trains a list of fits (task + optimisation + learning rate + split + seed stream) up to an
epoch, as stacks of models in shared compiled programs, resumably.

Every search trains through `Engine.train`: GridSearchCV and HalvingGridSearchCV (`search.grid`), the ablation's
selection and final fits, a search's refit, and `train_and_evaluate`'s single model.

- **Groups and programs.** Fits whose task, optimisation (but the peak learning rate, which is injected into each
  model's optimiser state) and augmentation are equal form a group, trained by one compiled program; programs are
  cached for the process (`_PROGRAMS`), so equal groups compile once. Steps per epoch are the group's smallest
  training split's full batches.
- **Stacks and chunks.** A group's models are cut into programs of `models_per_program` models (0: as many as half
  the device memory holds), each a `stacked.Stack`; a stack is vectorised `vmap_width` models at a time (-1: all on
  GPU/TPU or over several devices, one at a time on a single CPU) and sharded over `devices.num_devices`.
- **Continuing.** Fits stay live between calls: a later call with some of them trains those on from their epoch and
  drops the rest (successive halving).
- **Resuming.** With a workdir, every group of every call is a unit saved when it finishes (its fits' histories;
  their train states too when they have not reached their last epoch). A rerun makes the same calls: finished units
  are read back, and fits that go on start from their saved states. The fingerprint of the work is compared first.
"""

import dataclasses
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax import devices as devices_lib
from cmtl_jax import optim as optim_lib
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.errors import ConfigError
from cmtl_jax.search import stacked
from cmtl_jax.search import store as store_lib
from cmtl_jax.train import core


@dataclasses.dataclass(eq=False)
class Fit:
  """One model to train.

  Attributes:
    name: unique within an engine: the fit's identity across calls and in the workdir.
    task: what is trained (`cmtl_jax/task.py`'s interface).
    optim: a `resolve.OptimSpec`; its `learning_rate` is this fit's peak learning rate.
    augment: a `resolve.AugmentSpec`.
    train_idx, val_idx: dataset indices it trains on and is scored on after every epoch (val may be empty).
    seed, stream: its PRNG stream is `core.model_rngs(seed, stream)` (init, data order, dropout).
  """
  name: str
  task: object
  optim: object
  augment: object
  train_idx: np.ndarray
  val_idx: np.ndarray
  seed: int
  stream: int

  @property
  def program(self) -> tuple:
    """What its compiled program depends on (fits with equal `program` train together)."""
    return (self.task, self.optim.program_key(), self.augment)


# ---------------------------------------------------------------------------------------------------------------
# Programs, shared by every engine of the process.

_PROGRAMS = {}
_PROGRAMS_KEPT = 16


def programs_for(fit: Fit, *, steps: int, width: int, mesh) -> stacked.Programs:
  """The compiled programs of `fit`'s group: jax compiles once per function object and input shape, so groups that
  would build the same program must share objects. The `_PROGRAMS_KEPT` most recent are kept."""
  key = (fit.program, steps, width, tuple(d.id for d in mesh.devices.flat) if mesh is not None else None)
  if key not in _PROGRAMS:
    tx = optim_lib.from_spec(fit.optim, steps_per_epoch=steps, task=fit.task)
    _PROGRAMS[key] = stacked.make_programs(
        fit.task, tx, batch_size=fit.optim.batch_size, steps=steps, eval_batch_size=fit.optim.eval_batch_size,
        augment=fit.augment, ema_decay=fit.optim.ema_decay, width=width, mesh=mesh)
    while len(_PROGRAMS) > _PROGRAMS_KEPT:
      del _PROGRAMS[next(iter(_PROGRAMS))]
  return _PROGRAMS[key]


def state_bytes(task, tx, ema: bool = False) -> int:
  """Bytes of one model's train state (params, optimiser state, and the EMA when kept) under `tx`."""
  shapes = jax.eval_shape(lambda: core.init_state(task.init(jax.random.key(0)), tx, ema))
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def auto_models_per_program(per_model_bytes: int, activation: int, vectorised: bool,
                            total_bytes: Optional[int] = None, fraction: float = 0.5, devices: int = 1) -> int:
  """How many models one program may hold within `fraction` of the memory of `devices` devices. Every model's
  state lives throughout (params, optimiser state, gradients and update: ~4x the params+optimiser bytes);
  activations exist for every model at once when they are vectorised, else for one model at a time."""
  budget = fraction * (total_bytes or devices_lib.device_memory_bytes())
  if vectorised:
    return devices * max(1, int(budget // (4 * per_model_bytes + activation)))
  return max(1, int((budget - activation) // (4 * per_model_bytes)))


# ---------------------------------------------------------------------------------------------------------------
# The engine.

def _group(fits: Sequence[Fit]) -> list:
  """Fits by program, in order of first appearance."""
  groups = {}
  for fit in fits:
    groups.setdefault(fit.program, []).append(fit)
  return list(groups.values())


class Engine:
  """Trains fits on one staged dataset (see the module docstring).

  Args:
    images, labels: the whole dataset (uint8 `[N, H, W, C]`, int `[N]`), staged once (replicated over the mesh).
    devices: a `resolve.DevicesSpec`.
    workdir: where units of work are saved and resumed from ('' = in memory only).
    fingerprint: the identity of the work (a rerun with another is refused); `what` names it in that message.
    log: None silences the engine's progress lines.

  Attributes:
    models_per_program_: `{group index in the order trained: models per program}` of every group trained.
    units_trained_, units_resumed_: units of work trained by this engine, and read back from the workdir.
  """

  def __init__(self, images, labels, devices, *, workdir: str = '', fingerprint: Optional[dict] = None,
               what: str = 'a search'):
    self.mesh = stacked.make_mesh(devices.num_devices)
    self.width = stacked.resolve_vmap_width(devices.vmap_width, self.mesh)
    self.models_per_program = devices.models_per_program
    self.images, self.labels = jax.device_put(images), jax.device_put(labels)
    if self.mesh is not None:
      replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
      self.images, self.labels = stacked.put((self.images, self.labels), replicated)
    self.store = store_lib.Store(workdir, fingerprint or {}, what) if workdir else None
    self._unit = 0                # Units started so far (the store's step numbers).
    self._stacks = {}             # name -> (Stack, its names in row order): live models.
    self._epoch = {}              # name -> epochs trained.
    self._history = {}            # name -> {key: [per-epoch values]}.
    self._seconds = {}            # name -> wall seconds of training attributed to it.
    self._state_unit = {}         # name -> the unit whose saved states hold its latest train state.
    self.models_per_program_ = {}
    self.units_trained_, self.units_resumed_ = [], []

  # -- one group ---------------------------------------------------------------------------------------------

  def _plan(self, fits: Sequence[Fit]):
    """(programs, models per program) of a group."""
    steps = core.steps_per_epoch(min(int(np.sum(np.asarray(f.train_idx) >= 0)) for f in fits),
                                 fits[0].optim.batch_size)
    if steps < 1:
      raise ConfigError(f'optim.batch_size {fits[0].optim.batch_size} is larger than a training split '
                        f'({min(len(f.train_idx) for f in fits)} examples): lower it.')
    mesh = self.mesh if self.width != 1 else None
    programs = programs_for(fits[0], steps=steps, width=self.width, mesh=mesh)
    chunk = self.models_per_program or auto_models_per_program(
        state_bytes(fits[0].task, programs.tx, programs.ema), fits[0].task.activation_bytes(fits[0].optim.batch_size),
        vectorised=self.width != 1, devices=mesh.size if mesh is not None else 1)
    return programs, min(chunk, len(fits))

  def _build(self, programs, fits: Sequence[Fit]) -> stacked.Stack:
    task = fits[0].task
    init_rngs, rngs = (jnp.stack(r) for r in zip(*(core.model_rngs(f.seed, f.stream) for f in fits)))
    # Validation indices padded to whole scoring batches: splits of nearby sizes then share one scoring program
    # (the scores ignore padding, and scoring pads to whole batches anyway).
    val_length = max(len(f.val_idx) for f in fits)
    batch = fits[0].optim.eval_batch_size
    params = [task.init(r) for r in init_rngs] if programs.width == 1 else task.init_stacked(init_rngs)
    return stacked.Stack(programs, params,
                         np.array([f.optim.learning_rate for f in fits], np.float32),
                         folds_lib.pad_stack([f.train_idx for f in fits]),
                         folds_lib.pad_stack([f.val_idx for f in fits], -(-val_length // batch) * batch),
                         rngs)

  def _stacks_for(self, fits: Sequence[Fit]) -> list:
    """`(Stack, names)` pairs holding exactly `fits`: live stacks cut down to them, stacks of fits resumed from the
    workdir restored from their saved states, new stacks for new fits."""
    wanted = {f.name for f in fits}
    pairs, seen = [], set()
    for fit in fits:  # Live stacks that hold some of the fits: keep those rows only.
      if fit.name in self._stacks and id(self._stacks[fit.name][0]) not in seen:
        stack, names = self._stacks[fit.name]
        seen.add(id(stack))
        rows = [i for i, n in enumerate(names) if n in wanted]
        if len(rows) < len(names):
          stack.keep(rows)
        pairs.append((stack, [names[i] for i in rows]))
    live = {n for _, names in pairs for n in names}
    rest = [f for f in fits if f.name not in live]
    if rest:
      programs, chunk = self._plan(fits)
      self.models_per_program_[len(self.models_per_program_)] = chunk
      for start in range(0, len(rest), chunk):
        part = rest[start:start + chunk]
        stack = self._build(programs, part)
        self._restore(stack, part)
        pairs.append((stack, [f.name for f in part]))
    for stack, names in pairs:
      for name in names:
        self._stacks[name] = (stack, names)
    return pairs

  def _restore(self, stack: stacked.Stack, fits: Sequence[Fit]) -> None:
    """Brings a freshly built stack of fits that trained before (a resumed run) to their saved states."""
    epochs = {self._epoch.get(f.name, 0) for f in fits}
    if epochs == {0}:
      return
    if len(epochs) > 1 or any(f.name not in self._state_unit for f in fits):
      raise ConfigError('the workdir\'s progress cannot be resumed (a model that goes on has no saved state): '
                        'use a new --workdir.')
    saved = {}
    for unit in sorted({self._state_unit[f.name] for f in fits}):
      results = self.store.unit(unit)
      like = {str(i): [np.empty((len(names), *shape), dtype) for shape, dtype in zip(*_leaf_specs(stack))]
              for i, names in enumerate(results['stacks'])}
      arrays = self.store.arrays(unit, like)
      for i, names in enumerate(results['stacks']):
        for row, name in enumerate(names):
          saved[name] = [leaf[row] for leaf in arrays[str(i)]]
    leaves = [np.stack(parts) for parts in zip(*(saved[f.name] for f in fits))]
    stack.restore(leaves, epochs.pop())

  # -- the calls ---------------------------------------------------------------------------------------------

  def train(self, fits: Sequence[Fit], until_epoch: Optional[int] = None,
            on_epoch: Optional[Callable] = None) -> dict:
    """Trains every fit to `until_epoch` (default: its group's longest `optim.num_epochs`), continuing fits that
    an earlier call trained; live fits not in `fits` are dropped.

    Args:
      on_epoch: called as `on_epoch(names, epoch, row)` after each epoch of each stack: its fits' names and
        `{key: [models]}` (loss, validation scores, seconds).

    Returns:
      `{name: {'loss': [epochs], '<metric>': [epochs], 'seconds': [epochs], 'fit_seconds': float}}` for every fit:
      its whole history so far (validation scores NaN once it diverged; absent without validation indices) and the
      wall seconds of training attributed to it (its stacks' time shared among their models).

    Raises:
      ConfigError: a batch larger than a training split; a workdir whose progress does not fit these fits.
    """
    names = [f.name for f in fits]
    if len(set(names)) != len(names):
      raise ValueError('fit names must be unique')
    for name in [n for n in self._stacks if n not in set(names)]:
      del self._stacks[name]
    for group in _group(fits):
      until = until_epoch or max(f.optim.num_epochs for f in group)
      unit, self._unit = self._unit, self._unit + 1
      saved = self.store.unit(unit) if self.store else None
      if saved is not None:
        self._read_unit(unit, saved, group, until)
        continue
      self._train_group(unit, group, until, on_epoch)
    if self.store:
      self.store.keep_states({self._state_unit[n] for n in names if n in self._state_unit})
    return {n: {**{k: np.asarray(v) for k, v in self._history[n].items()}, 'fit_seconds': self._seconds[n]}
            for n in names}

  def _read_unit(self, unit: int, saved: dict, group: Sequence[Fit], until: int) -> None:
    names = [f.name for f in group]
    if saved['fits'] != names or saved['until'] != until:
      raise ConfigError(f'the workdir\'s unit {unit} trained other models ({len(saved["fits"])} to epoch '
                        f'{saved["until"]}) than this run asks for: use a new --workdir.')
    for name in names:
      self._history[name] = saved['history'][name]
      self._seconds[name] = saved['seconds'][name]
      self._epoch[name] = until
      self._stacks.pop(name, None)
      if saved['stacks']:
        self._state_unit[name] = unit
    self.units_resumed_.append(unit)

  def _train_group(self, unit: int, group: Sequence[Fit], until: int, on_epoch) -> None:
    pairs = self._stacks_for(group)
    for stack, names in pairs:
      began = time.perf_counter()
      callback = None if on_epoch is None else (lambda e, row, n=names: on_epoch(n, e, row))
      history = stack.train(until, self.images, self.labels, on_epoch=callback)
      seconds = time.perf_counter() - began
      for row, name in enumerate(names):
        record = self._history.setdefault(name, {k: [] for k in history})
        for key, values in history.items():
          record.setdefault(key, []).extend(values[row].tolist())
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds / len(names)
        self._epoch[name] = until
    goes_on = until < max(f.optim.num_epochs for f in group)
    if self.store:
      names = [f.name for f in group]
      results = {'fits': names, 'until': until, 'history': {n: self._history[n] for n in names},
                 'seconds': {n: self._seconds[n] for n in names},
                 'stacks': [stack_names for _, stack_names in pairs] if goes_on else []}
      arrays = {str(i): stack.host_state() for i, (stack, _) in enumerate(pairs)} if goes_on else None
      self.store.save(unit, results, arrays)
      if goes_on:
        for name in names:
          self._state_unit[name] = unit
    self.units_trained_.append(unit)

  def epochs_trained(self, name: str) -> int:
    """Epochs fit `name` has trained so far (0 for a fit this engine has not met)."""
    return self._epoch.get(name, 0)

  def params(self, name: str):
    """The current parameters of live fit `name` (one model's tree)."""
    stack, names = self._stacks[name]
    return stack.params_of(names.index(name))


def _leaf_specs(stack: stacked.Stack):
  """(shapes, dtypes) of one model's train-state leaves in `stack`."""
  like = stack.state_like()
  return [x.shape[1:] for x in like], [x.dtype for x in like]
