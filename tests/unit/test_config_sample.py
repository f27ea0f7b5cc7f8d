"""The committed configuration samples are what the code generates.

etc/ceilometer/ceilometer-doctor.conf.sample and etc/doctor-monitor.conf.sample
are the configuration reference operators read (and the docs include): they
must list every option with its current default and help. Each is generated
again here with oslo-config-generator, from the generator file next to it,
into a temporary directory, and compared with the committed copy.

When this fails, an option was added or changed without regenerating the
samples: run ``tox -e genconfig`` and commit the result.
"""

import difflib
import os
import subprocess
import sys

import fixtures
from oslotest import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# (generator config file, committed sample), relative to the repository.
SAMPLES = [
    ('etc/ceilometer/doctor-ext-config-generator.conf',
     'etc/ceilometer/ceilometer-doctor.conf.sample'),
    ('etc/doctor-monitor-config-generator.conf',
     'etc/doctor-monitor.conf.sample'),
]

# oslo-config-generator, run with this interpreter (so in this virtualenv,
# with this virtualenv's entry points), as the console script runs it.
GENERATOR = ('import sys; from oslo_config import generator; '
             'sys.exit(generator.main())')
TIMEOUT = 120
MAX_DIFF_LINES = 60


def generate(generator_conf, output):
    """Run oslo-config-generator; return its stderr on failure."""
    proc = subprocess.run(
        [sys.executable, '-c', GENERATOR,
         '--config-file', os.path.join(ROOT, generator_conf),
         '--output-file', output],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode:
        return proc.stderr[-3000:] or 'exit status %d' % proc.returncode
    return None


class TestConfigSamples(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def _check(self, generator_conf, sample):
        output = os.path.join(self.tmp, os.path.basename(sample))
        error = generate(generator_conf, output)
        if error:
            self.fail('oslo-config-generator --config-file %s failed:\n%s'
                      % (generator_conf, error))
        with open(output) as f:
            generated = f.read()
        with open(os.path.join(ROOT, sample)) as f:
            committed = f.read()
        if generated != committed:
            diff = list(difflib.unified_diff(
                committed.splitlines(), generated.splitlines(),
                fromfile=sample + ' (committed)',
                tofile=sample + ' (generated)', lineterm=''))
            shown = diff[:MAX_DIFF_LINES]
            if len(diff) > MAX_DIFF_LINES:
                shown.append('... (%d more diff lines)'
                             % (len(diff) - MAX_DIFF_LINES))
            self.fail('%s is out of date: run "tox -e genconfig" and commit '
                      'the result.\n%s' % (sample, '\n'.join(shown)))

    def test_ceilometer_doctor_sample(self):
        self._check(*SAMPLES[0])

    def test_doctor_monitor_sample(self):
        self._check(*SAMPLES[1])

    def test_generator_files_name_the_committed_samples(self):
        # tox -e genconfig writes to the output_file of each generator file:
        # it must be the sample checked above.
        for generator_conf, sample in SAMPLES:
            with open(os.path.join(ROOT, generator_conf)) as f:
                lines = [line.split('=', 1)[1].strip() for line in f
                         if line.split('=', 1)[0].strip() == 'output_file']
            self.assertEqual([sample], lines, generator_conf)
