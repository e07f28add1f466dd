"""The IMDS probe against a fake instance metadata service on 127.0.0.1 (never the real one)."""

from __future__ import annotations

from pathlib import Path

import botocore.session
import pytest

from asqsd.clients.sqs.imds import ImdsAnswer, imds_endpoint, probe_imds
from tests.support.imds import FakeImds, Mode


@pytest.fixture(autouse=True)
def loopback_imds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Whatever a test forgets, the session's IMDS is a closed loopback port; no AWS config file."""
    (tmp_path / "aws-config").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)


@pytest.mark.parametrize(
    ("mode", "answer"), [("answers", "role"), ("no-role", "no-role"), ("hangs", "no-answer")]
)
async def test_probe_reports_what_the_imds_did(
    monkeypatch: pytest.MonkeyPatch, mode: Mode, answer: ImdsAnswer
) -> None:
    """A role, no role, or a token request that never gets its answer (hop limit 1)."""
    async with FakeImds(mode) as imds:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
        session = botocore.session.get_session()
        probe = await probe_imds(session, env={})
    assert (probe.endpoint, probe.timeout_s, probe.answer) == (imds.endpoint, 1.0, answer)
    assert imds.count("PUT") == 1


async def test_closed_port_is_unreachable() -> None:
    """Nothing listening (not on EC2): unreachable, at once."""
    probe = await probe_imds(botocore.session.get_session(), env={})
    assert probe.answer == "unreachable"


async def test_disabled_is_not_asked() -> None:
    """AWS_EC2_METADATA_DISABLED=true: botocore skips the IMDS, and so does the probe."""
    async with FakeImds("answers") as imds:
        session = botocore.session.get_session()
        probe = await probe_imds(session, env={"AWS_EC2_METADATA_DISABLED": "true"})
    assert probe.answer == "disabled" and imds.calls == []


def test_endpoint_follows_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """The custom endpoint first, else the IPv6 or IPv4 default, as botocore chooses."""
    assert imds_endpoint(botocore.session.get_session()) == "http://127.0.0.1:9/"
    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")
    assert imds_endpoint(botocore.session.get_session()) == "http://[fd00:ec2::254]/"
    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
    assert imds_endpoint(botocore.session.get_session()) == "http://169.254.169.254/"
