"""The Dockerfile's install steps, for real: wheel, venv without pip, install, `asqsd version`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from asqsd import __version__
from tests.integration.packaging.support import ROOT


def pip(*args: str, timeout: float = 120) -> None:
    """Run this interpreter's pip; fail with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    """The Dockerfile's build steps: wheel → venv without pip → install → `asqsd version` works.

    Also checks what the compose services need from that venv: the emulator module and aiohttp.
    """
    dist = tmp_path / "dist"
    pip("wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT))
    (wheel,) = dist.glob("asqsd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "asqsd/emulator/__main__.py" in names
    assert "asqsd/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    pip("--python", str(python), "install", str(wheel))

    version = subprocess.run(
        [str(venv / "bin" / "asqsd"), "version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"asqsd {__version__}"
    check = "import aiohttp, asqsd.emulator.__main__, yaml"
    assert subprocess.run([str(python), "-c", check], timeout=30, check=False).returncode == 0
