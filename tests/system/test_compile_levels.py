"""The default tier compiles with most optimisations off (conftest.py); the numerics tests rerun here as users
compile: equality with transformers and stored references, the CPU forms against the plain ones bit for bit, and
the unrolled threefry's bits."""

import os
import subprocess
import sys

import jax
import pytest

from tests import conftest

pytestmark = pytest.mark.slow  # A second pytest run: the system tier.

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUMERICS = ('tests/models/test_models.py', 'tests/models/test_layers.py', 'tests/test_prng.py',
            'tests/models/test_checkpoints.py')


def test_this_process_compiles_at_the_tier_level():
  assert jax.config.read('jax_disable_most_optimizations') is not conftest.OPTIMIZED


def test_numerics_hold_as_users_compile():
  run = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-n', '0', '-p', 'no:cacheprovider', *NUMERICS],
                       cwd=REPO, env={**os.environ, 'CMTL_TEST_OPTIMIZED': '1'}, capture_output=True, text=True,
                       timeout=1200)
  assert run.returncode == 0, run.stdout[-3000:]
  assert ' passed' in run.stdout.splitlines()[-1] and 'failed' not in run.stdout.splitlines()[-1]
