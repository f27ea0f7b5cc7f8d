"""The Nova double follows the compute API reference, over real HTTP."""

from concurrent import futures
import http.client
import json
import socket
import threading
import time
import urllib.parse
import uuid

from oslo_config import cfg
import oslo_messaging
from oslotest import base
import requests

from doctor_ext_lab import nova as nova_double


class Client:
    """A bare HTTP client of the double (no OpenStack library involved)."""

    def __init__(self, nova):
        self.nova = nova
        self.http = requests.Session()

    def token(self, user='admin'):
        u = {'admin': self.nova.admin, 'demo': self.nova.member}[user]
        identity = {'methods': ['password'], 'password': {
            'user': {'name': u.name, 'domain': {'id': 'default'},
                     'password': u.password}}}
        scope = {'project': {'name': u.project_name,
                             'domain': {'name': 'Default'}}}
        resp = self.http.post(self.nova.auth_url + '/auth/tokens', json={
            'auth': {'identity': identity, 'scope': scope}})
        assert resp.status_code == 201, resp.text
        return resp.headers['X-Subject-Token']

    def call(self, method, path, token=None, version=None, body=None,
             headers=None, legacy_version=None, timeout=10):
        hdrs = dict(headers or {})
        if token:
            hdrs['X-Auth-Token'] = token
        if version:
            hdrs['OpenStack-API-Version'] = 'compute %s' % version
        if legacy_version:
            hdrs['X-OpenStack-Nova-API-Version'] = legacy_version
        url = path if path.startswith('http') else (
            self.nova.base_url + path)
        return self.http.request(method, url, json=body, headers=hdrs,
                                 timeout=timeout)


class NovaDoubleTestCase(base.BaseTestCase):

    double_kwargs = {}

    def setUp(self):
        super().setUp()
        self.nova = self.useFixture(
            nova_double.NovaDoubleFixture(**self.double_kwargs)).nova
        self.client = Client(self.nova)
        self.addCleanup(self.client.http.close)

    def admin_token(self):
        return self.client.token('admin')

    def member_token(self):
        return self.client.token('demo')


class TestKeystoneAndVersions(NovaDoubleTestCase):

    def test_listens_on_loopback_only(self):
        self.assertEqual('127.0.0.1', self.nova._httpd.server_address[0])
        self.assertTrue(self.nova.auth_url.startswith('http://127.0.0.1:'))

    def test_compute_version_documents(self):
        resp = self.client.call('GET', '/compute/')
        self.assertEqual(200, resp.status_code)
        current = [v for v in resp.json()['versions'] if v['id'] == 'v2.1']
        self.assertEqual('2.95', current[0]['version'])
        self.assertEqual('2.1', current[0]['min_version'])
        resp = self.client.call('GET', '/compute/v2.1/')
        self.assertEqual(200, resp.status_code)
        version = resp.json()['version']
        self.assertEqual(('v2.1', 'CURRENT', '2.95', '2.1'),
                         (version['id'], version['status'],
                          version['version'], version['min_version']))

    def test_identity_version_document(self):
        resp = self.client.call('GET', '/identity/v3')
        self.assertEqual(200, resp.status_code)
        self.assertEqual('stable', resp.json()['version']['status'])
        self.assertTrue(resp.json()['version']['id'].startswith('v3'))

    def test_token_has_roles_and_catalog(self):
        resp = self.client.http.post(
            self.nova.auth_url + '/auth/tokens', json={'auth': {
                'identity': {'methods': ['password'], 'password': {
                    'user': {'name': 'admin', 'domain': {'id': 'default'},
                             'password': self.nova.admin.password}}},
                'scope': {'project': {'name': 'admin',
                                      'domain': {'id': 'default'}}}}})
        self.assertEqual(201, resp.status_code)
        self.assertTrue(resp.headers['X-Subject-Token'])
        token = resp.json()['token']
        self.assertIn('admin', [r['name'] for r in token['roles']])
        self.assertEqual(self.nova.admin.project_id, token['project']['id'])
        compute = [s for s in token['catalog'] if s['type'] == 'compute'][0]
        self.assertEqual(
            {('public', 'RegionOne', self.nova.compute_url),
             ('internal', 'RegionOne', self.nova.compute_url),
             ('admin', 'RegionOne', self.nova.compute_url)},
            {(e['interface'], e['region'], e['url'])
             for e in compute['endpoints']})
        self.assertTrue(self.nova.compute_url.endswith('/compute/v2.1'))

    def test_member_token_has_no_admin_role(self):
        token = self.member_token()
        resp = self.client.call(
            'GET', '/identity/v3/auth/tokens', token=token,
            headers={'X-Subject-Token': token})
        self.assertEqual(200, resp.status_code)
        roles = [r['name'] for r in resp.json()['token']['roles']]
        self.assertNotIn('admin', roles)
        self.assertIn('member', roles)

    def test_wrong_password_or_project_is_401(self):
        for user, project in ((('admin', 'wrong'), 'admin'),
                              (('admin', self.nova.admin.password), 'demo'),
                              (('nobody', 'x'), 'admin')):
            resp = self.client.http.post(
                self.nova.auth_url + '/auth/tokens', json={'auth': {
                    'identity': {'methods': ['password'], 'password': {
                        'user': {'name': user[0], 'password': user[1],
                                 'domain': {'id': 'default'}}}},
                    'scope': {'project': {'name': project,
                                          'domain': {'id': 'default'}}}}})
            self.assertEqual(401, resp.status_code, (user, project))
            self.assertEqual(401, resp.json()['error']['code'])
            self.assertNotIn('X-Subject-Token', resp.headers)

    def test_missing_unknown_or_revoked_token_is_401(self):
        resp = self.client.call('GET', '/compute/v2.1/servers')
        self.assertEqual(401, resp.status_code)
        self.assertIn('Keystone uri=', resp.headers['WWW-Authenticate'])
        resp = self.client.call('GET', '/compute/v2.1/servers',
                                token=uuid.uuid4().hex)
        self.assertEqual(401, resp.status_code)
        token = self.admin_token()
        self.assertEqual(200, self.client.call(
            'GET', '/compute/v2.1/servers', token=token).status_code)
        self.nova.revoke_tokens()
        self.assertEqual(401, self.client.call(
            'GET', '/compute/v2.1/servers', token=token).status_code)
        self.assertIn(token, self.nova.issued_tokens)


