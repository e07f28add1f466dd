"""Addresses in URLs: where a URL points (scheme, host, port, Host header), and loopback hosts.

One place for all of it, used by config, the worker probes, the health server and both HTTP
clients, so every part of asqsd reads a URL's host and port, defaults the port and writes an IPv6
literal back the same way. (The emulator keeps its own: it is independent of the rest.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

DEFAULT_PORTS: Final = {"http": 80, "https": 443}
HTTP_SCHEMES: Final = ("http", "https")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost could resolve anywhere


def url_host(host: str) -> str:
    """``host`` as a URL or Host header writes it: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host else host


def join_host_port(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (``[::1]:8080`` for IPv6)."""
    return f"{url_host(host)}:{port}"


@dataclass(frozen=True, slots=True)
class URLAddress:
    """Where a URL points, in the forms a socket and an HTTP request want.

    ``host`` is what a socket connects to: lower case, an IPv6 literal without brackets, a
    non-ASCII name IDNA-encoded. ``port`` is the URL's, else the scheme's default (443 for https,
    else 80); ``port_given`` tells whether the URL wrote one (even the default).
    """

    scheme: str
    host: str
    port: int
    port_given: bool

    @property
    def host_header(self) -> str:
        """The Host header value (as botocore signs it): the port only when not the scheme's default."""
        if not self.port_given or self.port == DEFAULT_PORTS.get(self.scheme):
            return url_host(self.host)
        return join_host_port(self.host, self.port)


def url_address(url: str, schemes: Collection[str] | None = None) -> URLAddress:
    """Where ``url`` points; ValueError without a host, with a malformed port, or (when
    ``schemes`` is given) with another scheme."""
    parts = urlsplit(url)
    if schemes is not None and parts.scheme not in schemes:
        raise ValueError(f"scheme of {url!r} is not one of {', '.join(schemes)}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    port = parts.port  # ValueError for a malformed or out-of-range port
    if not host.isascii():
        host = host.encode("idna").decode("ascii")  # the wire form (what yarl and DNS use)
    default = DEFAULT_PORTS.get(parts.scheme, 80)
    return URLAddress(parts.scheme, host, default if port is None else port, port is not None)


def http_address(url: str) -> URLAddress:
    """:func:`url_address` of an ``http://`` or ``https://`` URL; ValueError for any other."""
    return url_address(url, HTTP_SCHEMES)


def plain_host(endpoint: str) -> bool:
    """Whether the URL's host is one botocore's ``is_valid_endpoint_url`` accepts: dot-separated
    labels of ASCII letters, digits and inner hyphens, 63 characters at most each (one final dot
    allowed), no tab or line break anywhere. Checked first: botocore.utils would bring urllib3."""
    if any(c in endpoint for c in "\t\r\n"):
        return False
    host = urlsplit(endpoint).hostname
    if not host or len(host) > 255:
        return False
    labels = host.removesuffix(".").split(".")
    return all(
        0 < len(label) <= 63
        and label.isascii()
        and label.replace("-", "").isalnum()
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    )
