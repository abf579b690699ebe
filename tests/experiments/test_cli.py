"""The entry points' shared flag handling, in process: a misspelled or moved override named before absl's usage
dump, and overrides of keys a purpose does not read refused."""

import pytest

from cmtl_jax.errors import ConfigError
from experiments import cli


@pytest.mark.parametrize('override,message', [
    ('--config.no_such_key=1', "unknown config key 'no_such_key'"),
    ('--config.model.beit.no_such=1', "unknown config key 'model.beit.no_such': nearest valid keys: model.beit."),
    ('--grid_config.optim.learning_rat=0.1', "unknown config key 'optim.learning_rat': nearest valid keys: "
                                             "optim.learning_rate"),
    ('--config.variant=beit', "config key 'variant' is now 'model.variant'"),
])
def test_a_misspelled_or_moved_override_is_named_with_its_nearest_keys(override, message):
  argv = ['prog', '--config=c.py', '--config.optim.learning_rate=0.1']
  assert cli._unknown_override(argv + [override]).startswith(message)  # pylint: disable=protected-access
  assert cli._unknown_override(argv) == ''  # pylint: disable=protected-access


def test_overrides_a_purpose_does_not_read_are_refused(tiny_config):
  assert cli.overridden_keys(['prog', '--config.optim.num_epochs=2', '--workdir=w', '--grid_config.seed=1']) == [
      'optim.num_epochs']
  cli.refuse_unread(tiny_config, 'train', ['prog', '--config.optim.num_epochs=2'])
  with pytest.raises(ConfigError, match='pretraining does not read --config.optim.num_epochs: did you mean '
                                        '--config.pretrain.num_epochs'):
    cli.refuse_unread(tiny_config, 'pretrain', ['prog', '--config.optim.num_epochs=2'])


def test_errors_reading_the_config_are_one_readable_line():
  describe = cli._describe  # pylint: disable=protected-access
  assert describe(FileNotFoundError(2, 'No such file or directory', 'c.py')).startswith(
      'cannot read the config file: [Errno 2] No such file or directory')
  assert describe(KeyError("'learnig_rate'\nDid you mean \"learning_rate\" instead of \"learnig_rate\"?")) == (
      "'learnig_rate' Did you mean 'learning_rate' instead of 'learnig_rate'?")


def test_grid_overrides_may_name_any_key_and_land_in_the_locked_configs_grid(tiny_config):
  argv = ['prog', '--config=c.py', "--config.search.grid.augment.mixup=(0.0, 0.8)",
          '--config.search.grid.optim.learning_rate=(1e-3,)', '--config.search.cv=2']
  rest, grid = cli.split_grid_overrides(argv)
  assert rest == ['prog', '--config=c.py', '--config.search.cv=2']
  assert grid == {'augment.mixup': (0.0, 0.8), 'optim.learning_rate': (1e-3,)}
  tiny_config.lock()  # As ml_collections hands it over: no new keys by attribute.
  cli.set_grid(tiny_config, grid)
  from cmtl_jax import resolve  # pylint: disable=g-import-not-at-top
  assert resolve.resolve(tiny_config, 'search').search.param_grid == {'augment.mixup': [0.0, 0.8],
                                                                      'optim.learning_rate': [1e-3]}