class TestMicroversions(NovaDoubleTestCase):

    def setUp(self):
        super().setUp()
        self.token = self.admin_token()

    def served(self, **kwargs):
        resp = self.client.call('GET', '/compute/v2.1/os-services',
                                token=self.token, **kwargs)
        return resp

    def test_default_is_minimum(self):
        resp = self.served()
        self.assertEqual(200, resp.status_code)
        self.assertEqual('compute 2.1', resp.headers['OpenStack-API-Version'])
        self.assertEqual('2.1', resp.headers['X-OpenStack-Nova-API-Version'])

    def test_both_headers_echoed(self):
        resp = self.served(version='2.60')
        self.assertEqual('compute 2.60',
                         resp.headers['OpenStack-API-Version'])
        self.assertEqual('2.60', resp.headers['X-OpenStack-Nova-API-Version'])
        self.assertIn('OpenStack-API-Version', resp.headers['Vary'])
        resp = self.served(legacy_version='2.12')
        self.assertEqual('compute 2.12',
                         resp.headers['OpenStack-API-Version'])

    def test_new_header_wins_over_legacy(self):
        resp = self.served(version='2.40', legacy_version='2.12')
        self.assertEqual('2.40', resp.headers['X-OpenStack-Nova-API-Version'])

    def test_latest_is_maximum(self):
        resp = self.served(version='latest')
        self.assertEqual('compute 2.95',
                         resp.headers['OpenStack-API-Version'])

    def test_above_maximum_is_406(self):
        resp = self.served(version='2.96')
        self.assertEqual(406, resp.status_code)
        self.assertIn('maximum is 2.95', resp.text)
        self.assertEqual(406, self.served(version='3.0').status_code)
        self.assertEqual(406, self.served(version='2.0').status_code)

    def test_malformed_is_400(self):
        self.assertEqual(400, self.served(version='2.x').status_code)

    def test_recorded_in_call_log(self):
        self.served(version='2.53')
        call = self.nova.calls_to('/os-services$')[-1]
        self.assertEqual(('GET', '2.53', 200, 'admin'),
                         (call.method, call.microversion, call.status,
                          call.user))
        self.assertEqual('2.53', call['microversion'])


class TestLowMaxVersion(NovaDoubleTestCase):

    double_kwargs = {'max_version': '2.52'}

    def test_version_document_and_406(self):
        resp = self.client.call('GET', '/compute/v2.1/')
        self.assertEqual('2.52', resp.json()['version']['version'])
        resp = self.client.call('GET', '/compute/v2.1/os-services',
                                token=self.admin_token(), version='2.53')
        self.assertEqual(406, resp.status_code)


