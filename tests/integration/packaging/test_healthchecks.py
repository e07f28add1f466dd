"""The Dockerfile HEALTHCHECK and the Kubernetes exec probes, run for real against loopback
servers.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

from tests.integration.packaging.support import HEALTH_PORT, container, healthcheck_argv, run_check
from tests.support.servers import free_loopback_port


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET with the server's ``status`` and records the paths asked for."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@contextlib.contextmanager
def status_server(status: int) -> Iterator[http.server.ThreadingHTTPServer]:
    """A loopback HTTP server answering every GET with ``status``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    server.status = status  # type: ignore[attr-defined]
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_dockerfile_healthcheck_passes_and_fails() -> None:
    """The HEALTHCHECK one-liner exits 0 on a 200, non-zero on a 503 and on a refused connection."""
    argv = healthcheck_argv()
    with status_server(200) as server:
        assert run_check(argv, {"ASQSD_HEALTH_PORT": str(server.server_port)}) == 0
        assert server.paths == ["/healthz"]  # type: ignore[attr-defined]
    with status_server(503) as server:
        assert run_check(argv, {"ASQSD_HEALTH_PORT": str(server.server_port)}) != 0
    assert run_check(argv, {"ASQSD_HEALTH_PORT": str(free_loopback_port())}) != 0


def test_k8s_probe_commands_pass_and_fail(k8s: dict[str, dict[str, Any]]) -> None:
    """The exec probes' one-liners exit 0 on a 200 and non-zero on a 503 (port rewritten)."""
    sidecar = container(k8s, "asqsd")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        argv = sidecar[probe]["exec"]["command"]
        for status, ok in ((200, True), (503, False)):
            with status_server(status) as server:
                moved = [a.replace(f":{HEALTH_PORT}/", f":{server.server_port}/") for a in argv]
                assert (run_check(moved) == 0) is ok, (probe, status)
                assert server.paths == [path]  # type: ignore[attr-defined]
