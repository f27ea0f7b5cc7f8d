"""Every configuration block of the docs works when pasted.

Operators paste the ini blocks of README.rst and doc/source/ into their
configuration files, and copy the files of etc/aodh/. Each block that holds
a ``[section]`` line (a ``::`` literal block or a ``.. code-block:: ini``)
is loaded here with oslo.config against the real option definitions of the
program that reads the file: the last ``*.conf`` file the prose names
before the block says which one (see :data:`PROGRAMS`). A block fails on:

* a section or an option that program does not define;
* a value its option rejects (a type, a choice, a range);
* a comment after a value on the same line: oslo.config keeps it in the
  value (``False   # requeued`` is not a boolean; a list gets it as its
  last item without complaint).

Nova is not installed here: the few ``nova.conf`` options the docs set are
defined below as Nova 34 defines them (nova/conf/notifications.py).
"""

import copy
import glob
import io
import os
import re

from docutils import core as docutils_core
from docutils import nodes
from docutils.parsers.rst import directives
from docutils.parsers.rst.directives import body as rst_body
import fixtures
from oslo_config import cfg
from oslotest import base
import stevedore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DOCUMENTS = ['README.rst'] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(
        os.path.join(ROOT, 'doc', 'source', '**', '*.rst'), recursive=True))
# Whole files operators copy as they are, and the file they are for.
FILES = [(os.path.relpath(p, ROOT), 'aodh.conf') for p in sorted(
    glob.glob(os.path.join(ROOT, 'etc', 'aodh', '*.conf')))]


def _generator_namespaces(path):
    """The ``namespace`` lines of one of our oslo-config-generator files."""
    with open(os.path.join(ROOT, path)) as f:
        return re.findall(r'^namespace\s*=\s*(\S+)', f.read(), re.M)


# Nova's options the docs set (nova/conf/notifications.py of Nova 34).
NOVA_OPTS = [
    ('notifications', [
        cfg.StrOpt('notify_on_state_change',
                   choices=[None, 'vm_state', 'vm_and_task_state']),
        cfg.StrOpt('notification_format', default='unversioned',
                   choices=['both', 'versioned', 'unversioned']),
    ]),
]

# File name -> the oslo.config.opts namespaces of the program reading it
# (as in the program's own generator file), plus options defined here.
PROGRAMS = {
    'ceilometer.conf': (
        ['ceilometer', 'ceilometer-auth', 'oslo.concurrency', 'oslo.log',
         'oslo.messaging', 'oslo.reports', 'cotyledon'] +
        _generator_namespaces(
            'etc/ceilometer/doctor-ext-config-generator.conf'), []),
    'aodh.conf': (
        ['aodh', 'aodh-auth', 'keystonemiddleware.auth_token', 'oslo.db',
         'oslo.log', 'oslo.messaging', 'oslo.middleware.cors',
         'oslo.middleware.healthcheck', 'oslo.middleware.http_proxy_to_wsgi',
         'oslo.policy', 'oslo.reports', 'osprofiler'], []),
    # doctor-ext-dbsync's own file (the tables' owner's connection).
    'dbsync.conf': (_generator_namespaces(
        'etc/ceilometer/doctor-ext-config-generator.conf'), []),
    'monitor.conf': (
        _generator_namespaces('etc/doctor-monitor-config-generator.conf'),
        []),
    'nova.conf': (['oslo.messaging'], NOVA_OPTS),
}

SECTION = re.compile(r'^\s*\[[^\]\s]+\]\s*$', re.M)
# A file name in the prose (not etc/...conf.sample).
CONF_FILE = re.compile(r'([\w.-]+?\.conf)(?![\w.])')
GLUED_COMMENT = re.compile(r'\s#')

# Sphinx's name of docutils' code directive.
directives.register_directive('code-block', rst_body.CodeBlock)


