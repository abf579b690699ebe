"""Shared by the entry points: quiet library logs, and bad input as one line on stderr with exit status 2."""

import contextlib
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

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


def parse_flags(argv):
  """`app.run(main, flags_parser=parse_flags)`: a bad flag (unknown config key, a value of the wrong type) is one
  `error: ...` line and exit status 2, like every other bad input, instead of absl's usage dump."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def define_config(default: str):
  """The `--config` flag (a config file, overridable as `--config.key=value`, no new keys). ml_collections reads
  the file and applies overrides as soon as the flag is defined, so a bad override surfaces here, at import."""
  try:
    return config_flags.DEFINE_config_file('config', default, 'Config file.', lock_config=True)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    print(f'error: a --config override names no config key or has a bad value ({e}): see cmtl_jax/config.py '
          f'for the keys.', file=sys.stderr)
    sys.exit(2)