class TestServices(NovaDoubleTestCase):

    def setUp(self):
        super().setUp()
        self.token = self.admin_token()
        self.nova.add_host('compute-1')
        self.nova.add_host('compute-2')

    def services(self, version, query='?host=compute-1&binary=nova-compute'):
        resp = self.client.call('GET', '/compute/v2.1/os-services' + query,
                                token=self.token, version=version)
        self.assertEqual(200, resp.status_code)
        return resp.json()['services']

    def test_list_filters_and_fields(self):
        services = self.services('2.53')
        self.assertEqual(1, len(services))
        svc = services[0]
        self.assertEqual(
            {'id', 'binary', 'host', 'zone', 'status', 'state',
             'forced_down', 'disabled_reason', 'updated_at'}, set(svc))
        self.assertEqual(('nova-compute', 'compute-1', 'enabled', 'up',
                          False), (svc['binary'], svc['host'],
                                   svc['status'], svc['state'],
                                   svc['forced_down']))
        everything = self.services('2.53', query='')
        self.assertEqual({'nova-compute', 'nova-scheduler',
                          'nova-conductor'},
                         {s['binary'] for s in everything})

    def test_id_is_uuid_from_253_int_before(self):
        uuid_id = self.services('2.53')[0]['id']
        self.assertEqual(self.nova.service('compute-1')['uuid'], uuid_id)
        uuid.UUID(uuid_id)
        self.assertIsInstance(self.services('2.52')[0]['id'], int)

    def test_forced_down_field_from_211(self):
        self.assertNotIn('forced_down', self.services('2.10')[0])
        self.assertIn('forced_down', self.services('2.11')[0])

    def test_force_down_by_host_and_binary_at_211(self):
        body = {'host': 'compute-1', 'binary': 'nova-compute',
                'forced_down': True}
        resp = self.client.call('PUT', '/compute/v2.1/os-services/force-down',
                                token=self.token, version='2.11', body=body)
        self.assertEqual(200, resp.status_code)
        self.assertEqual(body, resp.json()['service'])
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        self.assertFalse(self.nova.service('compute-2')['forced_down'])
        self.assertEqual('down', self.services('2.52')[0]['state'])

    def test_force_down_action_only_211_to_252(self):
        body = {'host': 'compute-1', 'binary': 'nova-compute',
                'forced_down': True}
        # Before 2.11 the action does not exist.
        resp = self.client.call('PUT', '/compute/v2.1/os-services/force-down',
                                token=self.token, version='2.10', body=body)
        self.assertEqual(404, resp.status_code)
        # From 2.53 the path segment must be a service uuid (Nova: 400).
        resp = self.client.call('PUT', '/compute/v2.1/os-services/force-down',
                                token=self.token, version='2.53', body=body)
        self.assertEqual(400, resp.status_code)
        self.assertIn('Invalid uuid', resp.text)
        self.assertFalse(self.nova.service('compute-1')['forced_down'])
        resp = self.client.call(
            'PUT', '/compute/v2.1/os-services/force-down', token=self.token,
            version='2.52', body={'host': 'compute-1',
                                  'binary': 'nova-compute'})
        self.assertEqual(400, resp.status_code)
        resp = self.client.call(
            'PUT', '/compute/v2.1/os-services/force-down', token=self.token,
            version='2.52', body=dict(body, host='nowhere'))
        self.assertEqual(404, resp.status_code)

    def test_force_down_by_uuid_at_253(self):
        svc_id = self.nova.service('compute-1')['uuid']
        resp = self.client.call(
            'PUT', '/compute/v2.1/os-services/%s' % svc_id, token=self.token,
            version='2.53', body={'forced_down': True})
        self.assertEqual(200, resp.status_code)
        view = resp.json()['service']
        self.assertEqual((svc_id, True, 'down'),
                         (view['id'], view['forced_down'], view['state']))
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        resp = self.client.call(
            'PUT', '/compute/v2.1/os-services/%s' % svc_id, token=self.token,
            version='2.53', body={'forced_down': False})
        self.assertFalse(resp.json()['service']['forced_down'])

    def test_update_by_uuid_validation(self):
        svc_id = self.nova.service('compute-1')['uuid']
        path = '/compute/v2.1/os-services/%s' % svc_id
        cases = [
            (path, {}, 400),
            (path, {'forced_down': 'yes'}, 400),
            (path, {'bogus': True}, 400),
            (path, {'status': 'enabled', 'disabled_reason': 'x'}, 400),
            ('/compute/v2.1/os-services/%s' % uuid.uuid4(),
             {'forced_down': True}, 404),
            ('/compute/v2.1/os-services/%s'
             % self.nova.service('controller', 'nova-scheduler')['uuid'],
             {'forced_down': True}, 400),
        ]
        for url, body, status in cases:
            resp = self.client.call('PUT', url, token=self.token,
                                    version='2.53', body=body)
            self.assertEqual(status, resp.status_code, (url, body))
        self.assertFalse(self.nova.service('compute-1')['forced_down'])

    def test_disable_and_enable_by_uuid(self):
        svc_id = self.nova.service('compute-1')['uuid']
        path = '/compute/v2.1/os-services/%s' % svc_id
        resp = self.client.call('PUT', path, token=self.token, version='2.53',
                                body={'status': 'disabled',
                                      'disabled_reason': 'maintenance'})
        self.assertEqual(('disabled', 'maintenance'),
                         (resp.json()['service']['status'],
                          resp.json()['service']['disabled_reason']))
        self.assertEqual('disabled', self.nova.service('compute-1')['status'])
        resp = self.client.call('PUT', path, token=self.token, version='2.53',
                                body={'status': 'enabled'})
        self.assertEqual(('enabled', None),
                         (resp.json()['service']['status'],
                          resp.json()['service']['disabled_reason']))

    def test_legacy_disable_log_reason(self):
        resp = self.client.call(
            'PUT', '/compute/v2.1/os-services/disable-log-reason',
            token=self.token, version='2.52',
            body={'host': 'compute-2', 'binary': 'nova-compute',
                  'disabled_reason': 'fault'})
        self.assertEqual(200, resp.status_code)
        self.assertEqual(('disabled', 'fault'),
                         (self.nova.service('compute-2')['status'],
                          self.nova.service('compute-2')['disabled_reason']))

    def test_services_are_admin_only(self):
        member = self.member_token()
        svc_id = self.nova.service('compute-1')['uuid']
        resp = self.client.call('GET', '/compute/v2.1/os-services',
                                token=member, version='2.53')
        self.assertEqual(403, resp.status_code)
        self.assertIn('os-services:list', resp.json()['forbidden']['message'])
        resp = self.client.call(
            'PUT', '/compute/v2.1/os-services/%s' % svc_id, token=member,
            version='2.53', body={'forced_down': True})
        self.assertEqual(403, resp.status_code)
        resp = self.client.call(
            'PUT', '/compute/v2.1/os-services/force-down', token=member,
            version='2.11', body={'host': 'compute-1',
                                  'binary': 'nova-compute',
                                  'forced_down': True})
        self.assertEqual(403, resp.status_code)
        self.assertFalse(self.nova.service('compute-1')['forced_down'])


