"""The ablation with the real MiniLM: each arm records its own choice per outer fold (BEiT alone learns only at the
larger learning rate, the hybrid's pretrained post-LN BERT layer only at the smaller one)."""

import json

import pytest
from sklearn.linear_model import LogisticRegression

from cmtl_jax import experiment
from cmtl_jax.ablation import references

pytestmark = pytest.mark.slow  # Real MiniLM training: the system tier (tests/ablation/ checks the mechanics).


def test_each_arm_records_its_own_choice_per_outer_fold(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setattr(references, 'logistic_regression', lambda: LogisticRegression(max_iter=2000, tol=1e-2))
  config = tiny_config
  config.model.bert_path = ''
  config.search.cv, config.ablation.inner_cv, config.data.val_fraction = 2, 1, 0.2
  config.ablation.arms = ('beit', 'hybrid')
  config.search.grid = {'optim': {'learning_rate': (1e-5, 3e-3)}}
  config.optim.num_epochs, config.optim.batch_size = 2, 32
  experiment.ablation(config, str(tmp_path), log=None)
  chosen = {arm: r['chosen_params'] for arm, r in
            json.loads((tmp_path / 'ablation.json').read_text())['points']['0']['arms'].items()}
  assert [c['optim.learning_rate'] for c in chosen['beit']] == [3e-3, 3e-3]
  assert [c['optim.learning_rate'] for c in chosen['hybrid']] == [1e-5, 1e-5]
  assert all(1 <= c['optim.num_epochs'] <= 2 for arm in chosen for c in chosen[arm])
  report = (tmp_path / 'report.md').read_text()
  for arm in ('beit', 'hybrid'):
    line = next(l for l in report.splitlines() if l.startswith(f'| {arm} | fold 0:'))
    for k, c in enumerate(chosen[arm]):
      assert f'fold {k}: optim.learning_rate {c["optim.learning_rate"]:g}, optim.num_epochs ' \
             f'{c["optim.num_epochs"]}' in line
