"""mask_url: credentials out of action URLs."""

from oslotest import base

from doctor_ext.notifier import masking


class TestMaskUrl(base.BaseTestCase):

    def test_password(self):
        self.assertEqual('http://alice:***@vnfm:8080/alarm',
                         masking.mask_url(
                             'http://alice:s3cr3t@vnfm:8080/alarm'))

    def test_password_with_at_sign(self):
        masked = masking.mask_url('http://bob:p@ss@vnfm/alarm?a=1')
        self.assertEqual('http://bob:***@vnfm/alarm?a=1', masked)

    def test_user_only_is_masked_as_a_token(self):
        self.assertEqual('https://***@vnfm/alarm',
                         masking.mask_url('https://ghp_abc@vnfm/alarm'))

    def test_secret_query_parameters(self):
        masked = masking.mask_url(
            'http://vnfm/a?x=1&token=t0k&Password=pw&api_key=k&'
            'client_secret=s&aodh-alarm-ssl-verify=0&auth_token=z#y')
        self.assertEqual(
            'http://vnfm/a?x=1&token=***&Password=***&api_key=***&'
            'client_secret=***&aodh-alarm-ssl-verify=0&auth_token=***#y',
            masked)

    def test_fragment_token(self):
        self.assertEqual('http://vnfm/a#access_token=***',
                         masking.mask_url(
                             'http://vnfm/a#access_token=abc'))

    def test_plain_url_unchanged(self):
        url = 'http://127.0.0.1:1234/failure?tenant=x&email=a@b.c'
        self.assertEqual(url, masking.mask_url(url))

    def test_malformed_urls(self):
        self.assertEqual('http://u:***@[::1',
                         masking.mask_url('http://u:pw@[::1'))
        self.assertEqual('None', masking.mask_url(None))
        self.assertEqual('', masking.mask_url(''))
        self.assertEqual('trust+http://admin:***@vnfm/',
                         masking.mask_url(
                             'trust+http://admin:delta@vnfm/'))