class TestServers(NovaDoubleTestCase):

    double_kwargs = {'max_limit': 7}

    def setUp(self):
        super().setUp()
        self.token = self.admin_token()
        self.on_1 = [self.nova.add_server('compute-1', 'project-a',
                                          user_id='user-a')
                     for _ in range(3)]
        self.on_2 = [self.nova.add_server('compute-2', 'project-b')]
        self.own = self.nova.add_server(
            'compute-2', self.nova.member.project_id, name='mine')

    def list(self, query, token=None, path='/compute/v2.1/servers/detail'):
        resp = self.client.call('GET', path + query,
                                token=token or self.token, version='2.95')
        return resp

    def test_all_tenants_and_host_filter(self):
        resp = self.list('?all_tenants=1&host=compute-1')
        self.assertEqual(200, resp.status_code)
        servers = resp.json()['servers']
        self.assertEqual(set(self.on_1), {s['id'] for s in servers})
        for s in servers:
            self.assertEqual('compute-1', s['OS-EXT-SRV-ATTR:host'])
            self.assertEqual('active', s['OS-EXT-STS:vm_state'])
            self.assertEqual('ACTIVE', s['status'])
            self.assertEqual('project-a', s['tenant_id'])
            self.assertEqual('user-a', s['user_id'])
            self.assertTrue(s['name'])

    def test_admin_without_all_tenants_sees_own_project_only(self):
        self.assertEqual([], self.list('?host=compute-1').json()['servers'])

    def test_summary_list_has_id_name_links(self):
        servers = self.list('?all_tenants=True',
                            path='/compute/v2.1/servers').json()['servers']
        self.assertEqual({'id', 'name', 'links'}, set(servers[0]))

    def test_pagination_with_next_links(self):
        extra = [self.nova.add_server('compute-3', 'project-c')
                 for _ in range(20)]
        url = self.nova.compute_url + '/servers/detail?all_tenants=1&limit=6'
        pages = []
        while url:
            resp = self.client.call('GET', url, token=self.token,
                                    version='2.95')
            self.assertEqual(200, resp.status_code)
            body = resp.json()
            pages.append([s['id'] for s in body['servers']])
            nexts = [link['href'] for link in body.get('servers_links', [])
                     if link['rel'] == 'next']
            url = nexts[0] if nexts else None
            if url:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(
                    url).query)
                self.assertEqual(['6'], query['limit'])
                self.assertEqual(['1'], query['all_tenants'])
                self.assertEqual([pages[-1][-1]], query['marker'])
            self.assertLess(len(pages), 10)
        ids = [i for page in pages for i in page]
        self.assertEqual([6, 6, 6, 6, 1], [len(p) for p in pages])
        everything = self.on_1 + self.on_2 + [self.own] + extra
        self.assertEqual(len(everything), len(ids))
        # Nova's default order: newest first.
        self.assertEqual(list(reversed(everything)), ids)

    def test_max_limit_caps_pages(self):
        body = self.list('?all_tenants=1&limit=100').json()
        self.assertEqual(5, len(body['servers']))
        self.assertNotIn('servers_links', body)
        for _ in range(5):
            self.nova.add_server('compute-3', 'project-c')
        body = self.list('?all_tenants=1').json()
        self.assertEqual(7, len(body['servers']))
        self.assertIn('servers_links', body)

    def test_bad_marker_and_limit(self):
        self.assertEqual(400, self.list(
            '?all_tenants=1&marker=%s' % uuid.uuid4()).status_code)
        self.assertEqual(400, self.list(
            '?all_tenants=1&limit=-1').status_code)
        self.assertEqual(400, self.list(
            '?all_tenants=maybe').status_code)

    def test_get_server(self):
        resp = self.client.call(
            'GET', '/compute/v2.1/servers/%s' % self.on_1[0],
            token=self.token, version='2.95')
        self.assertEqual(200, resp.status_code)
        server = resp.json()['server']
        self.assertEqual((self.on_1[0], 'compute-1', 'UP'),
                         (server['id'], server['OS-EXT-SRV-ATTR:host'],
                          server['host_status']))
        resp = self.client.call(
            'GET', '/compute/v2.1/servers/%s' % uuid.uuid4(),
            token=self.token)
        self.assertEqual(404, resp.status_code)
        self.assertIn('itemNotFound', resp.json())

    def test_reset_state(self):
        path = '/compute/v2.1/servers/%s/action' % self.on_1[0]
        resp = self.client.call('POST', path, token=self.token,
                                body={'os-resetState': {'state': 'error'}})
        self.assertEqual(202, resp.status_code)
        self.assertEqual(b'', resp.content)
        self.assertEqual('0', resp.headers['Content-Length'])
        self.assertEqual(('error', 'ERROR'),
                         (self.nova.server(self.on_1[0])['vm_state'],
                          self.nova.server(self.on_1[0])['status']))
        self.assertEqual('ACTIVE', self.nova.server(self.on_1[1])['status'])
        resp = self.client.call('POST', path, token=self.token,
                                body={'os-resetState': {'state': 'active'}})
        self.assertEqual(202, resp.status_code)
        self.assertEqual('ACTIVE', self.nova.server(self.on_1[0])['status'])

    def test_reset_state_validation(self):
        path = '/compute/v2.1/servers/%s/action' % self.on_1[0]
        for body in ({'os-resetState': {'state': 'paused'}},
                     {'os-resetState': {}}, {'os-resetState': None},
                     {'noSuchAction': {}}):
            resp = self.client.call('POST', path, token=self.token,
                                    body=body)
            self.assertEqual(400, resp.status_code, body)
        resp = self.client.call(
            'POST', '/compute/v2.1/servers/%s/action' % uuid.uuid4(),
            token=self.token, body={'os-resetState': {'state': 'error'}})
        self.assertEqual(404, resp.status_code)
        self.assertEqual('ACTIVE', self.nova.server(self.on_1[0])['status'])

    def test_member_policies(self):
        member = self.member_token()
        # all_tenants is admin only.
        resp = self.list('?all_tenants=1', token=member)
        self.assertEqual(403, resp.status_code)
        self.assertIn('get_all_tenants', resp.text)
        # A member sees its project only; the admin-only host filter is
        # ignored, as the API reference says, and host attributes hidden.
        servers = self.list('?host=compute-1', token=member).json()[
            'servers']
        self.assertEqual([self.own], [s['id'] for s in servers])
        self.assertNotIn('OS-EXT-SRV-ATTR:host', servers[0])
        # Another project's server does not exist for it.
        resp = self.client.call(
            'GET', '/compute/v2.1/servers/%s' % self.on_1[0], token=member)
        self.assertEqual(404, resp.status_code)
        resp = self.client.call(
            'POST', '/compute/v2.1/servers/%s/action' % self.on_1[0],
            token=member, body={'os-resetState': {'state': 'error'}})
        self.assertEqual(404, resp.status_code)
        # Its own server: reset-state is admin only.
        resp = self.client.call(
            'POST', '/compute/v2.1/servers/%s/action' % self.own,
            token=member, body={'os-resetState': {'state': 'error'}})
        self.assertEqual(403, resp.status_code)
        self.assertIn('reset_state', resp.text)
        self.assertEqual('ACTIVE', self.nova.server(self.own)['status'])
        # But it may delete it.
        resp = self.client.call(
            'DELETE', '/compute/v2.1/servers/%s' % self.own, token=member)
        self.assertEqual(204, resp.status_code)
        self.assertIsNone(self.nova.server(self.own))

    def test_live_migrate_and_migrate(self):
        self.nova.add_host('compute-3')
        path = '/compute/v2.1/servers/%s/action' % self.on_1[0]
        resp = self.client.call(
            'POST', path, token=self.token, version='2.30',
            body={'os-migrateLive': {'host': 'compute-3',
                                     'block_migration': 'auto'}})
        self.assertEqual(202, resp.status_code)
        self.assertEqual('compute-3', self.nova.server(self.on_1[0])['host'])
        resp = self.client.call('POST', path, token=self.token,
                                body={'migrate': None})
        self.assertEqual(202, resp.status_code)
        self.assertNotEqual('compute-3',
                            self.nova.server(self.on_1[0])['host'])
        self.assertEqual('ACTIVE', self.nova.server(self.on_1[0])['status'])
        # A host given to migrate needs 2.56.
        resp = self.client.call('POST', path, token=self.token,
                                version='2.55',
                                body={'migrate': {'host': 'compute-3'}})
        self.assertEqual(400, resp.status_code)
        resp = self.client.call('POST', path, token=self.token,
                                version='2.56',
                                body={'migrate': {'host': 'compute-3'}})
        self.assertEqual(202, resp.status_code)
        self.assertEqual('compute-3', self.nova.server(self.on_1[0])['host'])

    def test_move_refusals(self):
        path = '/compute/v2.1/servers/%s/action' % self.on_1[0]
        live = {'os-migrateLive': {'host': None, 'block_migration': 'auto'}}
        # compute-2 is the only other host: disable it -> no valid host.
        other = '/compute/v2.1/os-services/%s' % self.nova.service(
            'compute-2')['uuid']
        self.client.call('PUT', other, token=self.token, version='2.53',
                         body={'status': 'disabled'})
        resp = self.client.call('POST', path, token=self.token,
                                version='2.30', body=live)
        self.assertEqual(400, resp.status_code)
        self.assertIn('No valid host', resp.text)
        self.client.call('PUT', other, token=self.token, version='2.53',
                         body={'status': 'enabled'})
        # The source host is down -> 409.
        self.nova.set_service_alive('compute-1', False)
        resp = self.client.call('POST', path, token=self.token,
                                version='2.30', body=live)
        self.assertEqual(409, resp.status_code)
        self.nova.set_service_alive('compute-1', True)
        # An instance in error cannot be live-migrated.
        self.client.call('POST', path, token=self.token,
                         body={'os-resetState': {'state': 'error'}})
        resp = self.client.call('POST', path, token=self.token,
                                version='2.30', body=live)
        self.assertEqual(409, resp.status_code)
        self.assertEqual('compute-1', self.nova.server(self.on_1[0])['host'])
        member = self.member_token()
        resp = self.client.call(
            'POST', '/compute/v2.1/servers/%s/action' % self.own,
            token=member, version='2.30', body=live)
        self.assertEqual(403, resp.status_code)

    def test_delete(self):
        path = '/compute/v2.1/servers/%s' % self.on_2[0]
        self.assertEqual(204, self.client.call(
            'DELETE', path, token=self.token).status_code)
        self.assertEqual(404, self.client.call(
            'GET', path, token=self.token).status_code)
        self.assertEqual([self.own],
                         [s['id'] for s in self.nova.servers_on('compute-2')])

    def test_host_status_follows_service(self):
        svc_id = self.nova.service('compute-1')['uuid']
        self.client.call('PUT', '/compute/v2.1/os-services/%s' % svc_id,
                         token=self.token, version='2.53',
                         body={'forced_down': True})
        resp = self.client.call(
            'GET', '/compute/v2.1/servers/%s' % self.on_1[0],
            token=self.token, version='2.16')
        self.assertEqual('DOWN', resp.json()['server']['host_status'])
        resp = self.client.call(
            'GET', '/compute/v2.1/servers/%s' % self.on_1[0],
            token=self.token, version='2.15')
        self.assertNotIn('host_status', resp.json()['server'])


