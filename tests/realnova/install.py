"""Keystone, Placement and Nova in a venv of their own, from pinned versions.

Nova's dependency pins are not the product's (upper-constraints.txt), so
they live in tests/realnova-constraints.txt and install into their own venv:
``$DOCTOR_REALNOVA_VENV``, by default ``.tox/realnova`` of the repository.
The venv is kept between runs; it is rebuilt when the constraints file
changes (its hash is stamped in the venv). A first install takes about 90 s.
"""

import fcntl
import hashlib
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONSTRAINTS = os.path.join(REPO, 'tests', 'realnova-constraints.txt')
PACKAGES = ('keystone', 'openstack-placement', 'nova', 'gunicorn', 'PyMySQL')
VENV = (os.environ.get('DOCTOR_REALNOVA_VENV') or
        os.path.join(REPO, '.tox', 'realnova'))


class InstallError(RuntimeError):
    """The venv could not be made; the message has pip's last lines."""


def _digest():
    with open(CONSTRAINTS, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def bin_path(name, venv=VENV):
    return os.path.join(venv, 'bin', name)


def ensure(venv=VENV, progress=None):
    """The venv's path, installed from the constraints file if needed."""
    progress = progress or (lambda msg: None)
    os.makedirs(os.path.dirname(os.path.abspath(venv)), exist_ok=True)
    stamp = os.path.join(venv, 'doctor-constraints.sha256')
    want = _digest()
    # Two suites (or engineers) on one checkout install once.
    with open(os.path.abspath(venv) + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(stamp) as f:
                if f.read().strip() == want:
                    return venv
        except FileNotFoundError:
            pass
        progress('installing Keystone, Placement and Nova into %s '
                 '(first run only, about 90 s)' % venv)
        _run([sys.executable, '-m', 'venv', '--clear', venv], 'venv')
        _run([bin_path('python', venv), '-m', 'pip', 'install', '-q',
              '-c', CONSTRAINTS] + list(PACKAGES), 'pip install')
        with open(stamp, 'w') as f:
            f.write(want + '\n')
    return venv


def _run(argv, what):
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode:
        raise InstallError('%s failed (%s): %s' % (
            what, res.returncode, (res.stdout + res.stderr)[-3000:]))
