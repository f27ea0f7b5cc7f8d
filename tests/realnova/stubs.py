"""The part of Glance and Neutron that real Nova calls, served over HTTP.

Nova's server create fetches its image from Glance; server list and delete
list Neutron ports. The fixture creates servers with ``"networks": "none"``,
so an image that exists and an empty port list are all Nova needs. Both
stubs answer any token (Nova passes the user's): they stand for services the
tests do not exercise. Every path they do not know gets a 404 and is kept in
:attr:`ServiceStub.unknown`, so that a new Nova call shows in a failure.
"""

import http.server
import json
import threading

from doctor_ext_lab import services

IMAGE_ID = '5d7ad6d6-8b0c-4bd5-9d1f-6a8a7d2f0c11'
IMAGE = {
    'id': IMAGE_ID, 'name': 'doctor-test-image', 'status': 'active',
    'visibility': 'public', 'protected': False, 'tags': [],
    'disk_format': 'raw', 'container_format': 'bare',
    'size': 1024, 'virtual_size': 1024, 'min_disk': 0, 'min_ram': 0,
    'checksum': None, 'os_hash_algo': None, 'os_hash_value': None,
    'owner': None, 'created_at': '2026-01-01T00:00:00Z',
    'updated_at': '2026-01-01T00:00:00Z', 'file': '/v2/images/%s/file'
    % IMAGE_ID, 'schema': '/v2/schemas/image',
}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        stub = self.server.stub
        path = self.path.split('?', 1)[0].rstrip('/')
        body = stub.answer(self, path)
        if body is None:
            stub.unknown.append(('GET', self.path))
            self._send(404, {'error': 'not served by the stub: %s'
                             % self.path})
        else:
            self._send(200, body)

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ServiceStub:
    """One stub service on loopback and a free port."""

    def __init__(self):
        self.unknown = []
        self.port = services.free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self._server = http.server.ThreadingHTTPServer(
            ('127.0.0.1', self.port), _Handler)
        self._server.daemon_threads = True
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        daemon=True, name=type(self).__name__)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def answer(self, handler, path):
        raise NotImplementedError


class Glance(ServiceStub):
    """Image API v2: version discovery and the one image."""

    def answer(self, handler, path):
        if path in ('', '/v2'):
            return {'versions': [{
                'id': 'v2.16', 'status': 'CURRENT',
                'links': [{'rel': 'self', 'href': self.url + '/v2/'}]}]}
        if path == '/v2/images/' + IMAGE_ID:
            return IMAGE
        if path == '/v2/schemas/image':
            # glanceclient builds its image model from this schema; every
            # property is allowed (Nova reads, never writes images here).
            return {'name': 'image', 'links': [],
                    'additionalProperties': {'type': 'string'},
                    'properties': {k: {} for k in IMAGE}}
        if path == '/v2/images':
            return {'images': [IMAGE], 'schema': '/v2/schemas/images',
                    'first': '/v2/images'}
        return None


class Neutron(ServiceStub):
    """Networking API v2.0: version discovery, no ports, no extensions."""

    def answer(self, handler, path):
        if path in ('', '/v2.0'):
            return {'versions': [{
                'id': 'v2.0', 'status': 'CURRENT',
                'links': [{'rel': 'self', 'href': self.url + '/v2.0/'}]}]}
        for collection in ('ports', 'networks', 'floatingips',
                           'security-groups', 'extensions'):
            if path in ('/v2.0/' + collection,
                        '/v2.0/%s.json' % collection):
                return {collection.replace('-', '_'): []}
        return None
