"""Ask the EC2 instance metadata service (IMDS) whether it answers and whether the instance has a role.

botocore's credential chain only says "no credentials" when the instance profile gave nothing; it
does not say whether the IMDS was switched off, did not answer (the classic container on EC2 with
an IMDSv2 hop limit of 1: the token request never gets its answer), refused the connection (not
on EC2), or answered without a role. :func:`probe_imds` asks the same endpoint botocore uses, with
botocore's timeout, so a missing-credentials line can name the likely cause. It is called only
after the chain found nothing, once per retry of the start-up wait; nothing else depends on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ImdsAnswer = Literal["disabled", "no-answer", "unreachable", "no-role", "role"]

_TOKEN_PATH = "latest/api/token"  # noqa: S105 - a URL path, not a secret
_ROLE_PATH = "latest/meta-data/iam/security-credentials/"
_TOKEN_TTL_S = "60"  # noqa: S105 - seconds; the probe's token is used once


@dataclass(frozen=True, slots=True)
class ImdsProbe:
    """What the IMDS at ``endpoint`` did within ``timeout_s``.

    ``answer``: ``"disabled"`` (``AWS_EC2_METADATA_DISABLED``, not asked), ``"no-answer"`` (the
    token request timed out), ``"unreachable"`` (the connection failed: not on EC2, or blocked),
    ``"no-role"`` (it answers, the instance has no IAM role), ``"role"`` (it names a role).
    """

    endpoint: str
    timeout_s: float
    answer: ImdsAnswer


def imds_endpoint(session: Any) -> str:
    """The IMDS base URL botocore uses for ``session`` (custom endpoint, else IPv6 or IPv4 default)."""
    # Imported here: only a daemon that found no credentials in the environment asks the IMDS.
    from botocore.utils import METADATA_BASE_URL, METADATA_BASE_URL_IPv6, resolve_imds_endpoint_mode

    custom = session.get_config_variable("ec2_metadata_service_endpoint")
    if custom:
        return str(custom)
    ipv6 = resolve_imds_endpoint_mode(session) == "ipv6"
    return str(METADATA_BASE_URL_IPv6 if ipv6 else METADATA_BASE_URL)


def _join(base: str, path: str) -> str:
    return base + path if base.endswith("/") else f"{base}/{path}"


async def probe_imds(session: Any, env: Mapping[str, str] | None = None) -> ImdsProbe:
    """Ask the IMDS botocore would ask (``session``: its configuration variables) for a token, then a role."""
    env = os.environ if env is None else env
    endpoint = imds_endpoint(session)
    timeout_s = float(session.get_config_variable("metadata_service_timeout") or 1)
    if env.get("AWS_EC2_METADATA_DISABLED", "false").lower() == "true":
        return ImdsProbe(endpoint, timeout_s, "disabled")
    return ImdsProbe(endpoint, timeout_s, await _ask(endpoint, timeout_s))


async def _ask(endpoint: str, timeout_s: float) -> ImdsAnswer:
    # Imported here: only a daemon that found no credentials probes, and the default one has no aiohttp.
    import aiohttp

    # trust_env: botocore also sends IMDS requests through the environment's proxy settings.
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as http:
        try:
            headers = {"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL_S}
            async with http.put(_join(endpoint, _TOKEN_PATH), headers=headers) as response:
                token = await response.text() if response.status == 200 else None
            # Without a token (IMDSv2 off) the role is asked for as IMDSv1, as botocore does.
            headers = {"X-aws-ec2-metadata-token": token} if token else {}
            async with http.get(_join(endpoint, _ROLE_PATH), headers=headers) as response:
                named = response.status == 200 and bool((await response.text()).strip())
        except TimeoutError:
            return "no-answer"
        except (aiohttp.ClientError, OSError):
            return "unreachable"
    return "role" if named else "no-role"
