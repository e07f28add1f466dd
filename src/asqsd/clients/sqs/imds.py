"""Ask the EC2 instance metadata service (IMDS) whether it answers and whether the instance has a role.

botocore's credential chain only says "no credentials" when the instance profile gave nothing; it
does not say whether the IMDS was switched off, did not answer (the classic container on EC2 with
an IMDSv2 hop limit of 1: the token request never gets its answer), refused the connection (not
on EC2), or answered without a role. :func:`probe_imds` asks the same endpoint botocore uses, with
botocore's timeout, so a missing-credentials line can name the likely cause. It is called only
after the chain found nothing, once per retry of the start-up wait; nothing else depends on it.
The endpoint botocore asks (:func:`imds_endpoint`) and the paths are shared with
:mod:`asqsd.clients.sqs.instance_profile`, which fetches the role's credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ImdsAnswer = Literal["disabled", "no-answer", "unreachable", "no-role", "role"]

TOKEN_PATH = "latest/api/token"  # noqa: S105 - a URL path, not a secret
ROLE_PATH = "latest/meta-data/iam/security-credentials/"  # + the role name: its credentials
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


# botocore.utils' METADATA_BASE_URL, METADATA_BASE_URL_IPv6 and METADATA_ENDPOINT_MODES: kept here so
# that the endpoint is known without importing botocore.utils (and urllib3 under it).
IPV4_ENDPOINT = "http://169.254.169.254/"
IPV6_ENDPOINT = "http://[fd00:ec2::254]/"
_ENDPOINT_MODES = ("ipv4", "ipv6")


def imds_endpoint(session: Any) -> str:
    """The IMDS base URL botocore uses for ``session`` (custom endpoint, else IPv6 or IPv4 default)."""
    custom = session.get_config_variable("ec2_metadata_service_endpoint")
    if custom:
        return str(custom)
    return IPV6_ENDPOINT if imds_endpoint_mode(session) == "ipv6" else IPV4_ENDPOINT


def imds_endpoint_mode(session: Any) -> str:
    """botocore's ``resolve_imds_endpoint_mode``: the mode setting (InvalidIMDSEndpointModeError if it
    is neither ipv4 nor ipv6, in any case), else ``imds_use_ipv6``."""
    mode = session.get_config_variable("ec2_metadata_service_endpoint_mode")
    if mode is not None:
        if mode.lower() not in _ENDPOINT_MODES:
            from botocore.exceptions import InvalidIMDSEndpointModeError

            raise InvalidIMDSEndpointModeError(mode=mode, valid_modes=_ENDPOINT_MODES)
        return str(mode.lower())
    return "ipv6" if session.get_config_variable("imds_use_ipv6") else "ipv4"


def imds_url(base: str, path: str) -> str:
    """``path`` under the base URL, joined as botocore joins them."""
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
            async with http.put(imds_url(endpoint, TOKEN_PATH), headers=headers) as response:
                token = await response.text() if response.status == 200 else None
            # Without a token (IMDSv2 off) the role is asked for as IMDSv1, as botocore does.
            headers = {"X-aws-ec2-metadata-token": token} if token else {}
            async with http.get(imds_url(endpoint, ROLE_PATH), headers=headers) as response:
                named = response.status == 200 and bool((await response.text()).strip())
        except TimeoutError:
            return "no-answer"
        except (aiohttp.ClientError, OSError):
            return "unreachable"
    return "role" if named else "no-role"
