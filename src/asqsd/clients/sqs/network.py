"""The proxy and CA bundle an SQS endpoint is reached with, chosen by botocore's own rules.

Both are read once, when the client is built, so the lean client goes the way a botocore client
created from the same session would:

* **proxy**: the client config's ``proxies`` when set, else the environment through botocore's
  ``get_environ_proxies``, i.e. urllib's ``getproxies`` (``https_proxy`` / ``http_proxy``, the
  lower-case name winning over the upper-case one) unless urllib's ``proxy_bypass`` matches the
  endpoint's ``host[:port]`` against ``no_proxy`` / ``NO_PROXY`` (``*``, or comma-separated host
  names and domain suffixes, with or without a port; no IP ranges, and loopback hosts are not
  special). The endpoint's scheme picks the entry (https endpoints use ``HTTPS_PROXY``), and a
  proxy without a scheme means ``http://``, as in botocore's ``ProxyConfiguration``.
* **CA bundle**: the profile's ``ca_bundle`` or ``AWS_CA_BUNDLE`` (the session's ``ca_bundle``
  variable), else ``REQUESTS_CA_BUNDLE``, as botocore's endpoint reads them; None leaves the system
  trust store. Its certificates are loaded (about 20 ms for a system bundle) only for an ``https``
  endpoint: an ``http`` one (a local emulator, a test endpoint) never uses them, so the file is only
  checked to exist and hold a certificate.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from asqsd.addresses import url_address
from asqsd.clients.http1.proxy import HTTPProxy
from asqsd.errors import StartupError


def endpoint_proxy_url(endpoint_url: str, configured: Mapping[str, str] | None) -> str | None:
    """The proxy URL botocore would send requests to ``endpoint_url`` through (None: direct).

    ``configured`` is the client config's ``proxies``; as in botocore, ``NO_PROXY`` does not
    apply to them, only to the environment's. With neither, botocore's answer is None (checked
    first: botocore.httpsession would bring urllib3).
    """
    if configured is None and not environment_proxies():
        return None
    from botocore.httpsession import ProxyConfiguration
    from botocore.utils import get_environ_proxies

    proxies = get_environ_proxies(endpoint_url) if configured is None else configured
    url: str | None = ProxyConfiguration(proxies=proxies).proxy_url_for(endpoint_url)
    return url or None


def environment_proxies() -> dict[str, str]:
    """urllib's ``getproxies()``, the environment's proxies botocore starts from.

    On Linux that is the ``*_proxy`` variables alone; when none is set (the usual case) the answer
    is known without importing urllib.request (with http.client and email under it, ~3 ms at start).
    """
    if sys.platform not in ("darwin", "win32") and not any(
        value and name.lower().endswith("_proxy") for name, value in os.environ.items()
    ):
        return {}
    from urllib.request import getproxies

    return getproxies()


def proxy_address(proxy_url: str) -> str:
    """``host:port`` of a proxy URL, for logs: never its credentials."""
    parts = urlsplit(proxy_url)
    try:
        address = url_address(proxy_url)
    except ValueError:
        return parts.hostname or "?"
    return f"{address.host}:{address.port}"


def lean_proxy(proxy_url: str) -> HTTPProxy:
    """The proxy as the lean transport uses it; StartupError (credentials masked) if it cannot."""
    try:
        return HTTPProxy.from_url(proxy_url)
    except ValueError as exc:
        from botocore.httpsession import mask_proxy_url

        hint = "use a plain http:// proxy URL, or sqs_client: botocore"
        raise StartupError(f"SQS proxy {mask_proxy_url(proxy_url)}: {exc}; {hint}") from None


def ca_bundle(session: Any) -> str | None:
    """The CA bundle file a botocore client of ``session`` verifies TLS with (None: the default)."""
    configured: str | None = session.get_config_variable("ca_bundle")
    return configured if configured is not None else os.environ.get("REQUESTS_CA_BUNDLE")


def tls_context(cafile: str) -> ssl.SSLContext:
    """A verifying TLS context trusting the certificates in ``cafile`` (and nothing else).

    A file that is missing, unreadable or holds no certificate is a StartupError naming it: it
    would otherwise fail every call to SQS.
    """
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _unusable(cafile, reason) from None


_PEM_MARKERS = (
    b"-----BEGIN CERTIFICATE-----",
    b"-----BEGIN TRUSTED CERTIFICATE-----",
    b"-----BEGIN X509 CRL-----",
)


def check_ca_bundle(cafile: str) -> None:
    """What :func:`tls_context` would refuse, short of parsing every certificate: a file that is
    missing, unreadable or holds no PEM certificate is a StartupError naming it."""
    try:
        with open(cafile, "rb") as bundle:
            content = bundle.read()
    except OSError as exc:
        raise _unusable(cafile, exc.strerror or str(exc)) from None
    if not any(marker in content for marker in _PEM_MARKERS):
        raise _unusable(cafile, "no certificate or crl found")


def _unusable(cafile: str, reason: str) -> StartupError:
    source = "ca_bundle, AWS_CA_BUNDLE or REQUESTS_CA_BUNDLE"
    return StartupError(f"CA bundle {cafile!r} ({source}) cannot be loaded: {reason}")


def session_tls_context(session: Any, endpoint_url: str | None = None) -> ssl.SSLContext | None:
    """:func:`tls_context` of the session's CA bundle; None when there is none (the default store),
    or when ``endpoint_url`` is plain ``http``: the bundle is then only checked (:func:`check_ca_bundle`)."""
    cafile = ca_bundle(session)
    if cafile is None:
        return None
    if endpoint_url is not None and urlsplit(endpoint_url).scheme == "http":
        check_ca_bundle(cafile)
        return None
    return tls_context(cafile)
