"""A linear probe: how linearly separable a frozen BEiT's features make a dataset's classes (the evaluation BEiT's
paper reports beside fine-tuning, Bao et al. 2021, Table 4), scored with scikit-learn's LogisticRegression."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cmtl_jax import data
from cmtl_jax import resolve
from cmtl_jax.models import beit as beit_lib
from cmtl_jax.models import checkpoints
from cmtl_jax.models.configs import BeitConfig


@functools.partial(jax.jit, static_argnums=(0,))
def _pooled(config: BeitConfig, params, images):
  pixels = data.preprocess(images, config.image_size, config.num_channels)
  return beit_lib.BeitModel(config).apply({'params': params}, pixels)[1]


def features(config: BeitConfig, params: dict, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Frozen features: BEiT's pooled output (`BeitModel`'s second output), float32 `[N, hidden_size]`, for uint8
  images `[N, h, w, c]` (preprocessed as in training), in batches of `batch_size` (`data.map_batches`)."""
  pooled = lambda batch: _pooled(config, params, jnp.asarray(batch))
  return data.map_batches(pooled, images, batch_size).astype(np.float32)


def linear_probe(config: BeitConfig, params: dict, dataset: data.Dataset, *, C: float = 1.0,
                 batch_size: int = 256, seed: int = 0) -> dict:
  """Fits `LogisticRegression(C=C, max_iter=2000)` on the standardised frozen features of `dataset`'s training pool
  (train + val) and scores its held-out test split.

  Returns:
    `{'train_accuracy', 'test_accuracy', 'num_train', 'num_test'}`.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  train = dataset.pool
  x_train = features(config, params, dataset.images[train], batch_size)
  x_test = features(config, params, dataset.images[dataset.test], batch_size)
  probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
  probe.fit(x_train, dataset.labels[train])
  return {'train_accuracy': float(probe.score(x_train, dataset.labels[train])),
          'test_accuracy': float(probe.score(x_test, dataset.labels[dataset.test])),
          'num_train': int(len(train)), 'num_test': int(len(dataset.test))}


def _probe(run, dataset: data.Dataset, checkpoint, log) -> dict:
  """`linear_probe` of one BEiT checkpoint (random weights from `run.seed` when it holds none), with `beit`."""
  beit_config, params = checkpoint.config, checkpoint.params
  data.check_channels(dataset, beit_config.num_channels, run.data.gray_to_rgb)
  if params is None:
    pixels = jnp.zeros((1, beit_config.image_size, beit_config.image_size, beit_config.num_channels))
    params = beit_lib.BeitModel(beit_config).init(jax.random.key(run.seed), pixels)['params']
  scores = {**linear_probe(beit_config, params, dataset, seed=run.seed), 'beit': checkpoint.source}
  if log:
    log(f'linear probe ({checkpoint.source}): train accuracy {scores["train_accuracy"]:.4f}, test accuracy '
        f'{scores["test_accuracy"]:.4f} ({scores["num_train"]} / {scores["num_test"]} images)')
  return scores


def probe_config(config, log=print) -> dict:
  """The linear probe of the BEiT a config's model names, on its dataset: `model.beit_path` (e.g. a pretraining
  run's `<workdir>/beit`; with `model.beit_pretrained` False its architecture with random weights), or without one
  a fresh BEiT from `model.beit.*`; random weights are initialised from `seed`. Returns `linear_probe`'s dict with
  `beit` (where the weights came from).

  Raises:
    ConfigError: bad config keys, unreadable weights, channels that do not fit.
  """
  run = resolve.resolve(config, 'train')
  m = run.model
  checkpoint = checkpoints.load_beit(m.beit_path, m.beit, pretrained=m.beit_pretrained)
  return _probe(run, data.load_dataset(run.data), checkpoint, log)


def compare_with_fresh(config, beit_path: str, log=print) -> dict:
  """The linear probe of the BEiT at `beit_path` and of the same architecture with random weights (from the
  config's `seed`), on the data a pretraining run of `config` reads: what pretraining taught, as a margin of test
  accuracy.

  Returns:
    `{'pretrained': {...}, 'fresh': {...}, 'test_accuracy_margin': pretrained - fresh}` (each `probe_config`'s dict).

  Raises:
    ConfigError: as `probe_config`.
  """
  run = resolve.resolve(config, 'pretrain')
  dataset = data.load_dataset(run.data)
  beit_config = checkpoints.beit_config(beit_path)
  scores = {name: _probe(run, dataset, checkpoints.load_beit(beit_path, beit_config, pretrained=pretrained), log)
            for name, pretrained in (('pretrained', True), ('fresh', False))}
  return {**scores, 'test_accuracy_margin': scores['pretrained']['test_accuracy'] - scores['fresh']['test_accuracy']}