def config_blocks(path):
    """(line, file name or None, text) of each ini block of an rst file."""
    with open(os.path.join(ROOT, path)) as f:
        source = f.read()
    doctree = docutils_core.publish_doctree(
        source, source_path=path, settings_overrides={
            # Sphinx's own roles and directives are unknown to docutils:
            # their errors are not ours to report.
            'report_level': 5, 'halt_level': 5,
            'warning_stream': io.StringIO(), 'file_insertion_enabled': False,
            'syntax_highlight': 'none'})
    lines = source.splitlines()
    target = None
    line = 0
    for node in doctree.findall():
        if isinstance(node, nodes.literal_block):
            text = node.astext()
            # docutils gives no line to a code-block: the next one that
            # starts as it does.
            first = (text.strip().splitlines() or [''])[0].strip()
            line = node.line or next(
                (n for n in range(line + 1, len(lines) + 1)
                 if lines[n - 1].strip() == first), None)
            if SECTION.search(text):
                yield line, target, text
        elif (isinstance(node, nodes.Text) and
              not any(isinstance(p, nodes.literal_block)
                      for p in _ancestors(node))):
            names = CONF_FILE.findall(str(node))
            if names:
                target = os.path.basename(names[-1])


def _ancestors(node):
    while node.parent is not None:
        node = node.parent
        yield node


def program_conf(name):
    """A ConfigOpts with every option of the program reading ``name``.

    Also returns the option names of each group (None: DEFAULT).
    """
    namespaces, extra = PROGRAMS[name]
    conf = cfg.ConfigOpts()
    known = {None: set()}
    mgr = stevedore.named.NamedExtensionManager(
        'oslo.config.opts', names=namespaces, on_load_failure_callback=_raise,
        on_missing_entrypoints_callback=_missing)
    listed = [item for ext in mgr for item in ext.plugin()] + extra
    for group, opts in listed:
        if isinstance(group, cfg.OptGroup):
            group = group.name
        group = None if group in (None, 'DEFAULT') else group
        for opt in opts:
            if opt.required:
                # A block is a part of a file: it need not hold them all.
                opt = copy.copy(opt)
                opt.required = False
            try:
                conf.register_opt(opt, group=group)
            except cfg.DuplicateOptError:
                continue    # two libraries list one option: the first counts
            known.setdefault(group, set()).add(opt.dest)
    return conf, known


def _raise(manager, entrypoint, exc):
    raise exc


def _missing(names):
    raise AssertionError('oslo.config.opts entry points not installed: %s'
                         % ', '.join(sorted(names)))


def check_block(text, file_name, tmpdir):
    """The problems of one block of ``file_name``, as sentences."""
    if file_name not in PROGRAMS:
        return ['no file to check it against: the text before the block '
                'names %s; name one of %s there'
                % (file_name or 'no *.conf file', ', '.join(sorted(PROGRAMS)))]
    path = os.path.join(tmpdir, 'block.conf')
    with open(path, 'w') as f:
        f.write(text + '\n')
    sections = {}
    try:
        cfg.ConfigParser(path, sections).parse()
    except cfg.ParseError as e:
        return ['not an ini file: %s' % e]
    conf, known = program_conf(file_name)
    problems = []
    to_read = []
    for section, values in sections.items():
        group = None if section == 'DEFAULT' else section
        if group not in known:
            problems.append('[%s]: no such section in %s' % (section,
                                                             file_name))
            continue
        for key, given in values.items():
            where = '[%s] %s' % (section, key)
            glued = [v for v in given if GLUED_COMMENT.search(v)]
            if glued:
                problems.append(
                    '%s: a comment after the value %r (oslo.config keeps it '
                    'in the value; put comments on lines of their own)'
                    % (where, glued[0]))
            elif key not in known[group]:
                problems.append('%s: no such option in %s' % (where,
                                                              file_name))
            else:
                to_read.append((group, key, where))
    conf(args=[], default_config_files=[path], default_config_dirs=[])
    for group, key, where in to_read:
        try:
            getattr(conf[group] if group else conf, key)
        except (cfg.ConfigFileValueError, ValueError) as e:
            problems.append('%s: %s' % (where, e))
    return problems


