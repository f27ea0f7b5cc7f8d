"""Imports go one way: the flow's direction, never into the lab or tests.

The map (doc/source/contributor/architecture.rst) says which package of
``doctor_ext`` may import which; this test reads every import statement
(at module level or in a function, but not under ``if __name__ ==
'__main__'``) of the product and of the lab, and checks that:

* the product imports nothing from the lab (``doctor_ext_lab``) or the
  tests, and no test library;
* each package imports only the packages :data:`ALLOWED` lists for it
  (the evaluator nothing from the inspector, for example);
* no two modules import each other, directly or through others.
"""

import ast
import os

from oslotest import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SOURCES = {'doctor_ext': ROOT, 'doctor_ext_lab': os.path.join(ROOT, 'lab')}

# Which packages (or top-level modules) of doctor_ext each one may import.
# The flow: monitor -> (bus) -> pipeline -> inspector -> evaluator ->
# notifier; the publisher hands events to the evaluator (and host reports
# through the inspector's gate); db, broker and retry serve them; cmd and
# opts sit on top.
ALLOWED = {
    'monitor': set(),
    'data': set(),
    'db': set(),
    'broker': set(),
    'retry': set(),
    'notifier': {'retry'},
    'pipeline': {'broker'},
    'evaluator': {'broker', 'db', 'notifier', 'retry'},
    # monitor: the inspector verifies the reports the monitor signs
    # (monitor.signing).
    'inspector': {'db', 'evaluator', 'monitor', 'retry'},
    'publisher': {'evaluator', 'inspector'},
    'cmd': {'db', 'evaluator', 'inspector', 'monitor'},
    'opts': {'db', 'evaluator', 'inspector', 'monitor', 'notifier',
             'pipeline', 'publisher'},
}
TEST_LIBRARIES = {'fixtures', 'testtools', 'oslotest', 'testscenarios',
                  'hypothesis', 'stestr', 'tests', 'doctor_ext_lab'}


def _modules():
    """{module name: path} of the product and the lab."""
    found = {}
    for top, base_dir in SOURCES.items():
        for dirpath, _, names in os.walk(os.path.join(base_dir, top)):
            for name in names:
                if not name.endswith('.py'):
                    continue
                path = os.path.join(dirpath, name)
                module = os.path.relpath(path, base_dir)[:-3].replace(
                    os.sep, '.')
                if module.endswith('.__init__'):
                    module = module[:-len('.__init__')]
                found[module] = path
    return found


def _is_main_block(node):
    test = getattr(node, 'test', None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and
            isinstance(test.left, ast.Name) and
            test.left.id == '__name__')


def _imported(path, module, known):
    """The modules (or packages) ``module`` at ``path`` imports."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith('__init__.py') else \
        module.rpartition('.')[0]
    out = set()

    def visit(node):
        if _is_main_block(node):
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                base_name = '.'.join(parts[:len(parts) - node.level + 1])
                source = base_name + ('.' + node.module if node.module
                                      else '')
            else:
                source = node.module
            for alias in node.names:
                name = '%s.%s' % (source, alias.name)
                out.add(name if name in known else source)
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(tree)
    return out


class TestImportDirection(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.modules = _modules()
        self.imports = {m: _imported(p, m, self.modules)
                        for m, p in self.modules.items()}

    def product(self):
        return {m: i for m, i in self.imports.items()
                if m.split('.')[0] == 'doctor_ext'}

    def test_product_imports_no_lab_no_tests_no_test_library(self):
        bad = sorted('%s imports %s' % (m, i)
                     for m, imports in self.product().items()
                     for i in imports
                     if i.split('.')[0] in TEST_LIBRARIES)
        self.assertEqual([], bad)

    def test_packages_import_in_the_flow_direction(self):
        bad = []
        for module, imports in sorted(self.product().items()):
            parts = module.split('.')
            if len(parts) < 2:
                continue
            package = parts[1]
            for imported in sorted(imports):
                iparts = imported.split('.')
                if iparts[0] != 'doctor_ext' or len(iparts) < 2:
                    continue
                if iparts[1] != package and \
                        iparts[1] not in ALLOWED.get(package, ()):
                    bad.append('%s imports %s' % (module, imported))
        self.assertEqual([], bad)

    def test_every_package_is_on_the_map(self):
        packages = {m.split('.')[1] for m in self.product() if '.' in m}
        self.assertEqual(set(), packages - set(ALLOWED))

    def test_the_evaluator_imports_nothing_from_the_inspector(self):
        self.assertNotIn('inspector', ALLOWED['evaluator'])
        self.assertNotIn('publisher', ALLOWED['evaluator'])

    def test_no_import_cycles(self):
        graph = {m: {i for i in imports if i in self.modules and i != m}
                 for m, imports in self.imports.items()}
        # A package's __init__ importing its own modules is no cycle.
        for module in graph:
            graph[module] = {i for i in graph[module]
                             if not module.startswith(i + '.')}
        cycles = []
        state = {}

        def walk(node, path):
            state[node] = 'open'
            for nxt in sorted(graph[node]):
                if state.get(nxt) == 'open':
                    cycles.append(path[path.index(nxt):] + [nxt])
                elif nxt not in state:
                    walk(nxt, path + [nxt])
            state[node] = 'done'
        for module in sorted(graph):
            if module not in state:
                walk(module, [module])
        self.assertEqual([], [' -> '.join(c) for c in cycles])
