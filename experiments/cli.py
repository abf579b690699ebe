"""Shared by the entry points: quiet library logs, and bad input as one line on stderr with exit status 2."""

import contextlib
import sys

from absl import flags
from absl import logging

from cmtl_jax.errors import ConfigError


@contextlib.contextmanager
def one_line_errors():
  """Runs the body; a `ConfigError` becomes `error: <message>` on stderr and exit status 2, with no traceback."""
  if not flags.FLAGS['verbosity'].present:  # TFDS logs every dataset it opens at INFO; --verbosity=0 shows them.
    logging.set_verbosity(logging.WARNING)
  try:
    yield
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
