"""`pretrain(config, workdir)`: BEiT masked image modelling on a dataset's training images (labels unused), resumable
with orbax, exported as a Hugging Face BEiT checkpoint.

Files under `workdir`: `tokenizer.npz` (the k-means visual tokenizer), `checkpoint/` (orbax: the state and history
after the latest finished epoch), `run.json` (the resolved run: a workdir of another run is refused), `beit/`
(config.json + model.safetensors with `BeitModel`'s names: `--config.model.beit_path=<workdir>/beit`) and
`pretrain.json` (per-epoch loss and masked-token accuracy); `experiment.pretrain` adds `loss.png`.
"""

import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax import data
from cmtl_jax import optim
from cmtl_jax import resolve
from cmtl_jax import workdir as workdir_lib
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import checkpoints
from cmtl_jax.pretrain import masking
from cmtl_jax.pretrain import mim
from cmtl_jax.pretrain import tokenizer as tokenizer_lib
from cmtl_jax.train import core

TOKENIZER_FILE = 'tokenizer.npz'
CHECKPOINT_DIR = 'checkpoint'
BEIT_DIR = 'beit'
FINGERPRINT = 'run.json'


def _fit_tokenizer(run: resolve.Run, images: np.ndarray) -> tokenizer_lib.PatchTokenizer:
  """A tokenizer fitted on a sample of the images' patches, as the model sees them."""
  beit, p = run.model.beit, run.pretrain
  patches_per_image = (beit.image_size // beit.patch_size) ** 2
  rng = np.random.default_rng(run.seed)
  take = min(len(images), -(-p.tokenizer_patches // patches_per_image))
  sample = images[np.sort(rng.choice(len(images), take, replace=False))]
  pixels = np.asarray(jax.jit(data.preprocess, static_argnums=(1, 2))(sample, beit.image_size, beit.num_channels))
  return tokenizer_lib.fit(pixels, beit.patch_size, p.vocab_size, p.tokenizer_patches, run.seed)


def _epoch_batches(run: resolve.Run, pool: np.ndarray, epoch: int, steps: int):
  """(indices int32 `[steps, B]`, masks bool `[steps, B, patches]`) of one epoch, drawn from `(seed, epoch)` only, so
  a resumed run sees the batches an uninterrupted one sees."""
  p = run.pretrain
  order = np.random.default_rng([run.seed, epoch, 0]).permutation(pool)[:steps * p.batch_size]
  masks = masking.block_masks(np.random.default_rng([run.seed, epoch, 1]), steps * p.batch_size,
                              run.model.beit.window, p.mask_ratio, p.min_block_patches)
  return order.reshape(steps, p.batch_size).astype(np.int32), masks.reshape(steps, p.batch_size, -1)


def _manager(workdir: str):
  return workdir_lib.checkpoint_manager(os.path.join(workdir, CHECKPOINT_DIR), ('state', 'history'), max_to_keep=1)


def pretrain(config, workdir: str, log: Optional[Callable[[str], None]] = print) -> dict:
  """BEiT masked image modelling (Bao et al. 2021) on the data's training pool (every image outside the held-out
  test split; labels unused): blockwise masks of `pretrain.mask_ratio` of the patches, the masked patches' visual
  tokens (a k-means tokenizer, `tokenizer.py`) predicted by a linear head with cross-entropy, AdamW
  (`pretrain.learning_rate`, `pretrain.weight_decay`) with `pretrain.warmup_fraction` warmup, `pretrain.decay` and
  `pretrain.grad_clip`, on the training core (`train.core`); the BEiT is `model.beit` (fresh) with its own
  LayerScale and drop path. A rerun with the same workdir resumes after the last finished epoch and ends with the
  parameters an uninterrupted run ends with.

  Returns:
    `{'history': [{'epoch', 'loss', 'masked_accuracy', 'seconds'}, ...], 'beit_path': <workdir>/beit,
    'vocab_size', 'num_images', 'steps_per_epoch', 'mask_patches'}` (`seconds`: wall time from the start of the
    process's loop to the epoch's end, so it restarts on a resume); the files are listed in the module docstring.

  Raises:
    ConfigError: bad config keys, a `model.beit_path` (pretraining starts a fresh BEiT), a batch larger than the
      pool, a workdir of another run, a tokenizer sample with fewer distinct patches than `pretrain.vocab_size`, a
      loss or update that became NaN/inf (nothing is exported).
  """
  run = resolve.resolve(config, 'pretrain')
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  # Compared now, written once every check has passed: a refused config leaves nothing behind.
  workdir_lib.check_fingerprint(workdir, FINGERPRINT, run.to_dict(), 'a pretraining run')
  dataset = data.load_dataset(run.data, validation=False)
  beit, p = run.model.beit, run.pretrain
  data.check_channels(dataset, beit.num_channels, run.data.gray_to_rgb)
  pool = dataset.train.astype(np.int32)  # validation=False: the whole training pool.
  if p.batch_size > len(pool):
    raise ConfigError(f'pretrain.batch_size {p.batch_size} is larger than the {len(pool)} pretraining images: lower '
                      f'it.')
  steps = len(pool) // p.batch_size
  tokenizer_path = os.path.join(workdir, TOKENIZER_FILE)
  fitted = not os.path.exists(tokenizer_path)
  tokenizer = (_fit_tokenizer(run, dataset.images[pool]) if fitted else
               tokenizer_lib.PatchTokenizer.load(tokenizer_path))
  workdir_lib.write_fingerprint(workdir, FINGERPRINT, run.to_dict())
  if fitted:
    with workdir_lib.atomic(tokenizer_path) as tmp:
      tokenizer.save(tmp)

  model = mim.MaskedImageModel(beit, vocab_size=tokenizer.vocab_size, dtype=jnp.dtype(run.model.dtype))
  tx = optim.make_optimizer('adam', p.learning_rate, total_steps=steps * p.num_epochs,
                            warmup_fraction=p.warmup_fraction, decay=p.decay, weight_decay=p.weight_decay,
                            grad_clip=p.grad_clip)
  init_key, train_key = jax.random.split(jax.random.key(run.seed))
  pixels = jnp.zeros((1, beit.image_size, beit.image_size, beit.num_channels))
  masks = jnp.zeros((1, beit.window[0] * beit.window[1]), bool)
  state = jax.jit(lambda key: core.init_state(model.init(key, pixels, masks)['params'], tx))(init_key)

  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  manager = _manager(workdir)
  history, start_epoch = [], 0
  if manager.latest_step() is not None:
    start_epoch = manager.latest_step()
    restored = manager.restore(start_epoch, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(jax.tree.map(np.asarray, state)), history=ocp.args.JsonRestore()))
    state, history = jax.tree.map(jnp.asarray, restored.state), list(restored.history)
    if log:
      log(f'already finished ({p.num_epochs} epochs): exporting it again' if start_epoch >= p.num_epochs else
          f'resuming after epoch {start_epoch} of {p.num_epochs}')

  epoch_fn = jax.jit(mim.make_epoch(model, tx, steps=steps, scale=p.scale, ratio=p.ratio, hflip=p.hflip),
                     donate_argnums=0)
  shared = (jax.device_put(dataset.images), jnp.asarray(tokenizer.centroids))
  raw_key = jax.random.key_data(train_key)
  start = time.perf_counter()
  import tqdm  # pylint: disable=g-import-not-at-top
  bar = tqdm.tqdm(total=p.num_epochs - start_epoch, unit='epoch', disable=log is None or start_epoch >= p.num_epochs,
                  dynamic_ncols=True)
  for epoch in range(start_epoch + 1, p.num_epochs + 1):
    state, metrics = epoch_fn(state, raw_key, np.int32(epoch), shared, _epoch_batches(run, pool, epoch, steps))
    if not bool(state['finite']):
      manager.close()
      raise ConfigError(f'pretraining diverged in epoch {epoch} (its loss or update became NaN/inf; nothing was '
                        f'exported, epochs up to {epoch - 1} are saved): lower --config.pretrain.learning_rate '
                        f'(now {p.learning_rate:g}) and use a new --workdir.')
    record = {'epoch': epoch, 'loss': float(metrics['loss']), 'masked_accuracy': float(metrics['accuracy']),
              'seconds': time.perf_counter() - start}
    history.append(record)
    bar.update(1)
    with workdir_lib.interrupts_held():
      manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                  history=ocp.args.JsonSave(history)))
      manager.wait_until_finished()
    if log:
      log(f'epoch {epoch}/{p.num_epochs}  masked-token loss {record["loss"]:.4f}  '
          f'accuracy {record["masked_accuracy"]:.4f}')
  bar.close()
  manager.close()

  beit_dir = os.path.join(workdir, BEIT_DIR)
  checkpoints.save_beit(beit_dir, beit, jax.device_get(state['params']['beit']), vocab_size=tokenizer.vocab_size)
  result = {'history': history, 'beit_path': beit_dir, 'vocab_size': tokenizer.vocab_size, 'num_images': len(pool),
            'steps_per_epoch': steps, 'mask_patches': masking.num_masked(beit.window, p.mask_ratio)}
  workdir_lib.write_json(os.path.join(workdir, 'pretrain.json'), result, indent=2)
  return result


def finished_epochs(workdir: str) -> int:
  """Epochs of a pretraining workdir saved so far (0 when none has finished)."""
  if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    return 0
  return _manager(workdir).latest_step() or 0


def load_state(workdir: str):
  """The raw orbax state `{'params', 'opt', 'finite'}` of a pretraining workdir's latest epoch (numpy arrays), for
  inspection and tests; None when no epoch has finished."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  manager = _manager(workdir)
  step = manager.latest_step()
  if step is None:
    return None
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
