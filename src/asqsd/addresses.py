"""Addresses in URLs: host and port of a URL, and whether a host is loopback.

One place for both, used by config validation, the worker probes and the HTTP clients, so every
part of asqsd reads a URL's port and defaults it the same way.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost could resolve anywhere


def host_port(url: str) -> tuple[str, int]:
    """The URL's host and port, the port defaulted by scheme (80, or 443 for https)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
