"""Hyperparameter search shaped like scikit-learn's, on one engine: `engine` (fits -> stacks of models in shared
compiled programs, resumable), `stacked` (a stack's vectorised, sharded mechanics), `store` (progress on disk),
`grid` (`BaseSearchCV`, `GridSearchCV`), `halving` (`HalvingGridSearchCV`), `results` (`cv_results_`'s shape)."""

from cmtl_jax.search.engine import Engine, Fit
from cmtl_jax.search.grid import BaseSearchCV, GridSearchCV
from cmtl_jax.search.halving import HalvingGridSearchCV

__all__ = ['BaseSearchCV', 'Engine', 'Fit', 'GridSearchCV', 'HalvingGridSearchCV']
