"""cmtl_jax: cross-modality transfer learning (text-pretrained BERT inside a BEiT image classifier) in JAX/Flax.

Public API:
  base_config()              every config key with its default.
  load_dataset(config)       a dataset split into train / val / held-out test, as arrays.
  build_model(config, n, rng)  the hybrid (or BEiT-only) classifier with its pretrained weights placed.
  train_and_evaluate(config, workdir)  train one model, score it, save metrics and a checkpoint.
  evaluate(model, params, dataset, split)  accuracy / macro F1 / precision / recall (+ per class).
  Classifier.load(workdir).predict(images)  a saved classifier, predicting class indices.
"""

from cmtl_jax.classifier import Classifier
from cmtl_jax.config import base_config
from cmtl_jax.errors import ConfigError, MissingPathError
from cmtl_jax.data import load_dataset
from cmtl_jax.experiment import train_and_evaluate
from cmtl_jax.models.build import build_model
from cmtl_jax.train import evaluate

__all__ = ['Classifier', 'ConfigError', 'MissingPathError', 'base_config', 'build_model', 'evaluate',
           'load_dataset', 'train_and_evaluate']
