"""``doctor-ext-dbsync``: create or upgrade doctor-ext's tables.

In: the ``[doctor_evaluator] aodh_connection`` of the config files. Out:
the tables at the newest revision (:mod:`doctor_ext.db.migration`).
"""

import sys

from oslo_config import cfg

from doctor_ext.db import migration
from doctor_ext.evaluator import store


def main(argv=None):
    """``doctor-ext-dbsync``: create or upgrade doctor-ext's tables."""
    conf = cfg.ConfigOpts()
    store.register_opts(conf)
    conf(sys.argv[1:] if argv is None else argv, project='ceilometer',
         description='Create or upgrade the tables of doctor-ext in the '
                     'Aodh database named by [doctor_evaluator] '
                     'aodh_connection.')
    if not conf.doctor_evaluator.aodh_connection:
        sys.stderr.write('doctor-ext-dbsync: [doctor_evaluator] '
                         'aodh_connection is not set\n')
        return 2
    migration.upgrade(conf.doctor_evaluator.aodh_connection)
    print('doctor-ext tables at revision %s' % migration.head())
    return 0
