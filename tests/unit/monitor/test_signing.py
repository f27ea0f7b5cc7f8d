"""Signing a report, and verifying it from the traits the agent sees.

The traits are made by Ceilometer's own converter with our event
definitions (tests.fixtures.report_event), as in the agent.
"""

import datetime

from oslotest import base

from doctor_ext.monitor import report
from doctor_ext.monitor import signing
from tests import fixtures as doctor_fixtures

SECRET = 's3cret-of-the-monitor'
T0 = datetime.datetime(2026, 11, 24, 10, 0, 0)


def down(**kwargs):
    return report.build_report('compute-1', cause='no ping reply',
                               monitor_event_id='mon-1', time=T0, **kwargs)


def maintenance(**extra):
    payload = {'host': 'compute-2', 'session_id': 's-1',
               'state': 'IN_MAINTENANCE', 'reason': 'BIOS',
               'window': {'start': '2026-11-24T10:00:00Z',
                          'end': '2026-11-24T12:00:00+01:00'},
               'project_id': 'admin-p'}
    payload.update(extra)
    return payload


def traits(event_type, payload, **kwargs):
    return doctor_fixtures.report_event(event_type, payload,
                                        **kwargs).traits


class SignVerifyTest(base.BaseTestCase):

    def verify(self, event_type, payload, secret=SECRET, now=T0,
               window=300, **kwargs):
        return signing.verify(secret, event_type,
                              traits(event_type, payload, **kwargs),
                              window, now=now)

    def refused(self, reason, *args, **kwargs):
        e = self.assertRaises(signing.Refused, self.verify, *args, **kwargs)
        self.assertEqual(reason, e.reason)
        return e

    def test_signed_report_verifies(self):
        r = down()
        signed = signing.sign(SECRET, r['type'], r, now=T0)
        self.assertEqual(T0, self.verify('compute.host.down', signed))
        # The report itself is unchanged, and still a Doctor report.
        self.assertNotIn('signature', r)
        self.assertEqual(r, {k: v for k, v in signed.items()
                             if k not in ('signature', 'signed_at')})
        self.assertEqual('2026-11-24T10:00:00.000000Z', signed['signed_at'])
        up = report.build_report('compute-1', status='up', time=T0)
        self.verify('compute.host.up',
                    signing.sign(SECRET, 'compute.host.up', up, now=T0))

    def test_signed_maintenance_report_verifies(self):
        for event_type in ('maintenance.host', 'maintenance.host.end'):
            self.verify(event_type, signing.sign(SECRET, event_type,
                                                 maintenance(), now=T0))

    def test_unsigned(self):
        self.refused(signing.UNSIGNED, 'compute.host.down', down())
        signed = signing.sign(SECRET, 'compute.host.down', down(), now=T0)
        e = self.refused(signing.UNSIGNED, 'compute.host.down',
                         dict(signed, signed_at=None))
        self.assertIn('no signed_at', str(e))

    def test_other_secret(self):
        signed = signing.sign('another', 'compute.host.down', down(), now=T0)
        self.refused(signing.BAD_SIGNATURE, 'compute.host.down', signed)
        signed = signing.sign(SECRET, 'compute.host.down', down(), now=T0)
        self.refused(signing.BAD_SIGNATURE, 'compute.host.down', signed,
                     secret=SECRET + 'x')

    def test_every_signed_field_is_covered(self):
        signed = signing.sign(SECRET, 'compute.host.down', down(), now=T0)
        for key in ('hostname', 'status', 'monitor', 'monitor_event_id',
                    'cause', 'severity'):
            forged = dict(signed, details=dict(signed['details'],
                                               **{key: 'x'}))
            self.refused(signing.BAD_SIGNATURE, 'compute.host.down', forged)
        for key, value in (('time', '2026-11-24T09:00:00Z'),
                           ('signed_at', '2026-11-24T10:00:01Z'),
                           ('signature', signed['signature'][::-1])):
            self.refused(signing.BAD_SIGNATURE, 'compute.host.down',
                         dict(signed, **{key: value}))
        # A field left out when signing, added on the way.
        no_cause = signing.sign(SECRET, 'compute.host.down',
                                down(), now=T0)
        no_cause['details'] = dict(no_cause['details'], cause=None)
        self.refused(signing.BAD_SIGNATURE, 'compute.host.down', no_cause)
        # Signed as another event type.
        self.refused(signing.BAD_SIGNATURE, 'compute.host.up', signed)

    def test_maintenance_fields_covered(self):
        signed = signing.sign(SECRET, 'maintenance.host', maintenance(),
                              now=T0)
        for key, value in (('host', 'compute-3'), ('state', 'x'),
                           ('reason', 'y'), ('project_id', 'p2'),
                           ('window', {'start': '2026-11-24T10:00:00Z'})):
            self.refused(signing.BAD_SIGNATURE, 'maintenance.host',
                         dict(signed, **{key: value}))
        # The project taken from the request context instead.
        unsigned_project = signing.sign(
            SECRET, 'maintenance.host', maintenance(project_id=None),
            now=T0)
        self.verify('maintenance.host', unsigned_project)
        self.refused(signing.BAD_SIGNATURE, 'maintenance.host',
                     unsigned_project, ctxt={'project_id': 'p2'})

    def test_time_window_either_way(self):
        signed = signing.sign(SECRET, 'compute.host.down', down(), now=T0)
        minutes = datetime.timedelta(seconds=299)
        self.verify('compute.host.down', signed, now=T0 + minutes)
        self.verify('compute.host.down', signed, now=T0 - minutes)
        late = datetime.timedelta(seconds=301)
        e = self.refused(signing.OUT_OF_WINDOW, 'compute.host.down', signed,
                         now=T0 + late)
        self.assertIn('signed 301 s ago, the window is 300 s', str(e))
        e = self.refused(signing.OUT_OF_WINDOW, 'compute.host.down', signed,
                         now=T0 - late)
        self.assertIn('ahead', str(e))
        self.verify('compute.host.down', signed, now=T0 + late, window=600)

    def test_sign_refuses_what_it_cannot_sign(self):
        self.assertRaises(ValueError, signing.sign, '', 'compute.host.down',
                          down())
        self.assertRaises(ValueError, signing.sign, SECRET,
                          'compute.instance.update', {})
        self.assertRaises(ValueError, signing.sign, SECRET,
                          'maintenance.host',
                          maintenance(window={'start': 'tomorrow'}))

    def test_signing_again_gives_a_new_signature(self):
        first = signing.sign(SECRET, 'compute.host.down', down(), now=T0)
        later = T0 + datetime.timedelta(seconds=5)
        again = signing.sign(SECRET, 'compute.host.down', first, now=later)
        self.assertNotEqual(first['signature'], again['signature'])
        self.verify('compute.host.down', again, now=later)

    def test_replay_key(self):
        r = traits('compute.host.down', down())
        self.assertEqual(('compute.host.down', 'mon-1'),
                         signing.replay_key('compute.host.down', r))
        m = traits('maintenance.host', maintenance())
        self.assertEqual(('maintenance.host', 's-1', 'compute-2',
                          'IN_MAINTENANCE'),
                         signing.replay_key('maintenance.host', m))
        e = self.assertRaises(signing.Refused, signing.replay_key,
                              'maintenance.host',
                              traits('maintenance.host',
                                     maintenance(session_id=None)))
        self.assertEqual(signing.NO_ID, e.reason)
