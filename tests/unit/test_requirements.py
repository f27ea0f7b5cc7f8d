"""The requirement files say what the code imports, and nothing else.

* Every module from outside the standard library that ``doctor_ext/``
  imports comes from a distribution of requirements.txt; one that the lab
  (``lab/``) imports, from requirements.txt or lab/requirements.txt (the
  benchmark's matplotlib and psutil are in tox.ini's bench env); one that
  tests/ or tools/ import, from those or test-requirements.txt.
* Every requirement is imported somewhere, except the few that are used
  without an import (:data:`NOT_IMPORTED`).
* lower-constraints.txt pins each requirement of requirements.txt at its
  declared minimum (the lower-constraints tox env installs it).
"""

import ast
import configparser
import importlib.metadata
import os
import re
import sys

from oslotest import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Requirements used without being imported, and by what.
NOT_IMPORTED = {
    'pbr': 'setup.py builds the package with it',
    'hacking': 'flake8 plugin (tox -e pep8)',
    'stestr': 'the test runner',
    'psycopg': "SQLAlchemy's driver for postgresql:// URLs",
    'pymysql': "SQLAlchemy's driver for mysql+pymysql:// URLs",
    'sushy-tools': 'the Redfish emulator the lab starts (sushy-emulator)',
}
BENCH_ENV = 'testenv:bench'


def normalize(name):
    """A distribution name as PEP 503 compares them."""
    return re.sub(r'[-_.]+', '-', name).lower()


def requirements(path):
    """{normalized name: minimum or None} of a requirements file."""
    found = {}
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            name = re.match(r'[A-Za-z0-9][A-Za-z0-9._-]*', line).group(0)
            minimum = re.search(r'>=\s*([^,;\s]+)', line)
            found[normalize(name)] = minimum.group(1) if minimum else None
    return found


def imports(*dirs):
    """{top-level module: first file importing it}, standard library out."""
    found = {}
    for top in dirs:
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            for name in sorted(names):
                if not name.endswith('.py'):
                    continue
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    tree = ast.parse(f.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and not node.level:
                        modules = [node.module]
                    else:
                        continue
                    for module in modules:
                        found.setdefault(module.split('.')[0],
                                         os.path.relpath(path, ROOT))
    return {m: p for m, p in found.items()
            if m not in sys.stdlib_module_names and
            m not in ('doctor_ext', 'doctor_ext_lab', 'tests')}


def bench_deps():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(os.path.join(ROOT, 'tox.ini'))
    return {normalize(re.match(r'[A-Za-z0-9._-]+', line).group(0))
            for line in tox[BENCH_ENV]['deps'].splitlines()
            if line.strip() and not line.strip().startswith(('-', '{'))}


class TestRequirements(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.runtime = requirements('requirements.txt')
        self.test = requirements('test-requirements.txt')
        self.lab = requirements('lab/requirements.txt')
        self.providers = importlib.metadata.packages_distributions()

    def distributions(self, module):
        """Who provides ``module`` (not installed: its own name)."""
        return {normalize(d) for d in self.providers.get(module, [module])}

    def undeclared(self, modules, declared):
        return ['%s (imported by %s; from %s)'
                % (module, path, ', '.join(sorted(self.distributions(module))))
                for module, path in sorted(modules.items())
                if not self.distributions(module) & declared]

    def test_product_imports_are_in_requirements(self):
        declared = set(self.runtime)
        self.assertEqual([], self.undeclared(imports('doctor_ext'),
                                             declared))

    def test_lab_imports_are_declared(self):
        declared = set(self.runtime) | set(self.lab) | bench_deps()
        self.assertEqual([], self.undeclared(imports('lab/doctor_ext_lab'),
                                             declared))

    def test_test_and_tool_imports_are_declared(self):
        declared = set(self.runtime) | set(self.test) | set(self.lab)
        self.assertEqual([], self.undeclared(imports('tests', 'tools'),
                                             declared))

    def test_every_requirement_is_used(self):
        scanned = imports('doctor_ext', 'lab/doctor_ext_lab', 'tests',
                          'tools')
        imported = {d for module in scanned
                    for d in self.distributions(module)}
        unused = sorted((set(self.runtime) | set(self.test) |
                         set(self.lab)) - imported - set(NOT_IMPORTED))
        self.assertEqual([], unused)

    def test_lower_constraints_pin_the_minimums(self):
        pinned = {}
        with open(os.path.join(ROOT, 'lower-constraints.txt')) as f:
            for line in f:
                name, _, version = line.strip().partition('==')
                pinned[normalize(name)] = version
        self.assertEqual(self.runtime, pinned)
