"""Shared by the entry points: bad input becomes one line on stderr and exit status 2, never a traceback."""

import contextlib
import sys

from cmtl_jax.errors import ConfigError


@contextlib.contextmanager
def one_line_errors():
  try:
    yield
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
