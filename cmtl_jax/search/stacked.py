"""The stacked program: the models of one grid group trained together, vectorised and sharded over devices.

A `Stack` holds M models' train states (leaves `[M, ...]`), each with its own fold, PRNG stream and injected peak
learning rate, and trains them epoch by epoch with one compiled program (`Programs`). With several devices the
model axis is sharded over a 1-D mesh (`jax.sharding.NamedSharding`, axis 'models'); the data are replicated.
Under `jax.distributed` the mesh spans every process's devices: each process computes its devices' share of the
models, and the per-epoch losses and scores come back replicated to every process.
"""

import dataclasses
import functools
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cmtl_jax import metrics as metrics_lib
from cmtl_jax.train import classification
from cmtl_jax.train import core
from cmtl_jax.errors import ConfigError

MODELS = 'models'  # The mesh axis the stacked models are sharded over.


# ---------------------------------------------------------------------------------------------------------------
# Devices.

def make_mesh(num_devices: int = 0) -> Optional[Mesh]:
  """A 1-D mesh over the first `num_devices` devices of every process (0 = all), or None for a single device."""
  devices = jax.devices()
  count = num_devices or len(devices)
  if count > len(devices):
    raise ConfigError(f'num_devices={num_devices} but only {len(devices)} devices are visible.')
  if jax.process_count() > 1 and count != len(devices):
    raise ConfigError('under jax.distributed every device takes part: use num_devices=0.')
  return Mesh(np.array(devices[:count]), (MODELS,)) if count > 1 else None


def resolve_vmap_width(vmap_width: int, mesh: Optional[Mesh] = None) -> int:
  """-1 (auto): vectorise all models on GPU/TPU or over several devices (0); on one CPU, loop over single models
  (1): a compute-bound CPU gains nothing from vectorising models (BUILD_NOTES.md, "Stacked vs loop")."""
  if vmap_width >= 0:
    return vmap_width
  return 1 if jax.default_backend() == 'cpu' and mesh is None else 0


