"""Load: the biggest stacked groups fit in memory, and a group that would not fit is split into chunks."""

import json
import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cmtl_jax.search import grid
from cmtl_jax.search import stacked

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_auto_models_per_program_counts_states_and_activations():
  gib = 2 ** 30
  # 8 GiB budget (half of 16), 100 MiB of state per model (x4), 1 GiB of activations per model.
  assert stacked.auto_models_per_program(100 * 2 ** 20, gib, vectorised=True, total_bytes=16 * gib) == 5
  assert stacked.auto_models_per_program(100 * 2 ** 20, gib, vectorised=False, total_bytes=16 * gib) == 17
  assert stacked.auto_models_per_program(10 * gib, gib, vectorised=True, total_bytes=16 * gib) == 1  # Never 0.


def test_a_group_that_does_not_fit_runs_in_chunks_with_the_same_results(tiny_config, monkeypatch):
  original = stacked.auto_models_per_program

  def two_models_fit(per_model, activation, vectorised, total_bytes=None, fraction=0.5, devices=1):
    # A device with room for two models' states besides one model's activations.
    return original(per_model, activation, vectorised, total_bytes=2 * (activation + 10 * per_model))

  whole = grid.GridSearchCV(tiny_config, {'learning_rate': [1e-3]}, cv=5, refit=None, models_per_program=5,
                            log=None).fit()
  monkeypatch.setattr(stacked, 'auto_models_per_program', two_models_fit)
  chunked = grid.GridSearchCV(tiny_config, {'learning_rate': [1e-3]}, cv=5, refit=None, log=None).fit()
  assert whole.models_per_program_ == {0: 5} and chunked.models_per_program_ == {0: 2}  # 3 programs: 2 + 2 + 1.
  for key, value in whole.cv_results_.items():
    if key.startswith(('split', 'mean_test', 'rank_test')):
      np.testing.assert_array_equal(chunked.cv_results_[key], value, err_msg=key)


@pytest.mark.slow
def test_the_largest_groups_fit_in_one_vectorised_program(data_dir):
  """Digits grid shape (5 folds x 8 LRs at batch 32) and the paper preset's largest group (batch 256, 8 LRs, 5
  folds), 40 models each vectorised in one program with a tiny model: peak memory measured in a fresh process."""
  script = textwrap.dedent(f'''
      import json, resource
      from cmtl_jax import config as config_lib
      from cmtl_jax.search import grid
      from experiments.configs import paper_grid
      from tests.conftest import TINY_BEIT
      c = config_lib.base_config()
      c.data_dir, c.bert_layers, c.num_epochs, c.vmap_width = {data_dir!r}, 1, 1, 0
      c.train_per_class = 64  # A 640-image pool: fewer steps, the same per-step memory.
      c.beit.update(TINY_BEIT)
      lrs = list(paper_grid.get_config().grid.learning_rate)
      out = {{}}
      for batch_size in (32, max(paper_grid.get_config().grid.batch_size)):
        search = grid.GridSearchCV(c, {{'batch_size': [batch_size], 'learning_rate': lrs, 'optimizer': ['adam']}},
                                   cv=5, refit=None, log=None).fit()
        out[batch_size] = {{'models_per_program': search.models_per_program_[0],
                           'accuracy': float(search.cv_results_['mean_test_accuracy'].max())}}
      out['peak_rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
      print(json.dumps(out))
      ''')
  run = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  out = json.loads(run.stdout.strip().splitlines()[-1])
  print('load:', out)  # Shown with pytest -s; recorded in BUILD_NOTES.md, "Reliability".
  assert out['32']['models_per_program'] == 40 and out['256']['models_per_program'] == 40
  assert out['peak_rss_gib'] < 0.5 * 24  # Half of this 24 GiB machine, with room to spare.
  assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20 < 12
