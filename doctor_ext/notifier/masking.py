"""Credentials out of action URLs before they reach a log line or an error.

:func:`mask_url` is the one place that decides what is secret in a URL;
every log line and every Delivery error of the notifier goes through it.
"""

import re

MASK = '***'
_SECRET_WORDS = r'(?:pass|pwd|token|secret|key|auth|credential|signature)'
# user:password@ (or user@) of a URL; greedy to the last '@' before the
# path, as urllib.parse.urlsplit reads it.
_USERINFO_RE = re.compile(r'//([^/?#]*)@')
# name=value pairs of a query (or fragment) whose name looks secret.
_SECRET_PARAM_RE = re.compile(
    r'([?&;#][^=&;#]*' + _SECRET_WORDS + r'[^=&;#]*=)[^&;#]*', re.IGNORECASE)


def _mask_userinfo(match):
    userinfo = match.group(1)
    if ':' in userinfo:
        return '//%s:%s@' % (userinfo.split(':', 1)[0], MASK)
    return '//%s@' % MASK


def mask_url(url):
    """Return ``url`` with its credentials replaced by ``***``.

    Masks the password of ``user:password@`` (the whole userinfo when it
    has no password: it is then often a token) and the values of query or
    fragment parameters whose name contains pass, pwd, token, secret, key,
    auth, credential or signature. Works on malformed URLs too and never
    raises.
    """
    if not isinstance(url, str):
        try:
            url = str(url)
        except Exception:
            return '<unprintable URL>'
    masked = _USERINFO_RE.sub(_mask_userinfo, url, count=1)
    return _SECRET_PARAM_RE.sub(r'\1' + MASK, masked)
