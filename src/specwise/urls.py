"""Server URLs as users give them, as specwise shows them, and as it sends them.

A URL can carry secrets: userinfo (`http://user:pass@host:8000`) or a query parameter
(`?api_key=…`, `?token=…`). Every URL that is printed or stored — the manifest, the
stored experiment, error messages, reports, the console — goes through `redact`.

What is sent goes through `request_url`: userinfo is stripped, never sent as Basic
auth. httpx would turn it into an `Authorization: Basic` header that silently replaces
the Bearer key from --api-key-env / --api-key-file; callers warn (`CREDENTIALS_WARNING`)
so that the user moves the key where it belongs. Query parameters are sent as given.

Stdlib only: the pure rooms (reports, findings) redact too.
"""

from __future__ import annotations

import re

MASK = "***"
# Everything between the scheme (if any) and the last `@` before the path: user, password, or both.
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?[^/?#]*@")
# Query parameter names that usually carry a credential.
_SECRET_PARAM = re.compile(r"key|token|secret|pass|auth|sig|credential|session", re.IGNORECASE)

CREDENTIALS_WARNING = ("the URL carries credentials (user:password@); they are not sent — pass the server's key "
                       "with --api-key-env or --api-key-file (api_key_env / api_key_file in an experiment file)")


def has_userinfo(url: str) -> bool:
    return _USERINFO.match(url) is not None


def request_url(url: str) -> str:
    """The URL to send requests to: `url` without its userinfo."""
    return _USERINFO.sub(lambda m: m.group(1) or "", url, count=1)


def redact(url: str) -> str:
    """`url` as shown and stored: userinfo becomes `***@`, secret-looking query values become `***`."""
    url = _USERINFO.sub(lambda m: f"{m.group(1) or ''}{MASK}@", url, count=1)
    base, sep, rest = url.partition("?")
    if not sep:
        return url
    query, hash_, fragment = rest.partition("#")
    params = []
    for param in query.split("&"):
        name, eq, value = param.partition("=")
        params.append(f"{name}={MASK}" if eq and value and _SECRET_PARAM.search(name) else param)
    return f"{base}?{'&'.join(params)}{hash_}{fragment}"
