"""The one URL -> host/port helper (asqsd.addresses), as the clients, probes and config use it."""

from __future__ import annotations

import pytest

from asqsd.addresses import URLAddress, http_address, join_host_port, url_address, url_host


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost", URLAddress("http", "localhost", 80, False)),
        ("http://LocalHost:8080/", URLAddress("http", "localhost", 8080, True)),
        (
            "https://sqs.eu-west-1.amazonaws.com/",
            URLAddress("https", "sqs.eu-west-1.amazonaws.com", 443, False),
        ),
        ("https://h:8443/q?x=1", URLAddress("https", "h", 8443, True)),
        ("http://h:80", URLAddress("http", "h", 80, True)),
        ("http://h:", URLAddress("http", "h", 80, False)),  # an empty port is no port
        ("http://user:secret@h:81", URLAddress("http", "h", 81, True)),
        ("http://[::1]", URLAddress("http", "::1", 80, False)),
        ("http://[FE80::1]:8080", URLAddress("http", "fe80::1", 8080, True)),
        ("http://bücher.de", URLAddress("http", "xn--bcher-kva.de", 80, False)),
        ("ftp://h", URLAddress("ftp", "h", 80, False)),  # any other scheme: port 80 unless given
    ],
)
def test_url_address(url: str, expected: URLAddress) -> None:
    assert url_address(url) == expected


@pytest.mark.parametrize(
    ("url", "host_header", "host_port"),
    [
        ("http://localhost", "localhost", "localhost:80"),
        ("http://localhost:80", "localhost", "localhost:80"),
        ("http://localhost:8080", "localhost:8080", "localhost:8080"),
        ("https://worker.internal:443/", "worker.internal", "worker.internal:443"),
        ("https://worker.internal:80", "worker.internal:80", "worker.internal:80"),
        ("http://h:443", "h:443", "h:443"),
        ("http://[::1]", "[::1]", "[::1]:80"),
        ("http://[::1]:81", "[::1]:81", "[::1]:81"),
        ("https://[2001:db8::1]:443", "[2001:db8::1]", "[2001:db8::1]:443"),
    ],
)
def test_host_header_and_host_port(url: str, host_header: str, host_port: str) -> None:
    """The Host header names the port only when it is not the scheme's default; IPv6 in brackets."""
    address = url_address(url)
    assert address.host_header == host_header
    assert join_host_port(address.host, address.port) == host_port


@pytest.mark.parametrize("url", ["http://", "http:///path", "localhost:8080", "/just/a/path", ""])
def test_missing_host_is_an_error(url: str) -> None:
    with pytest.raises(ValueError):
        url_address(url)


@pytest.mark.parametrize("url", ["http://h:99999", "http://h:port", "http://h:-1"])
def test_malformed_port_is_an_error(url: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)port"):
        url_address(url)


def test_http_address_takes_only_http_and_https() -> None:
    assert http_address("https://h").port == 443
    assert http_address("http://h").port == 80
    with pytest.raises(ValueError, match="scheme"):
        http_address("ftp://h")
    with pytest.raises(ValueError, match="no host"):
        http_address("http://")


def test_hosts_written_back_into_urls() -> None:
    assert url_host("example.com") == "example.com"
    assert url_host("127.0.0.1") == "127.0.0.1"
    assert url_host("::1") == "[::1]"
    assert join_host_port("::1", 8080) == "[::1]:8080"
    assert join_host_port("localhost", 80) == "localhost:80"
