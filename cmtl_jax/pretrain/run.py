"""`pretrain(config, workdir)`: BEiT masked image modelling on a dataset's training images (labels unused), resumable
with orbax, exported as a Hugging Face BEiT checkpoint.

Files under `workdir`: `tokenizer.npz` (the k-means visual tokenizer), `checkpoint/` (orbax: the state and history
after the latest finished epoch), `pretrain_config.json` (the run's config: a workdir of another run is refused),
`beit/` (config.json + model.safetensors with `BeitModel`'s names: `--config.beit_path=<workdir>/beit`),
`pretrain.json` (per-epoch loss and masked-token accuracy) and `loss.png`.
"""

import json
import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from cmtl_jax import config as config_lib
from cmtl_jax import data
from cmtl_jax import optim
from cmtl_jax import report
from cmtl_jax.errors import ConfigError
from cmtl_jax.models import checkpoints
from cmtl_jax.models.configs import BeitConfig
from cmtl_jax.pretrain import masking
from cmtl_jax.pretrain import mim
from cmtl_jax.pretrain import tokenizer as tokenizer_lib

TOKENIZER_FILE = 'tokenizer.npz'
CHECKPOINT_DIR = 'checkpoint'
BEIT_DIR = 'beit'
CONFIG_FILE = 'pretrain_config.json'

# The top-level config keys pretraining reads: those that choose the images, the model (`beit`), the optimisation
# keys it shares with fine-tuning, and the `pretrain` group. Every other key (learning_rate, num_epochs, the grid,
# the arms, ...) is fine-tuning's: a rerun that changes one still resumes.
READS = ('dataset', 'data_dir', 'manual_dir', 'image_key', 'label_key', 'test_fraction', 'val_fraction', 'split_seed',
         'train_per_class', 'gray_to_rgb', 'data_memory_fraction', 'image_size', 'channels', 'resize',
         'on_bad_image', 'prepared_dir', 'cv', 'beit', 'beit_path', 'batch_size', 'seed', 'warmup_fraction', 'decay',
         'grad_clip', 'dtype', 'pretrain')


def check_overrides(keys) -> None:
  """Refuses command-line overrides (dotted config keys) that pretraining would ignore, such as `num_epochs` for
  `pretrain.num_epochs`.

  Raises:
    ConfigError: naming the first such key, and its `pretrain.*` namesake when there is one.
  """
  pretrain_keys = config_lib.base_config().pretrain
  for key in keys:
    top = key.split('.')[0]
    if top not in READS:
      namesake = f': did you mean --config.pretrain.{top}?' if top in pretrain_keys else ''
      raise ConfigError(f'pretraining does not read --config.{key}, a fine-tuning key{namesake} (it reads the '
                        f'dataset keys, beit.*, batch_size, seed, warmup_fraction, decay, grad_clip, dtype and '
                        f'pretrain.*).')


def beit_config(config) -> BeitConfig:
  """The BEiT a config pretrains: `config.beit` with the mask token on."""
  return BeitConfig.from_dict({**config.beit.to_dict(), 'use_mask_token': True})


