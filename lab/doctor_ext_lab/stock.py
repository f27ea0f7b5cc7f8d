"""The stock Doctor path, for side-by-side measurements.

What an operator runs without doctor-ext:

* a Doctor sample-style inspector (:class:`SampleInspector`): it keeps the
  server list of each host from start-up, takes the monitor's report by HTTP
  (``PUT /events``), forces the host's nova-compute service down and resets
  every VM of the host to error, one thread (and one Nova client) per VM;
  in ``shortcut`` mode it also puts one ``compute.instance.update`` (state
  error) per VM on the bus at once, as Doctor's "shortcut" does, so owners
  do not wait for Nova;
* ``ceilometer-agent-notification`` with Ceilometer's stock event
  definitions and event pipeline (``notifier://?topic=alarm.all``);
* ``aodh-listener`` (the stock event-alarm evaluator) and ``aodh-notifier``.

The behaviour modelled on Doctor's sample inspector is described from its
published design; no code of it is used.
"""

import http.server
import json
import os
import threading
import time
import uuid

import ceilometer
from keystoneauth1 import loading as ks_loading
from novaclient import client as nova_client
from oslo_config import cfg
import oslo_messaging

from doctor_ext.monitor import report
from doctor_ext_lab import services

STOCK_DATA = os.path.join(os.path.dirname(ceilometer.__file__), 'pipeline',
                          'data')


class StockStack(services.Stack):
    """aodh-api + aodh-listener + aodh-notifier + a stock Ceilometer agent."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.event_pipeline = os.path.join(self.workdir,
                                           'stock_event_pipeline.yaml')
        self.event_definitions = os.path.join(STOCK_DATA,
                                              'event_definitions.yaml')
        self.evaluators = []

    def aodh_sections(self):
        sections = super().aodh_sections()
        # Ceilometer's notifier publisher sends on its own control exchange;
        # the stock aodh-listener must listen there.
        sections['DEFAULT']['control_exchange'] = 'ceilometer'
        return sections

    def start_aodh(self):
        super().start_aodh()
        self.evaluators.append(self.start_aodh_service('aodh-listener'))
        self.start_aodh_service('aodh-notifier')

    def agent_sections(self, log_file, name):
        with open(self.event_pipeline, 'w') as f:
            f.write('---\nsources:\n  - name: event_source\n    events:\n'
                    '      - "*"\n    sinks:\n      - event_sink\n'
                    'sinks:\n  - name: event_sink\n    publishers:\n'
                    '      - notifier://?topic=alarm.all\n')
        return {
            'DEFAULT': {'transport_url': self.broker.url,
                        'log_file': log_file,
                        'event_pipeline_cfg_file': self.event_pipeline},
            'notification': {'pipelines': 'event',
                             'notification_control_exchanges': ['nova']},
            'event': {'definitions_cfg_file': self.event_definitions},
        }

    def wait_agent(self, proc, timeout=90):
        for queue in ('notifications.info', 'alarm.all.sample',
                      'alarming.sample'):
            services.wait_for(
                lambda: (self.broker.consumers(queue) or 0) >= 1, timeout,
                '%s to be consumed' % queue, proc.proc, proc.log_file)


class SampleInspector:
    """A Doctor sample-style inspector (see the module documentation)."""

    def __init__(self, nova_credentials, transport_url, shortcut=True):
        self._creds = dict(nova_credentials)
        self.shortcut = shortcut
        self.servers = {}          # host -> [(server_id, project, user)]
        self._session = None
        self._nova = None
        self._httpd = None
        self._notifier = None
        self._transport_url = transport_url
        self.handled = []          # (host, received, shortcut_sent, fenced)

    # -- set-up ------------------------------------------------------------
    def _client(self):
        if self._session is None:
            conf = cfg.ConfigOpts()
            conf([], project='sample-inspector')
            ks_loading.register_auth_conf_options(conf, 'nova')
            conf.register_opts(ks_loading.get_auth_plugin_conf_options(
                'password'), group='nova')
            for k, v in self._creds.items():
                conf.set_override(k, v, group='nova')
            auth = ks_loading.load_auth_from_conf_options(conf, 'nova')
            from keystoneauth1 import session
            self._session = session.Session(auth=auth)
        return nova_client.Client('2.11', session=self._session)

    def start(self):
        self._nova = self._client()
        self.refresh_servers()
        conf = cfg.ConfigOpts()
        conf([], project='sample-inspector')
        # Nova's exchange, where Ceilometer listens for instance updates.
        transport = report.get_transport(conf, url=self._transport_url,
                                         exchange='nova')
        self._notifier = oslo_messaging.Notifier(
            transport, driver='messagingv2', topics=['notifications'],
            publisher_id='doctor-inspector')
        inspector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_PUT(self):
                length = int(self.headers.get('Content-Length', 0))
                body = self.rfile.read(length)
                inspector.handle_events(json.loads(body), time.time())
                self.send_response(200)
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'OK')

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever,
                         daemon=True).start()
        return self

    @property
    def url(self):
        return 'http://127.0.0.1:%d/events' % self._httpd.server_address[1]

    def refresh_servers(self):
        self.servers = {}
        # limit=-1: every page (Nova returns [api] max_limit servers a page).
        for s in self._nova.servers.list(search_opts={'all_tenants': True},
                                         limit=-1):
            host = getattr(s, 'OS-EXT-SRV-ATTR:host', None)
            self.servers.setdefault(host, []).append(
                (s.id, s.tenant_id, s.user_id))

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # -- the fault ---------------------------------------------------------
    def handle_events(self, events, received):
        for event in events:
            if event.get('type') != 'compute.host.down':
                continue
            host = event['details']['hostname']
            vms = list(self.servers.get(host, []))
            shortcut_sent = None
            if self.shortcut:
                for vm, project, user in vms:
                    self._notifier.info({}, 'compute.instance.update', {
                        'instance_id': vm, 'tenant_id': project,
                        'user_id': user, 'state': 'error',
                        'old_state': 'active', 'host': host,
                        'state_description': '',
                        'message_id': str(uuid.uuid4())})
                shortcut_sent = time.time()
            threads = [threading.Thread(target=self._force_down,
                                        args=(host,))]
            for vm, _, _ in vms:
                threads.append(threading.Thread(target=self._reset,
                                                args=(vm,)))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.handled.append((host, received, shortcut_sent, time.time()))

    def _force_down(self, host):
        self._nova.services.force_down(host, 'nova-compute', True)

    def _reset(self, vm):
        # One client per VM, as the sample inspector keeps one per VM.
        nova_client.Client('2.11', session=self._session).servers.reset_state(
            vm, 'error')
