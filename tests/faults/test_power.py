"""Scenario: the BMCs misbehave, a storm of host reports, a host with no BMC.

Each BMC is sushy-tools' emulator (fake driver) behind a TCP proxy of the
test's own, which refuses connections, holds them without an answer, or
answers every request 500. Owners must be told of the fault on time
whatever the BMC does; a power-off that is not confirmed is bounded,
reported as ``failed`` to the owners who asked, and nothing is forced down
in Nova. A storm of five host reports, spread over two agents, powers off
no more hosts than the storm guard allows; an operator's confirmation
lets a held one go ahead.
"""

import os
import re
import subprocess
import time

from doctor_ext_lab import services
from tests.faults import base
from tests.functional import base as fbase
from tests.functional import test_power_fencing as power_base

RETRIES = 2


class BmcProxy(base.TcpProxy):
    """The suite's TCP proxy, which can also answer every request 500."""

    def __init__(self, target_host, target_port):
        self.status = None
        self.answered = 0
        super().__init__(target_host, target_port)

    def answer(self, status):
        self.status = status

    def _connect(self, listener, client):
        if self.status is None:
            return super()._connect(listener, client)
        try:
            client.settimeout(5)
            while True:
                data = b''
                while b'\r\n\r\n' not in data:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b'\r\n\r\n')
                length = re.search(rb'(?i)content-length:\s*(\d+)', head)
                need = int(length.group(1)) if length else 0
                while len(rest) < need:
                    rest += client.recv(65536)
                body = b'{"error": {"message": "BMC internal error"}}'
                client.sendall(b'HTTP/1.1 %d Internal Server Error\r\n'
                               b'Content-Type: application/json\r\n'
                               b'Content-Length: %d\r\n\r\n%s' % (
                                   self.status, len(body), body))
                self.answered += 1
        except OSError:
            return
        finally:
            client.close()


class TestBmcFaults(power_base.PowerFencingTest, base.FaultTest):

    HOSTS = ('bmc-refuses', 'bmc-hangs', 'bmc-500', 'no-bmc')
    BMC_HOSTS = HOSTS[:3]
    fencing_options = {'bmc_retries': str(RETRIES), 'bmc_timeout': '2',
                       'storm_max_hosts': '10'}

    def test_bmc_refuses_hangs_500_no_bmc(self):
        vms = {h: self.add_vms(h, 2) for h in self.HOSTS}
        for host_vms in vms.values():
            for vm, (p, _) in host_vms.items():
                self.create_fenced_alarm(p, vm)
        proxies = {h: BmcProxy('127.0.0.1', self.emulator.port)
                   for h in self.BMC_HOSTS}
        for p in proxies.values():
            self.addCleanup(p.stop)
        self.write_bmc_file({h: 'http://127.0.0.1:%d' % p.port
                             for h, p in proxies.items()})
        agent = self.start_agent()
        proxies['bmc-refuses'].cut()
        proxies['bmc-hangs'].hang()
        proxies['bmc-500'].answer(500)

        tally = base.Tally('bmc-faults', 'BMC refuses, hangs, answers 500; '
                           'a host without BMC')
        tally.expected = {a for h in vms.values() for _, a in h.values()}
        sent = time.time()
        for host in self.HOSTS:
            self.reporter.report(host)
        tally.sent = len(self.HOSTS)
        self.wait_alarms(tally.expected, 10)
        last = max(r.time for r in self.received() if r.path == '/failure')
        tally.extra['last_owner_ms'] = round((last - sent) * 1000, 1)

        # Every owner learns the outcome of its host's fencing.
        all_vms = {vm: h for h, host_vms in vms.items() for vm in host_vms}
        notices = fbase.poll(
            lambda: len(self.fenced_notices()) >= len(all_vms) and
            self.fenced_notices(), 120, 'every fenced notification')
        tally.recover = max(r.time for r in notices) - sent
        tally.recover_what = 'reports -> every owner told the outcome'
        outcomes = {fbase.instance_of(r): (power_base.trait(r, 'method'),
                                           power_base.trait(r, 'outcome'))
                    for r in notices}
        for vm, host in all_vms.items():
            self.assertEqual(('logical', 'logical') if host == 'no-bmc'
                             else ('power', 'failed'), outcomes[vm], host)
        # Nothing powered off; only the host without BMC forced down.
        for host in self.BMC_HOSTS:
            self.assertEqual('On', self.emulator.power_state(host))
            self.assertFalse(self.nova.service(host)['forced_down'], host)
        self.assertTrue(self.nova.service('no-bmc')['forced_down'])
        # Bounded: RETRIES retries of the first call, reported by name.
        log = self.log_of(agent)
        for host, why in (('bmc-refuses', 'connection refused'),
                          ('bmc-hangs', 'no answer within the BMC timeout'),
                          ('bmc-500', 'HTTP 500')):
            self.assertIn('Host %s NOT fenced: ForceOff of host %s through '
                          'BMC' % (host, host), log)
            self.assertIn(why, log)
            self.assertEqual(RETRIES, len(re.findall(
                r'ForceOff of host %s .*; retry \d of %d' % (host, RETRIES),
                log)), host)
        self.assertIn('Host no-bmc has no BMC in the BMC file', log)
        tally.extra['bmc_500_answers'] = proxies['bmc-500'].answered
        # Doctor's notifications are the tally (the fenced ones checked
        # above).
        tally.count([r for r in self.received() if r.path == '/failure'])
        self.record(tally)
        self.assertEqual((0, 0), (tally.lost, tally.duplicated))


