# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Sphinx configuration of the doctor-ext documentation.

Build with ``tox -e docs`` or, in a virtualenv that has doctor-ext (and so
Ceilometer and Aodh) installed::

    sphinx-build -W -b html doc/source doc/build/html

``oslo_config.sphinxext`` renders the option reference from the
``oslo.config.opts`` entry points of setup.cfg (so doctor-ext must be
installed, e.g. ``pip install -e .``); ``oslo_config.sphinxconfiggen``
writes the two sample files into ``_static/`` at every build, for download.
"""

import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))

# -- General configuration ------------------------------------------------

extensions = [
    'oslo_config.sphinxext',
    'oslo_config.sphinxconfiggen',
]

# Generated at build time from the entry points (the committed copies in
# etc/ are checked against the same generator by
# tests/unit/test_config_sample.py).
config_generator_config_file = [
    (os.path.join(ROOT, 'etc', 'ceilometer',
                  'doctor-ext-config-generator.conf'),
     '_static/ceilometer-doctor'),
    (os.path.join(ROOT, 'etc', 'doctor-monitor-config-generator.conf'),
     '_static/doctor-monitor'),
]

source_suffix = {'.rst': 'restructuredtext'}
master_doc = 'index'
root_doc = 'index'

project = 'doctor-ext'
copyright = '2026, doctor-ext developers'
author = 'doctor-ext developers'

exclude_patterns = ['_build']
pygments_style = 'sphinx'
# ``text`` in double backquotes is literal; a single-backquoted word is
# an error-prone default role, so leave it as it is.
add_function_parentheses = True
add_module_names = True

# -- Options for HTML output ----------------------------------------------

html_theme = 'alabaster'
html_theme_options = {
    'description': 'OPNFV Doctor fault management for Ceilometer and Aodh',
    'fixed_sidebar': True,
    'page_width': '1100px',
    'sidebar_width': '240px',
}
html_sidebars = {
    '**': ['about.html', 'navigation.html', 'relations.html',
           'searchbox.html'],
}
html_title = 'doctor-ext documentation'
html_last_updated_fmt = '%Y-%m-%d'

# -- Options for LaTeX output ---------------------------------------------

latex_documents = [
    ('index', 'doctor-ext.tex', 'doctor-ext Documentation',
     'doctor-ext developers', 'manual'),
]
