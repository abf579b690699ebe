"""The one exception type users see for bad input.

Anything a user can get wrong (a config value, a path, a dataset name) raises `ConfigError`: a `ValueError`
for library callers, and one line plus exit status 2 at the command line (see `experiments/cli.py`).
"""


class ConfigError(ValueError):
  """Bad input: the message says what is wrong and what to do instead."""


class MissingPathError(ConfigError, FileNotFoundError):
  """A path given by the user does not exist."""


class AllCellsDivergedError(ConfigError):
  """Every cell of a search diverged: no best cell, no refit (the search's `cv_results_` are still set)."""
