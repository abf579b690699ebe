"""The engine's progress on disk: one orbax step per finished unit of work (a group of models trained to an epoch),
beside the fingerprint of the run that made them, so that a rerun of the same work resumes and other work is
refused."""

import os
from typing import Optional

from cmtl_jax import workdir as workdir_lib
from cmtl_jax.errors import ConfigError

FINGERPRINT = 'run.json'
_OLD_FINGERPRINT = 'grid_config.json'  # Written by the flat-config versions, whose progress cannot be read.


class Store:
  """Units of work under `<workdir>/progress` (JSON results, every unit kept) and `<workdir>/states` (the train
  states of models that go on training, only while a later unit may need them).

  Raises:
    ConfigError: a workdir of another run (`workdir.check_fingerprint`), or of an older cmtl_jax.
  """

  def __init__(self, workdir: str, fingerprint: dict, what: str = 'a search'):
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(os.path.join(workdir, _OLD_FINGERPRINT)):
      raise ConfigError(f'workdir {workdir!r} holds {what} of an older cmtl_jax (flat config keys), which this one '
                        f'cannot resume: use a new --workdir.')
    workdir_lib.check_fingerprint(workdir, FINGERPRINT, fingerprint, what)
    workdir_lib.write_fingerprint(workdir, FINGERPRINT, fingerprint)
    self.results = workdir_lib.checkpoint_manager(os.path.join(workdir, 'progress'), ('results',))
    self.states = workdir_lib.checkpoint_manager(os.path.join(workdir, 'states'), ('arrays',))

  def unit(self, step: int) -> Optional[dict]:
    """The results of unit `step`, or None when it has not finished."""
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    if step not in self.results.all_steps():
      return None
    return self.results.restore(step, args=ocp.args.Composite(results=ocp.args.JsonRestore())).results

  def arrays(self, step: int, like):
    """The train states saved with unit `step`, read into the structure of `like` (numpy arrays of the right
    shapes and dtypes)."""
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    return self.states.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(like))).arrays

  def save(self, step: int, results: dict, arrays=None) -> None:
    """Saves unit `step`: first its train states (when given), then its results, whose presence marks it done."""
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    with workdir_lib.interrupts_held():
      if arrays:
        self.states.save(step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays)), force=True)
        self.states.wait_until_finished()
      self.results.save(step, args=ocp.args.Composite(results=ocp.args.JsonSave(results)), force=True)
      self.results.wait_until_finished()

  def keep_states(self, steps) -> None:
    """Deletes the saved train states of every unit but `steps` (those a later unit may still resume from)."""
    for step in self.states.all_steps():
      if step not in steps:
        self.states.delete(step)
