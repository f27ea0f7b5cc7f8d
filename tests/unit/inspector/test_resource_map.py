from oslotest import base

from doctor_ext.evaluator import events
from doctor_ext.inspector import resource_map


def instance_event(event_type, vm, host, project='p1', state='active'):
    return events.make_event(event_type, {
        'instance_id': vm, 'tenant_id': project, 'user_id': 'u1',
        'host': host, 'state': state})


class TestResourceMap(base.BaseTestCase):
    def setUp(self):
        super().setUp()
        self.map = resource_map.ResourceMap()
        self.map.replace_all([
            resource_map.Instance('vm-1', 'p1', 'u1', 'compute-1'),
            resource_map.Instance('vm-2', 'p2', 'u2', 'compute-1'),
            resource_map.Instance('vm-3', 'p1', 'u1', 'compute-2'),
        ])

    def ids(self, host):
        return sorted(i.instance_id for i in self.map.on_host(host))

    def test_loaded_from_nova(self):
        self.assertTrue(self.map.loaded.is_set())
        self.assertEqual(['vm-1', 'vm-2'], self.ids('compute-1'))
        self.assertEqual('p2', {i.instance_id: i.project_id for i in
                                self.map.on_host('compute-1')}['vm-2'])
        self.assertEqual([], self.ids('compute-9'))

    def test_created_migrated_deleted(self):
        self.assertTrue(self.map.apply(instance_event(
            'compute.instance.create.end', 'vm-4', 'compute-2')))
        self.assertEqual(['vm-3', 'vm-4'], self.ids('compute-2'))
        self.map.apply(instance_event(
            'compute.instance.live_migration.post.dest.end', 'vm-1',
            'compute-2'))
        self.assertEqual(['vm-2'], self.ids('compute-1'))
        self.assertEqual('compute-2', self.map.host_of('vm-1'))
        self.map.apply(instance_event('compute.instance.delete.end',
                                      'vm-2', 'compute-1'))
        self.assertEqual([], self.ids('compute-1'))
        self.assertNotIn('compute-1', self.map.hosts())
        self.map.apply(instance_event('compute.instance.update', 'vm-3',
                                      'compute-2', state='deleted'))
        self.assertEqual(['vm-1', 'vm-4'], self.ids('compute-2'))

    def test_live_migration_as_nova_sends_it(self):
        # Real Nova 34, vm-1 live-migrated from compute-1 to compute-2: the
        # destination's post.dest.end (new host) comes before the source's
        # _post.end, whose payload still names the source.
        for event_type, host in (
                ('compute.instance.live_migration._pre.end', 'compute-1'),
                ('compute.instance.live_migration._post.start', 'compute-1'),
                ('compute.instance.live_migration.post.dest.start',
                 'compute-1'),
                ('compute.instance.live_migration.post.dest.end',
                 'compute-2'),
                ('compute.instance.live_migration._post.end', 'compute-1')):
            self.map.apply(instance_event(event_type, 'vm-1', host))
        self.assertEqual('compute-2', self.map.host_of('vm-1'))
        self.assertEqual(['vm-2'], self.ids('compute-1'))

    def test_incomplete_events_ignored(self):
        no_host = events.make_event('compute.instance.update', {
            'instance_id': 'vm-1', 'tenant_id': 'p1'})
        self.assertFalse(self.map.apply(no_host))
        self.assertEqual('compute-1', self.map.host_of('vm-1'))
        no_id = events.make_event('compute.instance.update', {
            'host': 'compute-3', 'tenant_id': 'p1'})
        self.assertFalse(self.map.apply(no_id))
        self.assertEqual(3, len(self.map))
