"""Start real servers on 127.0.0.1 for tests: moto_server as a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path


def free_loopback_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the caller retries on a lost race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll ``url`` every 20 ms until it answers; False if the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.02)
    return False


def moto_server_command() -> str:
    """The moto_server script installed beside the running interpreter."""
    candidate = Path(sys.executable).parent / "moto_server"
    return str(candidate) if candidate.exists() else "moto_server"


# moto_server's own start-up (moto/server.py) with werkzeug's threaded=False: one request at a time.
_SERIAL_MOTO = """
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app),
           threaded=False, request_handler=MotoRequestHandler)
"""


def _moto_command(port: int, threaded: bool) -> list[str]:
    if threaded:
        return [moto_server_command(), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-c", _SERIAL_MOTO, "127.0.0.1", str(port)]


@contextlib.contextmanager
def run_moto_server(
    log_path: Path, env: Mapping[str, str] | None = None, *, threaded: bool = True
) -> Iterator[str]:
    """Run moto_server on a free loopback port; yields its base URL and stops it by PID.

    ``env``: extra environment variables for the server (e.g. ``INITIAL_NO_AUTH_ACTION_COUNT``).
    ``threaded=False`` serves one request at a time: moto's threaded server does not lock its
    backends, so two concurrent DynamoDB conditional writes can both succeed (never on AWS).
    """
    with log_path.open("wb") as log:
        proc: subprocess.Popen[bytes] | None = None
        port = 0
        for _attempt in range(3):
            port = free_loopback_port()
            proc = subprocess.Popen(
                _moto_command(port, threaded),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            )
            if wait_http(f"http://127.0.0.1:{port}/moto-api/", proc, timeout_s=15):
                break
            proc.kill()
            proc.wait()
            proc = None
        if proc is None:
            raise RuntimeError(f"moto_server did not start; see {log_path}")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
