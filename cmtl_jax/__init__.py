"""cmtl_jax: cross-modality transfer learning (text-pretrained BERT inside a BEiT image classifier) in JAX/Flax.

Public API:
  base_config()                   every config key with its default, in groups.
  resolve.resolve(config, purpose)  the frozen description of a run (model configs read from checkpoints, decode
                                  size), which everything downstream reads.
  load_dataset(run.data)          a dataset split into train / val / held-out test, as arrays.
  ClassifierTask(run.model, n)    the hybrid (or BEiT-only) classifier with its pretrained weights, as the engine
                                  trains it.
  train_and_evaluate(config, workdir)  train one model, score it, save metrics and a checkpoint.
  Classifier.load(workdir)        a saved classifier: .predict(images), .evaluate(dataset, split).
"""

from cmtl_jax.classifier import Classifier
from cmtl_jax.config import base_config
from cmtl_jax.data import load_dataset
from cmtl_jax.errors import ConfigError, MissingPathError
from cmtl_jax.experiment import train_and_evaluate
from cmtl_jax import resolve
from cmtl_jax.task import ClassifierTask

__all__ = ['Classifier', 'ClassifierTask', 'ConfigError', 'MissingPathError', 'base_config', 'load_dataset',
           'resolve', 'train_and_evaluate']
