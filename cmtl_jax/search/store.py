"""A search's progress on disk: orbax checkpoints of finished groups (or halving rounds) beside the fingerprint of
the run that made them, so that a rerun of the same search resumes and a different one is refused."""

import os
from typing import Optional

import orbax.checkpoint as ocp

from cmtl_jax import report


class Store:
  """A search's progress as orbax checkpoints under `<workdir>/<name>` (one step per finished group, or per
  finished round of a halving search), plus the fingerprint of the run that made them (`grid_config.json`); a
  workdir made by a different config is refused. Each step holds a JSON item `results` and, with `arrays`, a tree
  of numpy arrays `arrays`. A save cut short by a kill leaves only an orbax temporary directory, removed here; that
  step counts as not done.

  Args:
    max_to_keep: steps kept (None = all; 1 = only the latest, for progress that supersedes itself).
  """

  def __init__(self, workdir: str, fingerprint: dict, name: str = 'groups', *, arrays: bool = False,
               max_to_keep: Optional[int] = None):
    os.makedirs(workdir, exist_ok=True)
    self.directory = os.path.join(os.path.abspath(workdir), name)
    report.check_workdir_config(workdir, 'grid_config.json', fingerprint, 'a grid run')
    report.write_workdir_config(workdir, 'grid_config.json', fingerprint)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, item_names=('results', 'arrays') if arrays else ('results',),
                                         options=options)

  def _results(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(results=ocp.args.JsonRestore())).results

  def finished(self) -> dict:
    """{step: results} of every step kept."""
    return {step: self._results(step) for step in self.manager.all_steps()}

  def latest(self):
    """(step, results) of the latest step, or None."""
    step = self.manager.latest_step()
    return None if step is None else (step, self._results(step))

  def arrays(self, step: int, like):
    """The arrays of `step`, read into the structure of `like` (numpy arrays of the right shapes and dtypes)."""
    if not like:  # Nothing was saved (orbax refuses an empty tree).
      return like
    return self.manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(like))).arrays

  def save(self, index: int, result: dict, arrays=None) -> None:
    items = {'results': ocp.args.JsonSave(result)}
    if arrays:  # An empty tree is not saved (orbax refuses it); `arrays` reads it back as empty.
      items['arrays'] = ocp.args.StandardSave(arrays)
    with report.interrupts_held():
      self.manager.save(index, args=ocp.args.Composite(**items), force=True)
      self.manager.wait_until_finished()