class TestFaultKnobs(NovaDoubleTestCase):

    double_kwargs = {'hang_timeout': 30}

    def setUp(self):
        super().setUp()
        self.token = self.admin_token()
        self.server = self.nova.add_server('compute-1', 'p')
        self.action = '/compute/v2.1/servers/%s/action' % self.server

    def reset(self, timeout=10):
        return self.client.call('POST', self.action, token=self.token,
                                body={'os-resetState': {'state': 'error'}},
                                timeout=timeout)

    def test_fail_next_n_calls(self):
        self.nova.fail(503, count=2)
        self.assertEqual(503, self.reset().status_code)
        resp = self.reset()
        self.assertEqual(503, resp.status_code)
        self.assertEqual(503, resp.json()['serviceUnavailable']['code'])
        self.assertEqual('ACTIVE', self.nova.server(self.server)['status'])
        self.assertEqual(202, self.reset().status_code)
        self.assertEqual('ERROR', self.nova.server(self.server)['status'])
        self.assertEqual([503, 503, 202],
                         [c.status for c in self.nova.calls_to('/action$')])

    def test_fail_matching_path_until_cleared(self):
        self.nova.fail(500, path_regex='/action$')
        for _ in range(3):
            self.assertEqual(500, self.reset().status_code)
        self.assertEqual(200, self.client.call(
            'GET', '/compute/v2.1/servers', token=self.token).status_code)
        # Version documents and Keystone are not API calls.
        self.nova.fail(500)
        self.assertEqual(200, self.client.call(
            'GET', '/compute/v2.1/').status_code)
        self.assertTrue(self.admin_token())
        self.nova.clear_faults()
        self.assertEqual(202, self.reset().status_code)

    def test_fail_by_method(self):
        self.nova.fail(500, method='POST')
        self.assertEqual(200, self.client.call(
            'GET', '/compute/v2.1/servers', token=self.token).status_code)
        self.assertEqual(500, self.reset().status_code)

    def test_latency(self):
        self.nova.set_latency(0.3, path_regex='/action$')
        started = time.monotonic()
        self.assertEqual(202, self.reset().status_code)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertGreaterEqual(self.nova.calls_to('/action$')[-1].duration,
                                0.3)
        self.client.call('GET', '/compute/v2.1/servers', token=self.token)
        self.assertLess(self.nova.calls_to('/servers$')[-1].duration, 0.3)
        self.nova.set_latency(0)
        self.reset()
        self.assertLess(self.nova.calls_to('/action$')[-1].duration, 0.3)

    def test_hang_until_released(self):
        self.nova.hang('/action$')
        result = {}
        worker = threading.Thread(
            target=lambda: result.update(resp=self.reset()))
        worker.start()
        self.assertTrue(self.nova.wait_held(1, timeout=5))
        # Other calls are served meanwhile.
        self.assertEqual(200, self.client.call(
            'GET', '/compute/v2.1/servers', token=self.admin_token())
            .status_code)
        self.assertNotIn('resp', result)
        self.assertEqual('ACTIVE', self.nova.server(self.server)['status'])
        self.nova.release()
        worker.join(10)
        self.assertEqual(202, result['resp'].status_code)
        self.assertEqual(0, self.nova.held)
        self.assertEqual('ERROR', self.nova.server(self.server)['status'])

    def test_hung_call_makes_client_time_out(self):
        self.nova.hang('/action$')
        self.assertRaises(requests.exceptions.Timeout, self.reset,
                          timeout=0.2)
        self.assertEqual(1, self.nova.held)

    def test_hang_gives_up_after_hang_timeout(self):
        self.nova.hang_timeout = 0.2
        self.nova.hang('/action$')
        self.assertEqual(202, self.reset().status_code)
        self.assertGreaterEqual(self.nova.calls_to('/action$')[-1].duration,
                                0.2)

    def test_disconnect(self):
        self.nova.disconnect(count=1, path_regex='/action$')
        self.assertRaises(requests.exceptions.ConnectionError, self.reset)
        self.assertEqual(202, self.reset().status_code)
        self.assertEqual([0, 202],
                         [c.status for c in self.nova.calls_to('/action$')])

    def test_call_log(self):
        self.nova.clear_calls()
        self.reset()
        call = self.nova.calls[-1]
        self.assertEqual(('POST', self.action, '2.1', 202, 'admin'),
                         (call.method, call.path, call.microversion,
                          call.status, call.user))
        self.assertEqual({'os-resetState': {'state': 'error'}},
                         json.loads(call['body']))
        self.assertLessEqual(call.time, time.time())
        self.assertTrue(self.nova.wait_calls(1, '/action$', 'POST', 1))

    def test_no_password_in_call_log(self):
        self.admin_token()
        call = self.nova.calls_to('/auth/tokens$')[-1]
        self.assertIsNone(call.body)
        self.assertNotIn(self.nova.admin.password, str(self.nova.calls))

    def test_stop_with_held_call_and_idle_connections(self):
        port = self.nova.port
        self.nova.hang('/action$')
        worker = threading.Thread(target=self.reset, kwargs={'timeout': 30})
        worker.start()
        self.assertTrue(self.nova.wait_held(1, timeout=5))
        started = time.monotonic()
        self.nova.stop()
        self.assertLess(time.monotonic() - started, 5)
        worker.join(10)
        self.assertFalse(worker.is_alive())
        with socket.socket() as sock:
            self.assertNotEqual(0, sock.connect_ex(('127.0.0.1', port)))


