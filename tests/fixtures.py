"""Fixtures shared by the unit and functional tests."""

import concurrent.futures
import os
import re
import threading
import time
import uuid

import fixtures
import sqlalchemy as sa

POSTGRES_URL = os.environ.get('DOCTOR_TEST_POSTGRES',
                              'postgresql://postgres@127.0.0.1/postgres')
MYSQL_URL = os.environ.get('DOCTOR_TEST_MYSQL',
                           'mysql+pymysql://root@127.0.0.1/')
ETC_CEILOMETER = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'etc', 'ceilometer')
# testscenarios scenarios: a test class runs on both database servers.
BACKENDS = [('postgresql', {'backend': 'postgresql'}),
            ('mysql', {'backend': 'mysql'})]


def poll(predicate, timeout, what):
    """``predicate()``'s first true value, polled until ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError('timed out after %s s waiting for %s'
                         % (timeout, what))


def engine(test, conf, store=None, loaded=False):
    """An evaluator engine on ``conf``'s Aodh database.

    Cleaned up by ``test``, a :class:`RecordingNotifier` behind it; with
    ``loaded``, the alarms loaded, as in an agent (re)started now.
    """
    from doctor_ext.evaluator import engine as engine_mod
    from doctor_ext.evaluator import index as index_mod
    from doctor_ext.evaluator import store as store_mod
    from doctor_ext.evaluator import sync as sync_mod
    index = index_mod.AlarmIndex()
    store = store or store_mod.AodhStore(conf)
    test.addCleanup(store.dispose)
    sync = sync_mod.AlarmSync(conf, index, store)
    built = engine_mod.Engine(conf, index, store, RecordingNotifier(),
                              sync=sync)
    test.addCleanup(built.recorder.stop)
    if loaded:
        sync.load_all()
        sync.loaded.set()
    return built


def ceilometer_conf():
    """Ceilometer's configuration with our event definitions.

    ``ack_on_event_error = False`` as doctor-ext needs, and oslo.messaging's
    ``fake://`` transport.
    """
    import oslo_messaging

    from ceilometer import service
    from doctor_ext.notifier import http as notifier_http
    conf = service.prepare_service(argv=[], config_files=[])
    conf.set_override('event_pipeline_cfg_file',
                      os.path.join(ETC_CEILOMETER, 'event_pipeline.yaml'))
    conf.set_override('definitions_cfg_file',
                      os.path.join(ETC_CEILOMETER, 'event_definitions.yaml'),
                      group='event')
    conf.set_override('ack_on_event_error', False, group='notification')
    oslo_messaging.get_notification_transport(conf, url='fake://')
    conf.set_override('transport_url', 'fake://')
    # The consumer doubles listen on loopback, which the notifier's egress
    # policy refuses by default.
    notifier_http.register_opts(conf)
    conf.set_override('egress_allow', ['127.0.0.0/8'],
                      group=notifier_http.GROUP)
    return conf


def aodh_unreachable(conf):
    """Point the evaluator of ``conf`` at an Aodh database that is not there.

    The alarms never load: doctor:// refuses events (NotReady).
    """
    from doctor_ext.evaluator import engine as engine_mod
    from doctor_ext.evaluator import store as store_mod
    from doctor_ext.publisher import direct
    conf.register_opts([], group='doctor_nova')
    direct.register_opts(conf)
    store_mod.register_opts(conf)
    engine_mod.register_opts(conf)
    conf.set_override('aodh_connection',
                      'postgresql://nobody@127.0.0.1:1/none',
                      group='doctor_evaluator')


def store_conf(url):
    """A configuration whose evaluator store points at ``url``."""
    from oslo_config import cfg

    from doctor_ext.evaluator import store as store_mod
    conf = cfg.ConfigOpts()
    conf([], project='doctor-test')
    store_mod.register_opts(conf)
    conf.set_override('aodh_connection', url, group='doctor_evaluator')
    return conf


class NotifierConf(fixtures.Fixture):
    """A configuration with the notifier's options registered.

    ``conf``: the ``ConfigOpts``; ``set(**options)`` overrides options of
    ``[doctor_notifier]`` until the test ends.
    """

    def _setUp(self):
        from oslo_config import cfg
        from oslo_config import fixture as config_fixture

        from doctor_ext.notifier import http as notifier_http
        self.conf = cfg.ConfigOpts()
        self.conf([], default_config_files=[], default_config_dirs=[])
        notifier_http.register_opts(self.conf)
        self.config = self.useFixture(config_fixture.Config(self.conf))

    def set(self, **options):
        self.config.config(group='doctor_notifier', **options)


class AodhDatabase(fixtures.Fixture):
    """A throw-away database with Aodh's tables, on a real server.

    ``backend`` is ``postgresql`` or ``mysql``; the database is created
    with a unique name and dropped at clean-up. ``schema`` creates the
    tables from Aodh's models (functional tests run aodh-dbsync instead).
    """

    def __init__(self, backend='postgresql', schema=True):
        super().__init__()
        self.backend = backend
        self.schema = schema

    def _setUp(self):
        name = 'doctor_test_%s' % uuid.uuid4().hex[:12]
        admin_url = POSTGRES_URL if self.backend == 'postgresql' else \
            MYSQL_URL
        admin = sa.create_engine(admin_url, isolation_level='AUTOCOMMIT')
        with admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE %s' % name))
        self.addCleanup(admin.dispose)

        def drop():
            with admin.connect() as conn:
                force = ' WITH (FORCE)' if self.backend == 'postgresql' \
                    else ''
                conn.execute(sa.text('DROP DATABASE IF EXISTS %s%s'
                                     % (name, force)))
        self.addCleanup(drop)
        url = sa.engine.make_url(admin_url).set(database=name)
        self.url = url.render_as_string(hide_password=False)
        self.engine = sa.create_engine(self.url)
        self.addCleanup(self.engine.dispose)
        if self.schema:
            from aodh.storage.sqlalchemy import models

            from doctor_ext.db import migration
            models.Base.metadata.create_all(self.engine)
            migration.upgrade(self.url)

    def add_alarm(self, alarm_id=None, project_id='p1', event_type='*',
                  query=None, actions=('http://127.0.0.1:9/x',),
                  repeat_actions=False, state='ok', enabled=True,
                  name=None, severity='critical'):
        from aodh.storage.sqlalchemy import models
        alarm_id = alarm_id or str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(models.Alarm.__table__.insert().values(
                alarm_id=alarm_id, enabled=enabled, name=name or alarm_id,
                type='event', severity=severity, description='',
                user_id='u-' + project_id, project_id=project_id,
                state=state, state_reason='', ok_actions=[],
                alarm_actions=list(actions), insufficient_data_actions=[],
                repeat_actions=repeat_actions,
                rule={'event_type': event_type, 'query': query or []},
                time_constraints=[]))
        return alarm_id

    def state(self, alarm_id):
        return self.row(alarm_id)['state']

    def row(self, alarm_id):
        from aodh.storage.sqlalchemy import models
        table = models.Alarm.__table__
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(table).where(
                table.c.alarm_id == alarm_id)).one()._mapping)

    def history(self, alarm_id):
        from aodh.storage.sqlalchemy import models
        table = models.AlarmChange.__table__
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(table).where(table.c.alarm_id == alarm_id))]


GRANTS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'doc', 'source', 'grants')


def grant_statements(backend, database, user, password):
    """The install guide's grant SQL for the agent's user, one by one.

    For the database named ``database`` and the user ``user``.
    """
    with open(os.path.join(GRANTS, '%s.sql' % backend)) as f:
        text = '\n'.join(line for line in f.read().splitlines()
                         if not line.lstrip().startswith('--'))
    text = text.replace('doctor_agent', user).replace('AGENT_DBPASS',
                                                      password)
    if backend == 'mysql':
        text = re.sub(r'\baodh\.', database + '.', text)
    else:
        text = text.replace('DATABASE aodh', 'DATABASE ' + database)
    return [s.strip() for s in text.split(';') if s.strip()]


class AgentDbUser(fixtures.Fixture):
    """A database user with only the grants of the install guide.

    ``admin_url``: the database (of Aodh's and doctor-ext's tables) as its
    owner; ``url``: the same database as the new user, dropped at clean-up.
    """

    def __init__(self, admin_url):
        super().__init__()
        self.admin_url = admin_url

    def _setUp(self):
        admin_url = sa.engine.make_url(self.admin_url)
        if admin_url.drivername == 'mysql':
            admin_url = admin_url.set(drivername='mysql+pymysql')
        backend = admin_url.get_backend_name()
        user = 'doctor_agent_%s' % uuid.uuid4().hex[:10]
        password = uuid.uuid4().hex
        admin = sa.create_engine(admin_url, isolation_level='AUTOCOMMIT')
        self.addCleanup(admin.dispose)

        def drop():
            with admin.connect() as conn:
                if backend == 'postgresql':
                    conn.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM "
                        "pg_stat_activity WHERE usename = '%s'" % user)
                    conn.exec_driver_sql('DROP OWNED BY %s' % user)
                    conn.exec_driver_sql('DROP ROLE %s' % user)
                else:
                    conn.exec_driver_sql("DROP USER '%s'@'%%%%'" % user)
        statements = grant_statements(backend, admin_url.database, user,
                                      password)
        if backend == 'mysql':
            # PyMySQL formats the statement with its (no) parameters.
            statements = [s.replace('%', '%%') for s in statements]
        with admin.connect() as conn:
            conn.exec_driver_sql(statements[0])
            self.addCleanup(drop)
            for statement in statements[1:]:
                conn.exec_driver_sql(statement)
        self.user = user
        self.url = admin_url.set(username=user, password=password,
                                 ).render_as_string(hide_password=False)


class RecordingNotifier:
    """Stands in for the HTTP notifier: records what would be POSTed."""

    def __init__(self):
        self.sent = []
        self.lock = threading.Lock()

    def submit(self, notification):
        with self.lock:
            self.sent.append(notification)
        future = concurrent.futures.Future()
        future.set_result(True)
        return future

    def stop(self):
        pass


def report_notification(event_type, payload, publisher_id='doctor-monitor.t',
                        message_id=None, ctxt=None):
    """A notification as oslo.messaging hands it to Ceilometer's endpoint."""
    return {
        'ctxt': ctxt or {}, 'publisher_id': publisher_id,
        'event_type': event_type, 'priority': 'INFO',
        'payload': payload,
        'metadata': {'message_id': message_id or str(uuid.uuid4()),
                     'timestamp': '2026-11-24 00:00:00.000000'},
    }


_CONVERTER = []


def event_converter():
    """Ceilometer's event converter with etc/ceilometer's definitions.

    Made once per process. Making it runs Ceilometer's prepare_service,
    which sets up logging again: call it before a log fixture.
    """
    from ceilometer.event import converter
    from stevedore import extension
    if not _CONVERTER:
        _CONVERTER.append(converter.setup_events(
            ceilometer_conf(), extension.ExtensionManager(
                namespace='ceilometer.event.trait_plugin')))
    return _CONVERTER[0]


def report_event(event_type, payload, **kwargs):
    """The evaluator's Event that the agent makes of a notification.

    Through Ceilometer's own converter (:func:`event_converter`: what the
    inspector sees of a report); ``kwargs`` as for
    :func:`report_notification`.
    """
    from doctor_ext.evaluator import events
    notification = report_notification(event_type, payload, **kwargs)
    return events.from_ceilometer(event_converter().to_event(
        'info', notification))
