"""The agent as the install guide's narrow Nova user, on real Nova.

The suite's nova-api runs with the policy rules of doc/source/install.rst,
pasted as they are (:func:`tests.realnova.cloud.install_guide_nova_policy`),
and Keystone has the guide's ``doctor`` user: the ``doctor`` role, in a
project of its own, no admin. With it the agent lists a failed host's
servers, notifies their owners and forces the host down; Nova answers its
resets 404, as the guide says (Nova finds another project's server for an
admin context only). A user of the same project without the role is
refused the listing and the force-down, so the rules, not a lax default,
are what let the agent through.
"""

from tests.functional import base
from tests.realnova import cloud as cloud_mod
from tests.realnova import testcase

# The calls the guide's rules allow, as the agent makes them.
RULED_CALLS = [
    ('GET', '/servers/detail?all_tenants=1&host=%(host)s', None),
    ('GET', '/os-services?binary=nova-compute&host=%(host)s', None),
    ('PUT', '/os-services/%(service)s', {'forced_down': True}),
]
RESET = ('POST', '/servers/%(server)s/action',
         {'os-resetState': {'state': 'error'}})


class TestNovaLeastPrivilege(testcase.RealNovaTest):
    HOST = 'compute-2'

    def call_as(self, user, call, values):
        method, path, body = call
        try:
            self.cloud.nova(method, path % values, body,
                            project=cloud_mod.DOCTOR, user=user)
        except cloud_mod.CloudError as e:
            return str(e)
        return None

    def values(self):
        vm = next(iter(self.servers_on(self.HOST)))
        return {'host': self.HOST, 'server': vm,
                'service': self.cloud.service(self.HOST)['id']}

    def test_a_user_without_the_role_is_refused(self):
        values = self.values()
        for call in RULED_CALLS:
            refused = self.call_as(cloud_mod.MEMBER, call, values)
            self.assertIsNotNone(refused, '%s %s allowed without the '
                                 'doctor role' % call[:2])
            self.assertIn('-> 403', refused)
        self.assertFalse(self.cloud.service(self.HOST)['forced_down'])

    def test_reset_needs_an_admin(self):
        values = self.values()
        for user in (cloud_mod.DOCTOR, cloud_mod.MEMBER):
            refused = self.call_as(user, RESET, values)
            self.assertIsNotNone(refused, 'reset allowed to %s' % user)
            self.assertIn('-> 404', refused)
        self.assertEqual('ACTIVE',
                         self.cloud.server(values['server'])['status'])

    def test_host_fenced_with_the_guides_user(self):
        failing = self.servers_on(self.HOST)
        self.give_back(self.HOST)
        self.stack.nova_credentials = self.cloud.credentials(
            project=cloud_mod.DOCTOR, user=cloud_mod.DOCTOR)
        alarms = self.doctor_alarms(failing)
        self.start_agent()

        def failures():
            return [r for r in self.received() if r.path == '/failure']

        self.reporter.report(self.HOST)
        base.poll(lambda: len(failures()) >= len(failing), 15,
                  '%d owners\' notifications' % len(failing))
        self.assertEqual(sorted(failing),
                         sorted(base.instance_of(r) for r in failures()))
        self.assertEqual(set(alarms.values()),
                         {r.body['alarm_id'] for r in failures()})
        self.wait_forced_down(self.HOST)
        for vm in failing:
            self.wait_for_log('reset of server %s to error' % vm)
        self.wait_for_log('not visible to the [doctor_nova] user')
        self.assertTrue(all(self.cloud.server(vm)['status'] == 'ACTIVE'
                            for vm in failing))