class TestScale(NovaDoubleTestCase):

    def test_1000_servers_and_1000_parallel_resets(self):
        ids = [self.nova.add_server('compute-%d' % (i % 4), 'p%d' % (i % 9))
               for i in range(1000)]
        token = self.admin_token()
        # The whole list, one page at Nova's default max_limit.
        resp = self.client.call('GET', '/compute/v2.1/servers/detail'
                                '?all_tenants=1', token=token)
        self.assertEqual(1000, len(resp.json()['servers']))
        body = json.dumps({'os-resetState': {'state': 'error'}})
        port = self.nova.port
        start = threading.Barrier(1000)
        statuses = []

        def reset(server_id):
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
            try:
                start.wait(30)
                conn.request('POST', '/compute/v2.1/servers/%s/action'
                             % server_id, body,
                             {'X-Auth-Token': token,
                              'Content-Type': 'application/json'})
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
            finally:
                conn.close()

        started = time.monotonic()
        with futures.ThreadPoolExecutor(max_workers=1000) as pool:
            list(pool.map(reset, ids))
        elapsed = time.monotonic() - started
        self.assertEqual([202] * 1000, statuses)
        self.assertEqual(1000, sum(
            1 for s in ids if self.nova.server(s)['status'] == 'ERROR'))
        self.assertLess(elapsed, 30)


