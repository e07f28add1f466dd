"""TLS for test servers on 127.0.0.1 / localhost: a throw-away self-signed certificate, and a TLS
front that puts https before a plain-HTTP server."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.proxy import StreamServer, splice_both


def self_signed_cert(tmp_path: Path) -> tuple[Path, Path]:
    """(cert, key) PEM files valid for ``localhost`` and ``127.0.0.1``; skips without cryptography."""
    x509 = pytest.importorskip("cryptography.x509", reason="the cryptography package is needed for a cert")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class TLSFront(StreamServer):
    """A TLS server on 127.0.0.1 passing each connection on to a plain-HTTP backend, counted.

    It puts https in front of a server that has none (moto_server, the emulator): ``url`` is
    ``https://localhost:<port>``, valid for :func:`self_signed_cert`'s certificate.
    """

    backend_port: int = 0
    cert: Path = Path()
    key: Path = Path()
    connections: int = 0

    @property
    def url(self) -> str:
        """The https URL of the front, by host name (so the certificate's name is checked)."""
        return f"https://localhost:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        backend = await asyncio.open_connection("127.0.0.1", self.backend_port)
        self._adopt(backend[1])
        await splice_both((reader, writer), backend)
