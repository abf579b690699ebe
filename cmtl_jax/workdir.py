"""Workdir plumbing: atomic writes, Ctrl-C held over a save, JSON, a run's fingerprint (a rerun of another run is
refused), and the one orbax checkpoint manager every resumable run uses. No plots, no reports."""

import contextlib
import json
import os
import signal
import threading
from typing import Sequence

import numpy as np

from cmtl_jax.errors import ConfigError


@contextlib.contextmanager
def atomic(path: str):
  """Yields a temporary path beside `path` to write to; renames it onto `path` only when the block finishes, so a
  killed process leaves the old file or the new one, never half of one."""
  root, ext = os.path.splitext(path)
  tmp = f'{root}.tmp{ext}'  # One fixed name: a rerun after a kill overwrites a stale one.
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def interrupts_held():
  """Holds Ctrl-C (SIGINT) until the block ends, then raises `KeyboardInterrupt`: a checkpoint save inside is never
  cut in half (orbax's writer threads would otherwise fail at exit with tracebacks). Only in the main thread and
  while SIGINT has Python's default handler; elsewhere the block runs as it is."""
  if (threading.current_thread() is not threading.main_thread() or
      signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
    yield
    return
  caught = []
  signal.signal(signal.SIGINT, lambda *_: caught.append(True))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)
  if caught:
    raise KeyboardInterrupt


def _number(value):
  """numpy scalars and arrays as JSON numbers and lists; tuples as lists."""
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, (tuple, set, frozenset)):
    return list(value)
  raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def jsonable(value):
  """`value` as JSON would give it back (tuples become lists, numpy numbers plain numbers)."""
  return json.loads(json.dumps(value, default=_number))


def write_json(path: str, value, indent: int = 1) -> None:
  """`value` as JSON at `path`, atomically; numpy numbers and arrays as plain numbers and lists."""
  with atomic(path) as tmp, open(tmp, 'w') as f:
    json.dump(value, f, indent=indent, default=_number)


def _differences(a, b, prefix=''):
  if isinstance(a, dict) and isinstance(b, dict):
    for key in set(a) | set(b):
      yield from _differences(a.get(key), b.get(key), f'{prefix}{key}.')
  elif a != b:
    yield prefix.rstrip('.')


def check_fingerprint(workdir: str, file_name: str, fingerprint: dict, what: str) -> None:
  """Refuses a `workdir` whose `file_name` holds another fingerprint than `fingerprint` (the resolved run it
  holds); nothing when it holds none yet. A run records its own with `write_fingerprint` once its checks have
  passed, so a refused config leaves nothing that would refuse its correction.

  Raises:
    ConfigError: the file is unreadable, or holds another run (the message names the keys that differ).
  """
  path = os.path.join(workdir, file_name)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      existing = json.load(f)
  except (OSError, ValueError):
    raise ConfigError(f'{path} is unreadable: this workdir is not {what} of cmtl_jax; use a new '
                      f'--workdir.') from None
  if existing != jsonable(fingerprint):
    differ = sorted(_differences(existing, jsonable(fingerprint)))
    raise ConfigError(f'workdir {workdir!r} holds {what} of another run (different settings: '
                      f'{", ".join(differ[:8])}{", ..." if len(differ) > 8 else ""}): rerun with the same config to '
                      f'resume, or use a new --workdir.')


def write_fingerprint(workdir: str, file_name: str, fingerprint: dict) -> None:
  """Writes `fingerprint` to `workdir/file_name` (atomically) for `check_fingerprint` to compare with."""
  with atomic(os.path.join(workdir, file_name)) as tmp, open(tmp, 'w') as f:
    json.dump(jsonable(fingerprint), f, indent=2, sort_keys=True)


def checkpoint_manager(directory: str, item_names: Sequence[str], max_to_keep=None, create: bool = True):
  """The orbax `CheckpointManager` of a resumable run's `directory` with `item_names`; a save cut short by a kill
  leaves only an orbax temporary directory, removed here (that step counts as not done)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(directory), item_names=tuple(item_names), options=options)