class TestCheckBlock(base.BaseTestCase):
    """The checker itself finds what it must."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def check(self, text, file_name='ceilometer.conf'):
        return check_block(text, file_name, self.tmp)

    def test_good_block(self):
        self.assertEqual([], self.check(
            '[notification]\n# a comment of its own\n'
            'ack_on_event_error = False\n'
            'pipelines = meter\npipelines = doctor_event\n'
            '[doctor_evaluator]\n'
            'aodh_connection = mysql+pymysql://aodh:X@db/aodh\n'))

    def test_comment_glued_to_a_value(self):
        # A list takes the comment as an item: only this check sees it.
        problems = self.check('[oslo_messaging_notifications]\n'
                              'topics = notifications   # the default\n')
        self.assertEqual(1, len(problems), problems)
        self.assertIn('[oslo_messaging_notifications] topics: a comment',
                      problems[0])

    def test_bad_value(self):
        problems = self.check('[notification]\nack_on_event_error = maybe\n')
        self.assertEqual(1, len(problems), problems)
        self.assertIn('[notification] ack_on_event_error', problems[0])
        self.assertIn('maybe', problems[0])

    def test_unknown_option_and_section(self):
        problems = self.check('[notification]\nack_on_errors = False\n'
                              '[doctor_nothing]\nx = 1\n')
        self.assertEqual(
            ['[notification] ack_on_errors: no such option in '
             'ceilometer.conf',
             '[doctor_nothing]: no such section in ceilometer.conf'],
            problems)

    def test_other_programs(self):
        self.assertEqual([], self.check(
            '[notifications]\nnotification_format = both\n', 'nova.conf'))
        self.assertEqual(1, len(self.check(
            '[notifications]\nnotification_format = all\n', 'nova.conf')))
        self.assertEqual(1, len(self.check(
            '[doctor_evaluator]\naodh_connection = sqlite://\n',
            'aodh.conf')))

    def test_unknown_file(self):
        problems = self.check('[DEFAULT]\ndebug = true\n', None)
        self.assertIn('names no *.conf file', problems[0])

    def test_blocks_found(self):
        path = os.path.join(self.tmp, 'x.rst')
        with open(path, 'w') as f:
            f.write('Title\n=====\n\nIn ``nova.conf``::\n\n'
                    '   [notifications]\n   notification_format = both\n\n'
                    'In ``aodh.conf``:\n\n.. code-block:: ini\n\n'
                    '   [DEFAULT]\n   debug = true\n\n'
                    'A shell block::\n\n   ls [a]b\n')
        self.assertEqual(
            [('nova.conf', '[notifications]\nnotification_format = both'),
             ('aodh.conf', '[DEFAULT]\ndebug = true')],
            [(name, text) for _, name, text in config_blocks(path)])


class TestDocConfigBlocks(base.BaseTestCase):
    """README.rst, doc/source/**.rst and etc/aodh/ as they are committed."""

    def test_every_block_loads(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        problems = []
        checked = 0
        for doc in DOCUMENTS:
            for line, name, text in config_blocks(doc):
                checked += 1
                problems += ['%s:%s (%s): %s' % (doc, line, name, p)
                             for p in check_block(text, name, tmp)]
        for path, name in FILES:
            with open(os.path.join(ROOT, path)) as f:
                text = f.read()
            checked += 1
            problems += ['%s (%s): %s' % (path, name, p)
                         for p in check_block(text, name, tmp)]
        # README and install.rst have blocks of ceilometer.conf, aodh.conf
        # and nova.conf: finding none means the extraction is broken.
        self.assertGreaterEqual(checked, 6)
        if problems:
            self.fail('%d problem(s) in configuration blocks:\n%s'
                      % (len(problems), '\n'.join(problems)))
