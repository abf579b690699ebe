"""Load: the biggest stacked groups fit in one vectorised program, peak memory measured in a fresh process."""

import json
import os
import resource
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # A fresh process: the system tier.

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_largest_groups_fit_in_one_vectorised_program(data_dir):
  """Digits grid shape (5 folds x 8 LRs at batch 32) and the paper preset's largest group (batch 256, 8 LRs, 5
  folds), 40 models each vectorised in one program with a tiny model."""
  script = textwrap.dedent(f'''
      import json, resource
      from cmtl_jax import config as config_lib
      from cmtl_jax.search import grid
      from experiments.configs import paper_grid
      from tests.helpers import TINY_BEIT
      c = config_lib.base_config()
      c.data.data_dir, c.model.bert_layers, c.optim.num_epochs, c.devices.vmap_width = {data_dir!r}, 1, 1, 0
      c.data.train_per_class = 64  # A 640-image pool: fewer steps, the same per-step memory.
      c.model.beit.update(TINY_BEIT)
      paper = paper_grid.get_config().search.grid.optim
      out = {{}}
      for batch_size in (32, max(paper.batch_size)):
        search = grid.GridSearchCV(c, {{'optim.batch_size': [batch_size], 'optim.learning_rate': list(
            paper.learning_rate), 'optim.optimizer': ['adam']}}, cv=5, refit=None, log=None).fit()
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
