"""The engine's progress on disk: one JSON file per finished unit of work (a group of models trained to an epoch),
beside the fingerprint of the run that made them, so that a rerun of the same work resumes and other work is
refused."""

import json
import os
from typing import Optional

from cmtl_jax import workdir as workdir_lib
from cmtl_jax.errors import ConfigError

FINGERPRINT = 'run.json'
_OLD_FINGERPRINT = 'grid_config.json'  # Written by the flat-config versions, whose progress cannot be read.


class Store:
  """Units of work under `<workdir>/progress` (`<step>.json`, every unit kept; written atomically by process 0) and
  `<workdir>/states` (orbax: the train states of models that go on training, only while a later unit may need
  them).

  Raises:
    ConfigError: a workdir of another run (`workdir.check_fingerprint`), of an older cmtl_jax, or of a trained
      classifier.
  """

  def __init__(self, workdir: str, fingerprint: dict, what: str = 'a search'):
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(os.path.join(workdir, 'checkpoint')) or os.path.exists(os.path.join(workdir, 'metrics.json')):
      raise ConfigError(f'workdir {workdir!r} holds a trained classifier (experiments.train\'s): give {what} '
                        f'another --workdir.')
    if os.path.exists(os.path.join(workdir, _OLD_FINGERPRINT)):
      raise ConfigError(f'workdir {workdir!r} holds {what} of an older cmtl_jax (flat config keys), which this one '
                        f'cannot resume: use a new --workdir.')
    workdir_lib.check_fingerprint(workdir, FINGERPRINT, fingerprint, what)
    workdir_lib.write_fingerprint(workdir, FINGERPRINT, fingerprint)
    self.progress = os.path.join(workdir, 'progress')
    os.makedirs(self.progress, exist_ok=True)
    self.states = workdir_lib.checkpoint_manager(os.path.join(workdir, 'states'), ('arrays',))

  def unit(self, step: int) -> Optional[dict]:
    """The results of unit `step`, or None when it has not finished.

    Raises:
      ConfigError: the file is unreadable (a damaged workdir).
    """
    path = os.path.join(self.progress, f'{step}.json')
    if not os.path.exists(path):
      return None
    try:
      with open(path) as f:
        return json.load(f)
    except (OSError, ValueError) as e:
      raise ConfigError(f'cannot read {path} ({e.__class__.__name__}): the workdir is damaged; use a new --workdir '
                        f'or delete that file to train its unit again.') from None

  def arrays(self, step: int, like):
    """The train states saved with unit `step`, read into the structure of `like` (numpy arrays of the right
    shapes and dtypes)."""
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    return self.states.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(like))).arrays

  def save(self, step: int, results: dict, arrays=None) -> None:
    """Saves unit `step`: first its train states (when given; every process takes part), then its results, whose
    presence marks it done (process 0 writes them)."""
    import jax  # pylint: disable=g-import-not-at-top
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    with workdir_lib.interrupts_held():
      if arrays:
        self.states.save(step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays)), force=True)
        self.states.wait_until_finished()
      if jax.process_index() == 0:
        workdir_lib.write_json(os.path.join(self.progress, f'{step}.json'), results)

  def keep_states(self, steps) -> None:
    """Deletes the saved train states of every unit but `steps` (those a later unit may still resume from)."""
    for step in self.states.all_steps():
      if step not in steps:
        self.states.delete(step)
