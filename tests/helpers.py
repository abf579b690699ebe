"""Helpers the tests share (fixtures are in conftest.py)."""

import json
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

TINY_BEIT = dict(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                 num_attention_heads=2, intermediate_size=64, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0, drop_path_rate=0.1, use_absolute_position_embeddings=True,
                 use_relative_position_bias=False, use_mean_pooling=True)


def count_compilations(monkeypatch):
  """(names, stop): a list that collects the name of every function jax compiles (or takes from the persistent
  compilation cache) from now on, and the function that stops collecting. Empties the engine's program cache, so
  that programs compiled by earlier tests count again."""
  from cmtl_jax.search import engine  # pylint: disable=g-import-not-at-top
  names = []
  listener = lambda event, seconds, **kw: names.append(kw.get('fun_name', '')) if event.endswith(
      'backend_compile_duration') else None
  jax.monitoring.register_event_duration_secs_listener(listener)
  monkeypatch.setattr(engine, '_PROGRAMS', {})  # Nothing compiled by earlier tests.
  return names, lambda: jax.monitoring.unregister_event_duration_listener(listener)


def write_tiny_grid_config(path, data_dir: str, grid: dict, bert_path: str = '', **overrides) -> str:
  """A config file for the CLIs: the tiny model (1-layer BEiT, first BERT layer), 1 epoch, 2 folds, `grid`
  ({dotted key: values}, e.g. {'optim.learning_rate': [1e-3]}) and `overrides` ({dotted key with '__' for '.':
  value}). Returns its path."""
  lines = [f'c.{k.replace("__", ".")} = {v!r}' for k, v in overrides.items()]
  nested = {}
  for key, values in grid.items():
    group, name = key.split('.')
    nested.setdefault(group, {})[name] = tuple(values)
  body = '\n'.join('  ' + line for line in lines)
  with open(path, 'w') as f:
    f.write(textwrap.dedent(f"""
        from cmtl_jax import config as config_lib

        def get_config():
          c = config_lib.base_config()
          c.data.data_dir = {str(data_dir)!r}
          c.model.bert_path = {bert_path!r}
          c.model.beit.update({TINY_BEIT!r})
          c.model.bert_layers, c.optim.num_epochs, c.search.cv = 1, 1, 2
          c.search.grid = {nested!r}
        """) + body + '\n  return c\n')
  return str(path)


def cv_scores(workdir) -> dict:
  """The cells and their scores and ranks from a grid CLI run's cv_results.json (not its times)."""
  with open(os.path.join(workdir, 'cv_results.json')) as f:
    results = json.load(f)
  return {k: v for k, v in results.items() if k.startswith(('params', 'split', 'mean_test', 'std_test', 'rank'))}


def max_abs_diff(a, b) -> float:
  """The largest |a - b| over all leaves of two trees of the same structure."""
  return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)))


def train_loss_and_grads(model, params, pixels):
  """The jitted train-mode loss (dropout and drop-path on, fixed keys) of `model` on `pixels`, and its gradients:
  what tests compare between two ways of computing the same hybrid."""
  def loss(p):
    logits = model.apply({'params': p}, pixels, train=True,
                         rngs={'dropout': jax.random.key(2), 'droppath': jax.random.key(3)})
    return jnp.mean(jax.nn.log_softmax(logits)[:, 0])
  return jax.jit(jax.value_and_grad(loss))(params)


def build(config, num_classes: int = 10, rng=None):
  """`models.build.build_model` of a config's resolved model: `(model, params, pretrained, sources)`."""
  from cmtl_jax import resolve  # pylint: disable=g-import-not-at-top
  from cmtl_jax.models import build as model_lib  # pylint: disable=g-import-not-at-top
  return model_lib.build_model(resolve.resolve(config).model, num_classes,
                               jax.random.key(0) if rng is None else rng)


def pattern(h, w, channels=None, seed=0):
  """Random uint8 pixels `[h, w]` (or `[h, w, channels]`)."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (h, w) + ((channels,) if channels else ()), dtype=np.uint8)


def save_image(path, image, **kw) -> str:
  """Saves a Pillow image at `path`, making its folders."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, **kw)
  return str(path)