class Collector:
    """A notification endpoint that keeps what concerns one host."""

    def __init__(self, host):
        self.host = host
        self.received = []
        self.changed = threading.Condition()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        data = payload.get('nova_object.data', payload)
        if data.get('host') != self.host:
            return
        with self.changed:
            self.received.append((publisher_id, event_type, payload))
            self.changed.notify_all()

    def wait_for(self, count, timeout=10):
        with self.changed:
            return self.changed.wait_for(
                lambda: len(self.received) >= count, timeout)


class TestNotifications(NovaDoubleTestCase):

    double_kwargs = {'transport_url': 'fake://', 'api_host': 'api-0'}

    def setUp(self):
        super().setUp()
        self.host = 'compute-%s' % uuid.uuid4().hex[:8]
        self.nova.add_host(self.host)
        self.server = self.nova.add_server(self.host, 'project-n',
                                           user_id='user-n', name='vnf')
        self.token = self.admin_token()
        # A transport of our own: its default exchange is not 'nova', so
        # receiving proves the double publishes on exchange 'nova'.
        transport = oslo_messaging.get_notification_transport(
            cfg.ConfigOpts(), url='fake://')
        self.legacy = Collector(self.host)
        self.versioned = Collector(self.host)
        for topic, endpoint in (('notifications', self.legacy),
                                ('versioned_notifications', self.versioned)):
            listener = oslo_messaging.get_notification_listener(
                transport, [oslo_messaging.Target(topic=topic,
                                                  exchange='nova')],
                [endpoint], executor='threading',
                pool='test-%s' % uuid.uuid4().hex)
            listener.start()
            self.addCleanup(listener.wait)
            self.addCleanup(listener.stop)

    def test_reset_state_emits_compute_instance_update(self):
        resp = self.client.call(
            'POST', '/compute/v2.1/servers/%s/action' % self.server,
            token=self.token, body={'os-resetState': {'state': 'error'}})
        self.assertEqual(202, resp.status_code)
        self.assertTrue(self.legacy.wait_for(1))
        publisher_id, event_type, payload = self.legacy.received[0]
        self.assertEqual('nova-api:api-0', publisher_id)
        self.assertEqual('compute.instance.update', event_type)
        self.assertEqual(
            (self.server, 'project-n', 'user-n', 'error', 'active',
             self.host, self.host, 'vnf'),
            (payload['instance_id'], payload['tenant_id'],
             payload['user_id'], payload['state'], payload['old_state'],
             payload['host'], payload['node'], payload['display_name']))
        self.assertIn('state_description', payload)
        self.assertEqual(payload, self.nova.notifications[-1]['payload'])

    def test_force_down_emits_service_update(self):
        svc = self.nova.service(self.host)
        resp = self.client.call(
            'PUT', '/compute/v2.1/os-services/%s' % svc['uuid'],
            token=self.token, version='2.53', body={'forced_down': True})
        self.assertEqual(200, resp.status_code)
        self.assertTrue(self.versioned.wait_for(1))
        publisher_id, event_type, payload = self.versioned.received[0]
        self.assertEqual('nova-compute:%s' % self.host, publisher_id)
        self.assertEqual('service.update', event_type)
        self.assertEqual(('ServiceStatusPayload', 'nova', '1.1'),
                         (payload['nova_object.name'],
                          payload['nova_object.namespace'],
                          payload['nova_object.version']))
        data = payload['nova_object.data']
        self.assertEqual(
            {'host', 'binary', 'disabled', 'disabled_reason', 'forced_down',
             'last_seen_up', 'topic', 'uuid', 'version', 'report_count',
             'availability_zone'}, set(data))
        self.assertEqual((True, False, 'nova-compute', svc['uuid']),
                         (data['forced_down'], data['disabled'],
                          data['binary'], data['uuid']))

    def test_legacy_force_down_and_disable_emit_service_update(self):
        self.client.call(
            'PUT', '/compute/v2.1/os-services/force-down', token=self.token,
            version='2.11', body={'host': self.host,
                                  'binary': 'nova-compute',
                                  'forced_down': True})
        svc_id = self.nova.service(self.host)['uuid']
        self.client.call(
            'PUT', '/compute/v2.1/os-services/%s' % svc_id, token=self.token,
            version='2.53', body={'status': 'disabled',
                                  'disabled_reason': 'doctor'})
        self.assertTrue(self.versioned.wait_for(2))
        datas = [p['nova_object.data'] for _, _, p in self.versioned.received]
        self.assertEqual([(True, False, None), (True, True, 'doctor')],
                         [(d['forced_down'], d['disabled'],
                           d['disabled_reason']) for d in datas])

    def test_no_notification_for_a_refused_call(self):
        member = self.member_token()
        svc_id = self.nova.service(self.host)['uuid']
        self.client.call(
            'PUT', '/compute/v2.1/os-services/%s' % svc_id, token=member,
            version='2.53', body={'forced_down': True})
        self.assertTrue(self.nova.flush_notifications())
        self.assertEqual([], [n for n in self.nova.notifications
                              if n['event_type'] == 'service.update'])

    def test_delete_emits_delete_start_and_end(self):
        self.client.call('DELETE', '/compute/v2.1/servers/%s' % self.server,
                         token=self.token)
        self.assertTrue(self.legacy.wait_for(2))
        self.assertEqual(
            [('nova-compute:%s' % self.host, 'compute.instance.delete.start'),
             ('nova-compute:%s' % self.host, 'compute.instance.delete.end')],
            [(p, e) for p, e, _ in self.legacy.received])


