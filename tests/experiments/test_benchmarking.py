"""The benchmark's measurements: the model FLOP count against XLA's, MFU and ratios formed per interleaved round,
and the PyTorch twin built to the same size."""

import copy
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import benchmarking as benchmark
from cmtl_jax.models import build as model_lib
from tests.helpers import build


def _xla_forward_flops(model, params, batch_size):
  beit = model.beit_config
  pixels = jnp.zeros((batch_size, beit.image_size, beit.image_size, beit.num_channels), jnp.float32)
  lowered = jax.jit(lambda p, x: model.apply({'params': p}, x)).lower(params, pixels)
  return benchmark._xla_flops(lowered)  # pylint: disable=protected-access


def test_model_flops_match_xla_count(tiny_config):
  # The hybrid: its count adds the adapter and the BERT layers to the BEiT alone's, on the same code path.
  # Wide enough that the elementwise work XLA counts beside the matmuls is a few per cent, as in real models.
  tiny_config.model.beit.update(dict(num_hidden_layers=2, hidden_size=128, intermediate_size=512, image_size=32))
  model, params, _, _ = build(tiny_config)
  ours, xla = model_lib.forward_flops(model, 16), _xla_forward_flops(model, params, 16)
  # XLA also counts the elementwise work (norms, softmax, GELU, biases), which the model count leaves out; a count
  # missing a layer or the MLP would fall far below it (BEiT alone: leaving out the attention matmuls gives 1.18).
  assert ours <= xla <= 1.12 * ours, (ours, xla)
  assert model_lib.train_step_flops(model, 16) == 3 * ours
  # The count scales with the batch and with depth as XLA's does.
  assert model_lib.forward_flops(model, 32) == 2 * ours
  tiny_config.model.beit.num_hidden_layers = 3
  deeper, deeper_params, _, _ = build(tiny_config)
  added = model_lib.forward_flops(deeper, 16) - ours
  assert added == pytest.approx(_xla_forward_flops(deeper, deeper_params, 16) - xla, rel=0.12)


def test_mfu_and_ratios_are_per_round_medians_and_run_writes_the_issue_keys(tiny_config, monkeypatch):
  peak = benchmark.matmul_peak
  monkeypatch.setattr(benchmark, 'matmul_peak', lambda dtype: peak(dtype, size=256))  # The rounds, not the peak.
  recipe = benchmark.recipe_config(tiny_config)
  assert recipe.augment.mixup == 0.8 and recipe.optim.ema_decay > 0 and recipe.optim.layer_decay == 0.65
  # The rounds' arithmetic, with a step that differs cheaply (the whole recipe compiles for seconds).
  flipped = copy.deepcopy(tiny_config)
  flipped.augment.hflip = 0.5
  monkeypatch.setattr(benchmark, 'recipe_config', lambda config: flipped)
  result = benchmark.run(tiny_config, tiny_config, parts=['mfu'], steps=2, rounds=3, log=None)
  assert set(result) >= {'step_mfu', 'recipe_step_ratio', 'torch_speedup', 'stacked_over_loop',
                         'halving_epoch_fraction', 'machine'}
  assert result['torch_speedup'] is None and result['stacked_over_loop'] is None
  assert len(result['rounds']) == 3
  flops = result['step']['model_flops_per_step']
  for r in result['rounds']:
    assert r['step_mfu'] == pytest.approx(flops / r['seconds_per_step'] / r['matmul_peak_flops']['float32'])
    assert 0 < r['step_mfu'] < 1.5
  assert result['step_mfu'] == pytest.approx(np.median([r['step_mfu'] for r in result['rounds']]))
  for r in result['rounds']:  # The recipe's step timed in the same rounds.
    assert r['recipe_step_ratio'] == pytest.approx(r['recipe_seconds_per_step'] / r['seconds_per_step'])
  assert result['recipe_step_ratio'] == pytest.approx(np.median([r['recipe_step_ratio'] for r in result['rounds']]))
  assert result['step']['seconds_per_step'] == pytest.approx(
      np.median([r['seconds_per_step'] for r in result['rounds']]))
  assert result['step']['loss_finite']


def test_torch_twin_has_our_size_and_trains(tiny_config):
  pytest.importorskip('torch')
  tiny_config.optim.learning_rate = 1e-3
  model, params, _, _ = build(tiny_config)
  timed = benchmark.torch_timer(tiny_config, steps=2)
  assert timed is not None
  timer, info = timed
  ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert info['parameters'] == ours
  assert timer() > 0


def test_profile_accounts_for_the_step_by_kind_of_instruction(tiny_config):
  result = benchmark.profile_step(tiny_config, steps=2, top=5)
  kinds = dict(result['kinds'])
  # The program's ops (thunks on CPU) cover most of the traced wall time (dispatch and the epoch's shuffle lie
  # outside them; independent thunks may run at once on a CPU's threads, so their sum can exceed the wall time,
  # 1.45x on the paper-size model here); an event filter that missed the step's program would find ~0.
  assert 0.3 * result['seconds_per_step'] < result['op_seconds_per_step'] < 4 * result['seconds_per_step']
  assert sum(kinds.values()) == pytest.approx(result['op_seconds_per_step'])
  assert len(kinds) >= 3 and all(t >= 0 for t in kinds.values()), kinds  # Summed over several kinds.
  assert all('.' not in k for k in kinds)  # Summed by kind: `dot.12` and `dot.13` are one `dot`.
  assert len(result['ops']) == 5 and any('HybridClassifier' in op_name for _, _, op_name in result['ops'])
  # By wall time: every instant from the first op to the last is counted once, and that span lies in the epoch.
  wall_kinds = dict(result['wall_kinds'])
  assert sum(wall_kinds.values()) == pytest.approx(result['span_seconds_per_step'])
  assert 0 <= result['idle_seconds_per_step'] < result['span_seconds_per_step'] <= result['seconds_per_step']
  assert set(wall_kinds) == set(kinds) and len(result['wall_ops']) == 5


def test_wall_shares_split_overlaps_and_give_idle_time_to_the_op_that_ended_last():
  events = [(0, 10, 'a'), (5, 15, 'b'), (20, 30, 'c'), (30, 32, 'd'), (40, 41, 'a')]
  shares, idle = benchmark.wall_shares(events)
  # a: 0-5 alone, 5-10 shared with b, 40-41; b: 5-10 shared, 10-15 alone, 15-20 idle after it ended last;
  # c: 20-30; d: 30-32 and the idle 32-40.
  assert shares == {'a': 5 + 2.5 + 1, 'b': 2.5 + 5 + 5, 'c': 10, 'd': 2 + 8}
  assert idle == 5 + 8
  assert sum(shares.values()) == 41
