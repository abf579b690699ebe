"""Hyperparameter search shaped like scikit-learn's: `GridSearchCV` (`grid`), `HalvingGridSearchCV` (`halving`),
the stacked program that trains a group's models together (`stacked`), the resumable store (`store`) and the
`cv_results_` shape (`results`)."""

from cmtl_jax.search.grid import GridSearchCV
from cmtl_jax.search.halving import HalvingGridSearchCV

__all__ = ['GridSearchCV', 'HalvingGridSearchCV']