class TestWithoutTransport(NovaDoubleTestCase):

    def test_notifications_are_recorded(self):
        server = self.nova.add_server('compute-1', 'p')
        self.client.call('POST', '/compute/v2.1/servers/%s/action' % server,
                         token=self.admin_token(),
                         body={'os-resetState': {'state': 'error'}})
        self.assertIsNone(self.nova.notification_transport)
        self.assertEqual(['compute.instance.update'],
                         [n['event_type'] for n in self.nova.notifications])
        self.assertEqual('notifications', self.nova.notifications[0]['topic'])


class TestLifeCycle(base.BaseTestCase):

    def test_fixture_stops_the_server(self):
        fixture = nova_double.NovaDoubleFixture()
        fixture.setUp()
        port = fixture.nova.port
        self.assertEqual(200, requests.get(
            fixture.nova.auth_url, timeout=5).status_code)
        fixture.cleanUp()
        with socket.socket() as sock:
            self.assertNotEqual(0, sock.connect_ex(('127.0.0.1', port)))

    def test_context_manager(self):
        with nova_double.NovaDouble(max_version='2.60') as nova:
            resp = requests.get(nova.compute_url + '/', timeout=5)
            self.assertEqual('2.60', resp.json()['version']['version'])

    def test_max_version_below_minimum_is_refused(self):
        self.assertRaises(ValueError, nova_double.NovaDouble,
                          max_version='2.0')
