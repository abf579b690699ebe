"""Shared by the entry points: quiet library logs, bad input as one line on stderr with exit status 2, a persistent
XLA compilation cache, and (for the grid search) the flags that join several processes into one run under
`jax.distributed`."""

import ast
import contextlib
import os
import sys

from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from cmtl_jax.errors import ConfigError


_COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache_dir', '', 'A persistent XLA compilation cache: programs compiled once (by this run or an '
    'earlier one) are read back instead of compiled again, e.g. the same model at every learning rate of a grid, '
    'or a rerun. Empty = JAX\'s own setting (the JAX_COMPILATION_CACHE_DIR environment variable, else none).')


@contextlib.contextmanager
def one_line_errors():
  """Runs the body (an entry point's main); a `ConfigError` becomes `error: <message>` on stderr and exit status 2,
  with no traceback. Applies --compilation_cache_dir first."""
  if not flags.FLAGS['verbosity'].present:  # TFDS logs every dataset it opens at INFO; --verbosity=0 shows them.
    logging.set_verbosity(logging.WARNING)
  if _COMPILATION_CACHE.value:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(_COMPILATION_CACHE.value))
  try:
    yield
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def refuse_unread(config, purpose: str, argv=None) -> None:
  """Raises ConfigError when a `--config.<key>=...` override on the command line names a key that `purpose`
  (`resolve.PURPOSES`) does not read, e.g. `--config.optim.num_epochs` for pretraining (`pretrain.num_epochs`)."""
  from cmtl_jax import resolve  # pylint: disable=g-import-not-at-top
  keys = overridden_keys(argv or sys.argv) + ['search.grid.' + key for key in _PENDING_GRID]
  message = resolve.unread_overrides(resolve.resolve(config, purpose), keys)
  if message:
    raise ConfigError(message if message.endswith('?') else message + '.')


def overridden_keys(argv, flags_named=('config',)) -> list:
  """The dotted config keys that `--config.<key>=...` overrides in `argv` set (`flags_named`: the config flags)."""
  keys = []
  for arg in argv[1:]:
    flag, _, key = arg.lstrip('-').split('=', 1)[0].partition('.')
    if key and flag in flags_named:
      keys.append(key)
  return keys


def _unknown_override(argv) -> str:
  """The first `--config.<key>=...` / `--grid_config.<key>=...` override in `argv` naming no config key, as an error
  message with the nearest valid keys; '' when all exist."""
  from cmtl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  for key in overridden_keys(argv, ('config', 'grid_config')):
    if not config_lib.key_exists(key):
      return config_lib.unknown_key_message(key)
  return ''


GRID_PREFIX = '--config.search.grid.'
_PENDING_GRID = {}  # Grid overrides taken out of sys.argv before ml_collections reads it (`define_config`).


def split_grid_overrides(argv):
  """`(the other args, {dotted key: values})`: `--config.search.grid.<key>=<values>` overrides taken out of `argv`,
  their values read as Python literals ('(0.0, 0.8)' -> a tuple; text that is no literal stays a string)."""
  rest, grid = [], {}
  for arg in argv:
    if arg.startswith(GRID_PREFIX) and '=' in arg:
      key, _, text = arg[len(GRID_PREFIX):].partition('=')
      try:
        grid[key] = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        grid[key] = text
    else:
      rest.append(arg)
  return rest, grid


def set_grid(config, grid: dict) -> None:
  """Puts `{dotted key: values}` into `config.search.grid`, making the groups a key needs: the grid holds any keys,
  which a config file's locked grid cannot take as ordinary overrides."""
  with config.unlocked():
    for key, values in grid.items():
      *groups, name = key.split('.')
      node = config.search.grid
      for group in groups:
        if group not in node:
          node[group] = ml_collections.ConfigDict()
        node = node[group]
      node[name] = values


def parse_flags(argv):
  """`app.run(main, flags_parser=parse_flags)`: a bad flag (unknown config key, a value of the wrong type) is one
  `error: ...` line and exit status 2, like every other bad input, instead of absl's usage dump or a traceback
  (ml_collections raises AttributeError for an override of a missing key when it applies the overrides). Grid
  overrides (`--config.search.grid.augment.mixup='(0.0, 0.8)'`) may name any config key (`set_grid`)."""
  message = _unknown_override(argv)
  if not message:
    try:
      rest, grid = split_grid_overrides(argv)
      remaining = flags.FLAGS(rest)
      _touch_config_flags(('config', 'grid_config'))
      grid = {**_PENDING_GRID, **grid}
      if grid:
        set_grid(flags.FLAGS['config'].value, grid)
      return remaining
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
      message = _unknown_override(argv) or _describe(e)
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _touch_config_flags(names) -> None:
  """Raises the OSError of a config file that could not be read: ml_collections defers it (the flag's value raises
  on first use), which would otherwise surface as a traceback inside main."""
  for name in names:
    if name in flags.FLAGS:
      getattr(flags.FLAGS[name].value, 'keys')


def define_config(default: str):
  """The `--config` flag (a config file, overridable as `--config.key=value`, no new keys). ml_collections reads
  the file and applies overrides as soon as the flag is defined, so a bad override surfaces here, at import."""
  sys.argv[:], grid = split_grid_overrides(sys.argv)  # Applied by parse_flags, once the file is read.
  _PENDING_GRID.update(grid)
  try:
    return config_flags.DEFINE_config_file('config', default, 'Config file.', lock_config=True)
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    message = _unknown_override(sys.argv) or _describe(e)
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def _describe(e: Exception) -> str:
  """One line for an error ml_collections or absl raised while reading --config: a missing file, or a bad override
  (a KeyError's message is its first argument, not its repr)."""
  if isinstance(e, OSError):
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    return 'cannot read the config file: ' + ' '.join(str(cause).split())
  text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
  return ' '.join(text.replace('"', "'").split())


def define_distributed_flags():
  """Defines --coordinator_address, --num_processes and --process_id (only for the entry points that can run over
  several processes: the grid search) and returns `initialize()`, which joins this process to the others
  (`jax.distributed.initialize`) when --coordinator_address is given; it must run before anything touches a
  device. On Cloud TPU / SLURM, `jax.distributed.initialize()` also works without these flags, but a local
  multi-process CPU run needs them."""
  coordinator = flags.DEFINE_string('coordinator_address', '', 'host:port of process 0, to run one grid over several '
                                    'processes (hosts) with jax.distributed; empty = a single process.')
  num_processes = flags.DEFINE_integer('num_processes', 1, 'Processes taking part (with --coordinator_address).')
  process_id = flags.DEFINE_integer('process_id', 0, 'This process\'s index, 0 .. num_processes - 1.')

  def initialize() -> None:
    if coordinator.value:
      import jax  # pylint: disable=g-import-not-at-top
      jax.distributed.initialize(coordinator.value, num_processes.value, process_id.value)

  return initialize
