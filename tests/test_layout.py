"""The house: imports inside the library point one way, importing it loads nothing from `experiments`, plotting
stays out of the search and the training core, tests mirror the package, the system tier is its own folder, and the
entry points' docstrings (their `--help`) print the commands as written. (Importing the library loads nothing from
`experiments`: tests/test_prng.py checks it in the fresh process that also counts compilations.)

The chain, lowest first (a module may import modules of its own rank or lower; README.md, "Layout", states it):
errors -> config and the model configs it checks `model.beit.*` against -> workdir, devices, prng, stats, metrics ->
data -> models -> resolve -> optim -> task -> train -> search -> plots, report, classifier, pretrain -> ablation ->
experiment -> the package's `__init__`.
"""

import ast
import os
import re
import subprocess
import sys


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, 'tests')
PACKAGE = os.path.join(REPO, 'cmtl_jax')
RANKS = {'errors': 0, 'config': 1, 'recipes': 1, 'models.configs': 1, 'workdir': 2, 'devices': 2, 'prng': 2,
         'stats': 2, 'metrics': 2, 'data': 3, 'augment': 3, 'models': 4, 'resolve': 5, 'optim': 6, 'task': 7,
         'train': 8, 'search': 9, 'plots': 10, 'report': 10, 'classifier': 10, 'pretrain': 10, 'ablation': 11,
         'experiment': 12, '__init__': 13}


def _component(module: str) -> str:
  """The RANKS entry of a module: 'cmtl_jax.search.grid' -> 'search', 'cmtl_jax.models.configs.BeitConfig' ->
  'models.configs', 'cmtl_jax' -> '__init__'."""
  parts = module.split('.')
  if len(parts) > 2 and '.'.join(parts[1:3]) in RANKS:
    return '.'.join(parts[1:3])
  return parts[1] if len(parts) > 1 else '__init__'


def _library_modules():
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(root, name)
        relative = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
        yield path, relative[:-len('.__init__')] if relative.endswith('.__init__') else relative


def upward_imports(path: str, module: str) -> list:
  """The library modules `module` (at `path`) imports that rank above it."""
  with open(path) as f:
    tree = ast.parse(f.read())
  mine = RANKS[_component(module)] if module != 'cmtl_jax' else RANKS['__init__']
  found = []
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
    for name in names:
      if name.startswith('cmtl_jax.') and _component(name) in RANKS and RANKS[_component(name)] > mine:
        found.append(name)
      if name.startswith('experiments'):
        found.append(name)
  return found


def test_every_library_module_has_a_rank():
  unranked = sorted({_component(m) for _, m in _library_modules()} - set(RANKS))
  assert not unranked, f'modules outside the chain (add them to RANKS in the right place): {unranked}'


def test_library_imports_point_down_the_chain():
  upward = {module: found for path, module in _library_modules() if (found := upward_imports(path, module))}
  assert not upward, f'imports against the chain: {upward}'


def test_an_upward_import_is_caught(tmp_path):
  planted = tmp_path / 'grid.py'
  planted.write_text('from cmtl_jax import ablation\nimport cmtl_jax.experiment\nfrom cmtl_jax.data import folds\n')
  assert upward_imports(str(planted), 'cmtl_jax.search.grid') == ['cmtl_jax.ablation', 'cmtl_jax.experiment']


def joins_lines(path: str) -> bool:
  """Whether the module docstring at `path` has a backslash at a line's end that Python reads as a line
  continuation (a non-raw string), so that `--help` and `print(__doc__)` show two lines of a command as one."""
  with open(path) as f:
    source = f.read()
  body = ast.parse(source).body
  if not body or not isinstance(body[0], ast.Expr) or not isinstance(body[0].value, ast.Constant):
    return False
  literal = ast.get_source_segment(source, body[0].value)
  return '\\\n' in literal and not literal.lower().startswith('r')


def test_entry_point_and_config_docstrings_keep_their_line_breaks():
  paths = [os.path.join(root, name) for root, _, files in os.walk(os.path.join(REPO, 'experiments'))
           for name in files if name.endswith('.py')]
  assert [p for p in paths if joins_lines(p)] == []


def test_a_joined_docstring_line_is_caught(tmp_path):
  command = 'python -m experiments.train \\\n    --config.variant=beit\n'
  (tmp_path / 'plain.py').write_text(f'"""Run:\n  {command}"""\n')
  (tmp_path / 'raw.py').write_text(f'r"""Run:\n  {command}"""\n')
  assert joins_lines(str(tmp_path / 'plain.py')) and not joins_lines(str(tmp_path / 'raw.py'))


def imported_names(path: str) -> list:
  with open(path) as f:
    tree = ast.parse(f.read())
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names += [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
  return names


def test_the_search_and_the_training_core_import_no_plotting():
  found = {module: [n for n in imported_names(path) if n.startswith(('matplotlib', 'cmtl_jax.plots'))]
           for path, module in _library_modules() if module.startswith(('cmtl_jax.search', 'cmtl_jax.train'))}
  assert not {m: n for m, n in found.items() if n}


def test_tests_mirror_the_package_and_the_system_tier_is_its_folder():
  """A test module under tests/<dir>/ tests cmtl_jax/<dir>/ (or experiments/); tests marked slow live only in
  tests/system/, and every test there is slow."""
  packages = {name for name in os.listdir(PACKAGE) if os.path.isdir(os.path.join(PACKAGE, name)) and
              not name.startswith('__')}
  for directory in os.listdir(TESTS):
    if os.path.isdir(os.path.join(TESTS, directory)) and any(
        f.startswith('test_') for f in os.listdir(os.path.join(TESTS, directory))):
      assert directory in packages | {'system', 'experiments'}, directory
  for root, _, files in os.walk(TESTS):
    for name in files:
      if not name.startswith('test_') or not name.endswith('.py'):
        continue
      with open(os.path.join(root, name)) as f:
        source = f.read()
      in_system = os.path.relpath(root, TESTS) == 'system'
      marked = re.search(r'^pytestmark = pytest\.mark\.slow', source, re.M) is not None
      assert marked == in_system, os.path.join(root, name)
      assert in_system or not re.search(r'^\s*@pytest\.mark\.slow|marks=pytest\.mark\.slow', source, re.M), name