def put(tree, sharding):
  """Global arrays laid out by `sharding` from values every process holds alike (host arrays, or device
  arrays of this process); works under `jax.distributed`, where `jax.device_put` refuses non-local devices."""
  def one(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # Already global: re-lay it out on device.
      return jax.jit(lambda a: a, out_shardings=sharding)(x)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
  return jax.tree.map(one, tree)


# ---------------------------------------------------------------------------------------------------------------
# The compiled programs.

@dataclasses.dataclass(frozen=True)
class Programs:
  """One group's compiled functions, shared by every stack of equal shape (a second group with the same program
  reuses them: jax traces and compiles once per function object and input shape).

  Attributes:
    train_epoch: `(state, raw_rng, epoch, images, labels, train_idx) -> (state, loss)`; the state is donated.
      Vectorised programs take leaves `[m, ...]`, raw PRNG key data `[m, 2]`, `train_idx [m, n]`; the
      single-model program the same without the leading axis.
    score: `(state, val_idx, images, labels) -> {metric: [m] or scalar}` validation scores of the state's
      `core.weights` (the EMA when kept, and then `raw_accuracy` of the params beside).
    tx: the optimiser (its state's structure; each model's peak LR is injected into it).
    width: models per call (1 = the single-model program, run model after model).
    mesh: the device mesh the model axis is sharded over, or None.
    ema: whether states keep an EMA of the weights.
  """
  train_epoch: Callable
  score: Callable
  tx: object
  width: int
  mesh: Optional[Mesh]
  ema: bool = False


def make_programs(task, tx, *, batch_size: int, steps: int, eval_batch_size: int = 256,
                  augment=None, ema_decay: float = 0.0, width: int = 0, mesh: Optional[Mesh] = None) -> Programs:
  """Jits the group's epoch and scoring functions of `task` (compiled at their first call)."""
  # Epoch e of every model uses fold_in(its key, e), derived inside the program (`train.core`), so that the keys
  # never leave the (possibly sharded) program.
  epoch_fn = classification.make_train_epoch(task, tx, batch_size=batch_size, steps=steps,
                                             augment=augment, ema_decay=ema_decay)
  score_params = classification.make_score(task, batch_size=eval_batch_size)

  def score_fn(state, idx, images, labels):
    scores = score_params(core.weights(state), idx, images, labels)
    if 'ema' in state:
      scores['raw_accuracy'] = score_params(state['params'], idx, images, labels)['accuracy']
    return scores

  ema = ema_decay > 0
  if width == 1:
    return Programs(jax.jit(epoch_fn, donate_argnums=0), jax.jit(score_fn), tx, 1, None, ema)
  out = {}
  if mesh is not None:  # States stay sharded over the models; losses and scores come back to every process.
    models, replicated = NamedSharding(mesh, PartitionSpec(MODELS)), NamedSharding(mesh, PartitionSpec())
    out = {'epoch': dict(out_shardings=(models, replicated)), 'score': dict(out_shardings=replicated)}
  train_epoch = jax.jit(jax.vmap(epoch_fn, in_axes=(0, 0, None, None, None, 0)), donate_argnums=0,
                        **out.get('epoch', {}))
  score = jax.jit(jax.vmap(score_fn, in_axes=(0, 0, None, None)), **out.get('score', {}))
  return Programs(train_epoch, score, tx, width, mesh, ema)


# ---------------------------------------------------------------------------------------------------------------
# Stacks of models.

@functools.partial(jax.jit, static_argnums=(2, 3))
def _init_states(params, learning_rates, tx, ema):
  """Stacked train states with each model's peak learning rate injected. One program, so every leaf comes out
  alike (committed to the device): an array made outside (e.g. `jnp.asarray(learning_rates)`, uncommitted) would
  make the epoch program's first call differ from its later ones, which take its outputs, and compile it twice."""
  state = jax.vmap(lambda p: core.init_state(p, tx, ema))(params)
  state['opt'] = state['opt']._replace(hyperparams={**state['opt'].hyperparams, 'learning_rate': learning_rates})
  return state


@functools.partial(jax.jit, static_argnums=(2, 3))
def _init_state(params, learning_rate, tx, ema):
  """One model's train state with its peak learning rate injected (the single-model program's)."""
  state = core.init_state(params, tx, ema)
  state['opt'] = state['opt']._replace(hyperparams={**state['opt'].hyperparams, 'learning_rate': learning_rate})
  return state


def _pad_rows(x, rows: int):
  """`x` with its last row repeated up to `rows` rows (padding models train a copy and are dropped)."""
  if x.shape[0] == rows:
    return x
  return jnp.concatenate([x, jnp.repeat(x[-1:], rows - x.shape[0], axis=0)])


class Stack:
  """M models trained together, epoch by epoch; `keep` drops models between calls to `train`.

  With the single-model program (`programs.width` 1) each model keeps its own unstacked state, and the program runs
  model after model; otherwise the states are stacked (leaves `[M, ...]`) and cut into chunks of `width` models,
  each padded to a multiple of the mesh's devices and sharded over them.

  Args:
    programs: the group's `Programs`.
    params: initial parameters: a list of M trees for the single-model program, else stacked, leaves `[M, ...]`.
    learning_rates: float32 `[M]` peak learning rates (injected into each model's optimiser state).
    train_idx, val_idx: int32 `[M, n]`, `[M, v]` per-model dataset indices, -1 = padding.
    rngs: `[M]` PRNG keys, one stream per model.
  """

  def __init__(self, programs: Programs, params, learning_rates, train_idx, val_idx, rngs):
    self.programs = programs
    self.epoch = 0           # Epochs trained so far.
    self.models = np.arange(len(learning_rates))  # Which of the initial models are still in the stack.
    learning_rates = np.asarray(learning_rates, np.float32)
    raw_rngs = np.asarray(jax.random.key_data(rngs))
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    if self.single:
      # Committed to the device, as the program's outputs are: its first call and its later ones then look alike to
      # jit, which compiles once.
      device = jax.local_devices()[0]
      self._chunks = [{'rows': 1,
                       'state': _init_state(p, jax.device_put(learning_rates[i], device), programs.tx, programs.ema),
                       **dict(zip(('train', 'val', 'rng'), jax.device_put(
                           (train_idx[i], val_idx[i], raw_rngs[i]), device)))}
                      for i, p in enumerate(params)]
    else:
      self._place(_init_states(params, learning_rates, programs.tx, programs.ema), jnp.asarray(train_idx),
                  jnp.asarray(val_idx), jnp.asarray(raw_rngs))

  @property
  def single(self) -> bool:
    """Whether the models run one by one through the single-model program."""
    return self.programs.width == 1

  def _place(self, state, train_idx, val_idx, raw_rngs) -> None:
    """Cuts stacked arrays (leaves `[M, ...]`) into the program's chunks, padded and sharded when there is a mesh."""
    num = len(self.models)
    width = self.programs.width or num
    mesh = self.programs.mesh
    self._chunks = []
    for start in range(0, num, width):
      rows = slice(start, min(start + width, num))
      part = (state, train_idx, val_idx, raw_rngs)
      if rows.stop - rows.start < num:
        part = jax.tree.map(lambda x: x[rows], part)
      if mesh is not None:
        size = -(-(rows.stop - rows.start) // mesh.size) * mesh.size
        part = put(jax.tree.map(lambda x: _pad_rows(x, size), part), NamedSharding(mesh, PartitionSpec(MODELS)))
      self._chunks.append({'rows': rows.stop - rows.start, 'state': part[0], 'train': part[1], 'val': part[2],
                           'rng': part[3]})

  def _joined(self, key):
    """A stacked tree of chunk field `key` (vectorised programs): padding rows dropped, chunks concatenated."""
    parts = [c[key] if c['rows'] == jax.tree.leaves(c[key])[0].shape[0] else
             jax.tree.map(lambda x, n=c['rows']: x[:n], c[key]) for c in self._chunks]
    return parts[0] if len(parts) == 1 else jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

  def params_of(self, row: int):
    """The current weights (`core.weights`: the EMA when kept) of the model at position `row` of the stack (one
    model's tree)."""
    if self.single:
      return core.weights(self._chunks[row]['state'])
    return jax.tree.map(lambda x: x[row], core.weights(self._joined('state')))

  def state_like(self) -> list:
    """Empty numpy arrays shaped like `host_state`'s (a checkpoint's target to read states into)."""
    rows = len(self.models)
    leaves = jax.tree.leaves(self._chunks[0]['state'])
    inner = (lambda x: x.shape) if self.single else (lambda x: x.shape[1:])
    return [np.empty((rows, *inner(x)), x.dtype) for x in leaves]

  def host_state(self) -> list:
    """The models' train states (`{'params', 'opt', 'finite'}`) as numpy leaves `[len(models), ...]` on every
    process (gathered from all processes under jax.distributed): what `restore` takes back."""
    if self.single:
      return [np.stack(xs) for xs in zip(*(map(np.asarray, jax.tree.leaves(c['state'])) for c in self._chunks))]
    return [np.asarray(x) if x.is_fully_addressable else multihost_utils.process_allgather(x, tiled=True)
            for x in jax.tree.leaves(self._joined('state'))]

  def restore(self, leaves, epoch: int) -> None:
    """Puts back the models' train states, as `host_state` gave them (e.g. read from a checkpoint), for the models
    now in the stack, which have trained until `epoch`."""
    structure = jax.tree.structure(self._chunks[0]['state'])
    if self.single:
      device = jax.local_devices()[0]  # Committed, as `_init_state` makes them: the epoch program compiles once.
      for row, chunk in enumerate(self._chunks):
        chunk['state'] = jax.device_put(jax.tree.unflatten(structure, [x[row] for x in leaves]), device)
    else:
      state = jax.tree.unflatten(structure, leaves)
      if self.programs.mesh is None:
        state = jax.device_put(state, jax.local_devices()[0])
      self._place(state, *(self._joined(k) for k in ('train', 'val', 'rng')))
    self.epoch = epoch

  def keep(self, rows) -> None:
    """Keeps only the models at positions `rows` of the current stack (in that order)."""
    rows = np.asarray(rows, np.int64)
    joined = None if self.single else [self._joined(k) for k in ('state', 'train', 'val', 'rng')]
    self.models = self.models[rows]
    if joined is None:
      self._chunks = [self._chunks[i] for i in rows]
    else:  # Re-cut the kept models into chunks (a new chunk size compiles once more).
      self._place(*(jax.tree.map(lambda x: x[rows], part) for part in joined))

  def train(self, until_epoch: int, images, labels, on_epoch: Optional[Callable] = None) -> dict:
    """Trains every model from its current epoch to `until_epoch`, scoring the validation indices after each (when
    the models have any).

    Args:
      on_epoch: called as `on_epoch(epoch, history_row)` after each epoch, the row `{key: [m]}`.

    Returns:
      `{'loss': [m, e], '<metric>': [m, e], 'seconds': [m, e]}` for the m models in the stack and the e epochs
      run: training loss, validation scores (NaN once a model diverged; absent without validation indices) and wall
      seconds since this call began at the end of each epoch (the first epoch of a new program includes its
      compilation).
    """
    programs = self.programs
    if programs.mesh is not None:
      images, labels = put((images, labels), NamedSharding(programs.mesh, PartitionSpec()))
    scored = self._chunks[0]['val'].shape[-1] > 0
    metrics_kept = (*metrics_lib.METRICS, *(('raw_accuracy',) if programs.ema else ())) if scored else ()
    keys = ('loss', 'seconds', *metrics_kept)
    history = {k: [] for k in keys}
    start = time.perf_counter()
    for epoch in range(self.epoch + 1, until_epoch + 1):
      losses, scores = [], []
      for chunk in self._chunks:  # One compiled program per chunk shape.
        chunk['state'], metrics = programs.train_epoch(chunk['state'], chunk['rng'], np.int32(epoch), images,
                                                       labels, chunk['train'])
        # Wait for each chunk: chunks queued at once would run concurrently and fight over the CPU's threads.
        loss = np.atleast_1d(np.asarray(metrics['loss']))[:chunk['rows']]
        finite = np.isfinite(loss)  # A diverged model's epoch loss is NaN (`train.core`).
        losses.append(loss)
        if scored:
          scores.append({k: np.where(finite, np.atleast_1d(np.asarray(v))[:chunk['rows']], np.nan)
                         for k, v in programs.score(chunk['state'], chunk['val'], images, labels).items()})
      row = {'loss': np.concatenate(losses), 'seconds': np.full(len(self.models), time.perf_counter() - start)}
      row.update({k: np.concatenate([s[k] for s in scores]) for k in metrics_kept})
      for k in keys:
        history[k].append(row[k])
      self.epoch = epoch
      if on_epoch:
        on_epoch(epoch, row)
    if not history['loss']:
      return {k: np.zeros((len(self.models), 0)) for k in history}
    return {k: np.stack(v, axis=1) for k, v in history.items()}