class TestStormGuard(power_base.PowerFencingTest, base.FaultTest):

    HOSTS = tuple('storm-%d' % i for i in range(5))
    BMC_HOSTS = HOSTS
    fencing_options = {'storm_max_hosts': '2', 'storm_max_percent': '100'}

    def test_storm_of_five_reports_two_powered_off(self):
        vms = {h: self.add_vms(h, 1, projects=['project-a'])
               for h in self.HOSTS}
        for host_vms in vms.values():
            for vm, (p, _) in host_vms.items():
                self.create_fenced_alarm(p, vm)
        agents = [self.start_agent(), self.start_agent()]
        tally = base.Tally('storm-guard', '5 host reports at once, 2 agents, '
                           'storm_max_hosts=2')
        tally.expected = {a for h in vms.values() for _, a in h.values()}
        sent = time.time()
        for host in self.HOSTS:
            self.reporter.report(host)
        tally.sent = len(self.HOSTS)
        self.wait_alarms(tally.expected, 10)

        held = fbase.poll(lambda: self._held(agents), 60,
                          'three hosts held by the guard')
        notices = fbase.poll(
            lambda: len(self.fenced_notices()) >= 2 and
            self.fenced_notices(), 60, 'two fenced notifications')
        off = sorted(h for h in self.HOSTS
                     if self.emulator.power_state(h) == 'Off')
        self.assertEqual(2, len(off), off)
        self.assertEqual(sorted(set(self.HOSTS) - set(off)), sorted(held))
        self.assertEqual(off, sorted(power_base.trait(r, 'host')
                                     for r in notices))
        self.assertEqual(off, sorted(h for h in self.HOSTS
                                     if self.nova.service(h)['forced_down']))
        tally.extra['powered_off'] = len(off)
        tally.extra['held'] = len(held)
        tally.extra['agents_that_powered_off'] = sum(
            1 for a in agents if 'powered off: ForceOff' in self.log_of(a))

        # The operator confirms one held host: it is powered off, its
        # owner told.
        confirm = held[0]
        out = subprocess.run(
            [os.path.join(services.BIN, 'doctor-ext-fence'),
             '--config-file', agents[0].conf, 'confirm', confirm],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(0, out.returncode, out.stderr)
        self.assertIn('Confirmed 1 held power-off(s) of host %s' % confirm,
                      out.stdout)
        fbase.poll(lambda: any(power_base.trait(r, 'host') == confirm
                               for r in self.fenced_notices()), 90,
                   'the confirmed host fenced')
        self.assertEqual('Off', self.emulator.power_state(confirm))
        tally.recover = time.time() - sent
        tally.recover_what = 'reports -> confirmed host powered off'
        tally.count([r for r in self.received() if r.path == '/failure'])
        self.record(tally)
        self.assertEqual((0, 0), (tally.lost, tally.duplicated))
        # Still held: the two others.
        listing = subprocess.run(
            [os.path.join(services.BIN, 'doctor-ext-fence'),
             '--config-file', agents[0].conf, 'list'],
            capture_output=True, text=True, timeout=60).stdout
        self.assertEqual(2, listing.count(' held '), listing)

    def _held(self, agents):
        pattern = re.compile(r'Host (\S+) NOT powered off: the storm guard')
        held = sorted({h for a in agents
                       for h in pattern.findall(self.log_of(a))})
        return held if len(held) == 3 else None
