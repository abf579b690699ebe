"""The reference rows are scikit-learn's own on the same folds, on the pixels as the models see them."""

import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from cmtl_jax import data
from cmtl_jax.ablation import references
from cmtl_jax.data import folds as folds_lib
from cmtl_jax.models.configs import BeitConfig


def test_logistic_regression_row_is_scikit_learns_on_the_same_folds(digits):
  outer = folds_lib.fold_indices(digits.labels, digits.pool, 3, 0)
  got = references.reference_scores(digits, outer, BeitConfig(image_size=6, num_channels=1))
  # The same folds cut independently, the pixels resized to 6 px as the models see them, sklearn at its defaults.
  pool = digits.pool
  splitter = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
  for k, (train_pos, val_pos) in enumerate(splitter.split(pool, digits.labels[pool])):
    features = np.asarray(data.preprocess(jnp.asarray(digits.images[pool]), 6, 1)).reshape(len(pool), -1)
    fitted = LogisticRegression(max_iter=2000).fit(features[train_pos], digits.labels[pool][train_pos])
    assert got['logistic_regression']['accuracy'][k] == fitted.score(features[val_pos], digits.labels[pool][val_pos])
    majority = np.bincount(digits.labels[pool][train_pos]).argmax()
    assert got['chance']['accuracy'][k] == np.mean(digits.labels[pool][val_pos] == majority)
  assert 0.8 < np.mean(got['logistic_regression']['accuracy']) < 1.0