def _fit_tokenizer(config, images: np.ndarray, image_size: int) -> tokenizer_lib.PatchTokenizer:
  """A tokenizer fitted on a sample of the images' patches, as the model sees them."""
  num_channels = config.beit.num_channels
  patches_per_image = (image_size // config.beit.patch_size) ** 2
  rng = np.random.default_rng(config.seed)
  take = min(len(images), -(-config.pretrain.tokenizer_patches // patches_per_image))
  sample = images[np.sort(rng.choice(len(images), take, replace=False))]
  pixels = np.asarray(jax.jit(data.preprocess, static_argnums=(1, 2))(sample, image_size, num_channels))
  return tokenizer_lib.fit(pixels, config.beit.patch_size, config.pretrain.vocab_size,
                           config.pretrain.tokenizer_patches, config.seed)


def _epoch_batches(config, pool: np.ndarray, epoch: int, steps: int, grid: tuple):
  """(indices int32 `[steps, B]`, masks bool `[steps, B, patches]`) of one epoch, drawn from `(seed, epoch)` only, so
  a resumed run sees the batches an uninterrupted one sees."""
  batch = config.batch_size
  order = np.random.default_rng([config.seed, epoch, 0]).permutation(pool)[:steps * batch]
  masks = masking.block_masks(np.random.default_rng([config.seed, epoch, 1]), steps * batch, grid,
                              config.pretrain.mask_ratio, config.pretrain.min_block_patches)
  return order.reshape(steps, batch).astype(np.int32), masks.reshape(steps, batch, -1)


def pretrain(config, workdir: str, log: Optional[Callable[[str], None]] = print) -> dict:
  """BEiT masked image modelling (Bao et al. 2021) on `config.dataset`'s training pool (every image outside the
  held-out test split; labels unused): blockwise masks of `pretrain.mask_ratio` of the patches, the masked patches'
  visual tokens (a k-means tokenizer, `tokenizer.py`) predicted by a linear head with cross-entropy, AdamW
  (`pretrain.learning_rate`, `pretrain.weight_decay`) with `warmup_fraction` warmup and `decay`, `grad_clip`, the
  BEiT's own LayerScale and drop path (`beit.*`). A rerun with the same workdir resumes after the last finished epoch
  and ends with the parameters an uninterrupted run ends with.

  Returns:
    `{'history': [{'epoch', 'loss', 'masked_accuracy', 'seconds'}, ...], 'beit_path': <workdir>/beit,
    'vocab_size', 'num_images', 'steps_per_epoch', 'mask_patches'}` (`seconds`: wall time from the start of the
    process's loop to the epoch's end, so it restarts on a resume); the files are listed in the module docstring.

  Raises:
    ConfigError: bad config keys, a `beit_path` (pretraining starts from `beit.*`), a batch larger than the pool, a
      workdir of another run, a tokenizer sample with fewer distinct patches than `pretrain.vocab_size`.
  """
  config_lib.validate(config)
  if config.beit_path:
    raise ConfigError('pretraining starts a fresh BEiT from beit.*: drop --config.beit_path.')
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  keys = config.to_dict()
  fingerprint = {key: keys[key] for key in READS}
  # Compared now, written once every check has passed: a refused config leaves nothing behind.
  report.check_workdir_config(workdir, CONFIG_FILE, fingerprint, 'a pretraining run')
  dataset = data.load_dataset(config, validation=False)
  c = beit_config(config)
  data.check_channels(dataset, c.num_channels, config.gray_to_rgb)
  pool = dataset.train.astype(np.int32)  # validation=False: the whole training pool.
  if config.batch_size > len(pool):
    raise ConfigError(f'batch_size {config.batch_size} is larger than the {len(pool)} pretraining images: lower '
                      f'--config.batch_size.')
  steps = len(pool) // config.batch_size
  num_epochs = config.pretrain.num_epochs
  tokenizer_path = os.path.join(workdir, TOKENIZER_FILE)
  fitted = not os.path.exists(tokenizer_path)
  tokenizer = (_fit_tokenizer(config, dataset.images[pool], c.image_size) if fitted else
               tokenizer_lib.PatchTokenizer.load(tokenizer_path))
  report.write_workdir_config(workdir, CONFIG_FILE, fingerprint)
  if fitted:
    with report.atomic(tokenizer_path) as tmp:
      tokenizer.save(tmp)

  model = mim.MaskedImageModel(c, vocab_size=tokenizer.vocab_size, dtype=jnp.dtype(config.dtype))
  tx = optim.make_optimizer('adam', config.pretrain.learning_rate, total_steps=steps * num_epochs,
                            warmup_fraction=config.warmup_fraction, decay=config.decay,
                            weight_decay=config.pretrain.weight_decay, grad_clip=config.grad_clip)
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  grid = c.window
  pixels = jnp.zeros((1, c.image_size, c.image_size, c.num_channels))
  state = jax.jit(lambda key: mim.init_state(
      model.init(key, pixels, jnp.zeros((1, grid[0] * grid[1]), bool))['params'], tx))(init_key)

  manager = _manager(workdir, ocp.CheckpointManagerOptions(max_to_keep=1, create=True, cleanup_tmp_directories=True))
  history, start_epoch = [], 0
  if manager.latest_step() is not None:
    start_epoch = manager.latest_step()
    restored = manager.restore(start_epoch, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(jax.tree.map(np.asarray, state)), history=ocp.args.JsonRestore()))
    state, history = jax.tree.map(jnp.asarray, restored.state), list(restored.history)
    if log:
      log(f'already finished ({num_epochs} epochs): exporting it again' if start_epoch >= num_epochs else
          f'resuming after epoch {start_epoch} of {num_epochs}')

  step = jax.jit(mim.make_train_step(model, tx), donate_argnums=0)
  images = jax.device_put(dataset.images)
  centroids = jnp.asarray(tokenizer.centroids)
  start = time.perf_counter()
  import tqdm  # pylint: disable=g-import-not-at-top
  bar = tqdm.tqdm(total=steps * (num_epochs - start_epoch), unit='step',
                  disable=log is None or start_epoch >= num_epochs, dynamic_ncols=True)
  for epoch in range(start_epoch + 1, num_epochs + 1):
    indices, masks = _epoch_batches(config, pool, epoch, steps, grid)
    losses, accuracies = [], []
    for i in range(steps):
      state, (loss, accuracy) = step(state, images, indices[i], masks[i], centroids, train_key)
      losses.append(loss)
      accuracies.append(accuracy)
      bar.update(1)
    record = {'epoch': epoch, 'loss': float(np.mean(jax.device_get(losses))),
              'masked_accuracy': float(np.mean(jax.device_get(accuracies))),
              'seconds': time.perf_counter() - start}
    history.append(record)
    bar.set_postfix(loss=f'{record["loss"]:.4f}', acc=f'{record["masked_accuracy"]:.3f}')
    with report.interrupts_held():
      manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                  history=ocp.args.JsonSave(history)))
      manager.wait_until_finished()
    if log:
      log(f'epoch {epoch}/{num_epochs}  masked-token loss {record["loss"]:.4f}  '
          f'accuracy {record["masked_accuracy"]:.4f}')
  bar.close()
  manager.close()

  beit_dir = os.path.join(workdir, BEIT_DIR)
  checkpoints.save_beit(beit_dir, c, jax.device_get(state['params']['beit']), vocab_size=tokenizer.vocab_size)
  result = {'history': history, 'beit_path': beit_dir, 'vocab_size': tokenizer.vocab_size, 'num_images': len(pool),
            'steps_per_epoch': steps, 'mask_patches': masking.num_masked(grid, config.pretrain.mask_ratio)}
  with report.atomic(os.path.join(workdir, 'pretrain.json')) as tmp, open(tmp, 'w') as f:
    json.dump(result, f, indent=2)
  report.loss_curve_plot(os.path.join(workdir, 'loss.png'), history)
  return result


def _manager(workdir: str, options: Optional[ocp.CheckpointManagerOptions] = None) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
                               item_names=('state', 'history'), options=options)


def finished_epochs(workdir: str) -> int:
  """Epochs of a pretraining workdir saved so far (0 when none has finished)."""
  if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    return 0
  return _manager(workdir).latest_step() or 0


def load_state(workdir: str):
  """The raw orbax state `{'params', 'opt', 'step'}` of a pretraining workdir's latest epoch (numpy arrays), for
  inspection and tests; None when no epoch has finished."""
  manager = _manager(workdir)
  step = manager.latest_step()
  if step is None:
    return None
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
