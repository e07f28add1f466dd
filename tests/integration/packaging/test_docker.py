"""docker/Dockerfile and .dockerignore: stages, entrypoint, user, health check, install steps,
build context.
"""

from __future__ import annotations

import json
import re

from asqsd.config import Settings
from tests.integration.packaging.support import (
    DOCKERIGNORE,
    HEALTH_PORT,
    ROOT,
    healthcheck_argv,
    instruction_args,
)


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    """A build stage and a runtime stage, both from python:3.11-slim; the venv is copied over."""
    args = dict(a.split("=", 1) for a in instruction_args("ARG") if "=" in a)
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f.split()[0]) for f in instruction_args("FROM")
    ]
    assert len(bases) >= 2
    assert set(bases) == {"python:3.11-slim"}
    assert any(c.startswith("--from=build") and "/opt/asqsd" in c for c in instruction_args("COPY"))


def test_dockerfile_exec_form_entrypoint_and_stop_signal() -> None:
    """ENTRYPOINT ["asqsd"], CMD ["run"] (exec form: asqsd is PID 1), STOPSIGNAL SIGTERM."""
    assert [json.loads(a) for a in instruction_args("ENTRYPOINT")] == [["asqsd"]]
    assert [json.loads(a) for a in instruction_args("CMD")] == [["run"]]
    assert instruction_args("STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_runs_as_non_root() -> None:
    """The last USER is the numeric non-root uid 10001, created in the runtime stage."""
    user = instruction_args("USER")[-1]
    assert user.split(":")[0] == "10001"
    assert any("useradd" in run and "--uid 10001" in run for run in instruction_args("RUN"))


def test_dockerfile_healthcheck_targets_healthz() -> None:
    """HEALTHCHECK in exec form with Python's urllib against 127.0.0.1:9325/healthz.

    Once the health endpoint's ``health_port`` setting exists, its default must be that port.
    """
    argv = healthcheck_argv()
    assert argv[:2] == ["python", "-c"]
    assert "127.0.0.1" in argv[2]
    assert "/healthz" in argv[2]
    assert str(HEALTH_PORT) in argv[2]
    assert "ASQSD_HEALTH_PORT" in argv[2]
    if "health_port" in Settings.model_fields:
        assert Settings.model_fields["health_port"].default == HEALTH_PORT


def test_dockerfile_install_steps_match_the_tested_ones() -> None:
    """The build stage builds a wheel and pip-installs it into /opt/asqsd (what the slow test runs)."""
    run = " ".join(instruction_args("RUN"))
    assert "pip wheel --no-deps" in run
    assert "-m venv --without-pip /opt/asqsd" in run
    assert "--python /opt/asqsd/bin/python install /dist/*.whl" in run


def dockerignore_excludes(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the build context (last match wins)."""
    excluded = False
    candidates = [relative]
    parts = relative.split("/")
    candidates += ["/".join(parts[:i]) for i in range(1, len(parts))]
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_only_what_the_build_copies() -> None:
    """Every COPY source is in the context; tests, venvs, caches and .git are not."""
    for copy in instruction_args("COPY"):
        if copy.startswith("--from"):
            continue
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert not dockerignore_excludes(source.rstrip("/")), source
    assert not dockerignore_excludes("src/asqsd/emulator/server.py")
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "src/asqsd/__pycache__/x.pyc"):
        assert dockerignore_excludes(path), path
