"""Where the SQS calls go: the region and endpoint for a queue URL, and where each came from.

The one place that decides both, so ``asqsd config`` prints exactly what the daemon's client
factory uses. :func:`resolve_target` is pure; :func:`aws_defaults` reads the AWS environment and
shared config file through a botocore session (no network).

Region, first found: the ``region`` setting; the region the queue URL names (host or LocalStack
path), else the one the endpoint URL names; ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the AWS
profile; ``us-east-1`` when the calls go to a host that is not AWS (it only signs requests). An AWS
host with no region anywhere is a :class:`~asqsd.errors.ConfigError`: AWS would refuse the calls.

Endpoint, first found: the ``endpoint_url`` setting; ``AWS_ENDPOINT_URL_SQS``,
``AWS_ENDPOINT_URL``, the profile's endpoint (the AWS SDK rules, which
``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` turns off); the queue URL's own ``scheme://host[:port]``
when that host is not AWS, or is an AWS host botocore would not pick from the region (a VPC
endpoint, FIPS, dual-stack); else none, meaning botocore's regional endpoint
(``sqs.<region>.amazonaws.com`` and its partition equivalents), as any AWS SDK uses for the
regional and legacy (``<region>.queue.amazonaws.com``) forms and for AWS hosts of no known form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from asqsd.config import Settings
from asqsd.errors import ConfigError

# The partitions' DNS suffixes (botocore's partitions.json; a unit test keeps them in step).
AWS_DNS_SUFFIXES = (
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "c2s.ic.gov",
    "sc2s.sgov.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
)
AWS_DUALSTACK_DNS_SUFFIXES = (
    "api.aws",
    "api.amazonwebservices.com.cn",
    "api.amazonwebservices.eu",
    "api.aws.ic.gov",
    "api.aws.scloud",
    "api.cloud-aws.adc-e.uk",
    "api.aws.hci.ic.gov",
)

# Signs requests to a host that is not AWS when nothing names a region (any value would do).
DEFAULT_REGION = "us-east-1"
DEFAULT_REGION_SOURCE = "default (the SQS host is not AWS; the region only signs requests)"

REGION_HINT = "set --region, ASQSD_REGION or AWS_REGION (or region in the --config file)"

# us-east-1, us-gov-west-1, cn-north-1, eusc-de-east-1, us-isob-east-1 ...
_REGION = r"(?P<region>[a-z]{2,4}(?:-[a-z]+)+-\d{1,2})"


def _any_of(suffixes: Iterable[str]) -> str:
    return "(?:" + "|".join(re.escape(suffix) for suffix in suffixes) + ")"


_DNS = _any_of(AWS_DNS_SUFFIXES)
_DUALSTACK_DNS = _any_of(AWS_DUALSTACK_DNS_SUFFIXES)


@dataclass(frozen=True, slots=True)
class HostForm:
    """One form of SQS host: its name, its pattern, whether AWS serves it, where calls go."""

    name: str
    pattern: re.Pattern[str]
    aws: bool
    # Calls go to the URL's own host: botocore would not pick that host from the region alone.
    own_endpoint: bool
    region: str | None = None  # the region a host that names none stands for


def _form(name: str, pattern: str, *, aws: bool, own_endpoint: bool, region: str | None = None) -> HostForm:
    return HostForm(name, re.compile(pattern), aws, own_endpoint, region)


# Tried in order; a host matches the whole pattern (hostnames are lower case once parsed).
HOST_FORMS: tuple[HostForm, ...] = (
    _form("VPC endpoint", rf"vpce-[a-z0-9-]+\.sqs\.{_REGION}\.vpce\.{_DNS}", aws=True, own_endpoint=True),
    _form("FIPS endpoint", rf"sqs-fips\.{_REGION}\.{_DNS}", aws=True, own_endpoint=True),
    _form("dual-stack endpoint", rf"sqs(?:-fips)?\.{_REGION}\.{_DUALSTACK_DNS}", aws=True, own_endpoint=True),
    _form("regional endpoint", rf"sqs\.{_REGION}\.{_DNS}", aws=True, own_endpoint=False),
    _form("legacy endpoint", rf"{_REGION}\.queue\.{_DNS}", aws=True, own_endpoint=False),
    _form("legacy endpoint", r"queue\.amazonaws\.com", aws=True, own_endpoint=False, region="us-east-1"),
    _form("LocalStack host", rf"sqs\.{_REGION}\.localhost\.localstack\.cloud", aws=False, own_endpoint=True),
)

# LocalStack's path-style queue URL: http://localhost:4566/queue/<region>/<account>/<name>.
_LOCALSTACK_PATH = re.compile(rf"/queue/{_REGION}/[^/]+/[^/]+/?")


@dataclass(frozen=True, slots=True)
class SQSHost:
    """What a queue or endpoint URL says about where SQS calls go."""

    form: str
    region: str | None  # the region the URL names, if it names one
    aws: bool  # an AWS domain: AWS serves it, so the calls need the right region
    own_endpoint: bool  # calls go to ``origin`` rather than the region's standard endpoint
    origin: str  # the URL's scheme://host[:port]


def describe_url(url: str) -> SQSHost:
    """Classify a queue (or endpoint) URL by its host; ValueError when it has no host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")  # a fully qualified name may end in a dot
    if not host:
        raise ValueError("has no host")
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    for form in HOST_FORMS:
        match = form.pattern.fullmatch(host)
        if match is not None:
            region = match.groupdict().get("region") or form.region
            return SQSHost(form.name, region, form.aws, form.own_endpoint, origin)
    if is_aws_host(host):
        return SQSHost("AWS host of unknown form", None, True, False, origin)
    path = _LOCALSTACK_PATH.fullmatch(parts.path)
    if path is not None:
        return SQSHost("LocalStack path", path.group("region"), False, True, origin)
    return SQSHost("host that is not AWS", None, False, True, origin)


def is_aws_host(host: str) -> bool:
    """Whether ``host`` lies in one of AWS's DNS domains."""
    host = host.lower()
    return any(
        host == suffix or host.endswith("." + suffix)
        for suffix in AWS_DNS_SUFFIXES + AWS_DUALSTACK_DNS_SUFFIXES
    )


@dataclass(frozen=True, slots=True)
class Sourced:
    """A value and where it came from (``flag --region``, ``env AWS_REGION``, ...)."""

    value: str
    source: str


@dataclass(frozen=True, slots=True)
class SQSTarget:
    """The region and endpoint the SQS client uses, each with where it came from."""

    region: str
    region_source: str
    endpoint_url: str | None  # None: botocore's regional endpoint for ``region``
    endpoint_source: str
    # Set when the region setting and an AWS queue URL disagree (the calls would fail).
    region_conflict: str | None = None

    @property
    def region_defaulted(self) -> bool:
        """True when nothing named a region and the default signs the requests."""
        return self.region_source == DEFAULT_REGION_SOURCE


def resolve_target(
    queue_url: str,
    *,
    region: Sourced | None = None,
    endpoint: Sourced | None = None,
    aws_region: Sourced | None = None,
    aws_endpoint: Sourced | None = None,
) -> SQSTarget:
    """Decide the region and endpoint (the order is in the module docstring).

    ``region`` / ``endpoint``: asqsd's own settings; ``aws_region`` / ``aws_endpoint``: what the
    AWS environment and profile name (:func:`aws_defaults`). Raises :class:`ConfigError` for a URL
    without a host, and for calls to an AWS host whose region nothing names.
    """
    queue = _describe(f"queue_url {queue_url!r}", queue_url)
    configured = endpoint or aws_endpoint
    calls_to, calls_what, endpoint_host = queue, f"queue_url {queue_url!r}", None
    if configured is not None:
        calls_what = f"endpoint_url {configured.value!r} (from {configured.source})"
        calls_to = endpoint_host = _describe(calls_what, configured.value)
    found = (
        region
        or _named(queue, "queue URL")
        or (_named(endpoint_host, "endpoint URL") if endpoint_host else None)
        or aws_region
    )
    if found is None:
        if calls_to.aws:
            raise ConfigError(
                [f"{calls_what}: no AWS region can be read from this {calls_to.form}; {REGION_HINT}"]
            )
        found = Sourced(DEFAULT_REGION, DEFAULT_REGION_SOURCE)
    endpoint_url, endpoint_source = _endpoint(queue, configured, found.value)
    return SQSTarget(found.value, found.source, endpoint_url, endpoint_source, _conflict(region, queue))


def _endpoint(queue: SQSHost, configured: Sourced | None, region: str) -> tuple[str | None, str]:
    if configured is not None:
        return configured.value, configured.source
    if queue.own_endpoint:
        return queue.origin, f"queue URL ({queue.form})"
    return None, f"botocore's endpoint for region {region} (queue URL: {queue.form})"


def _describe(what: str, url: str) -> SQSHost:
    try:
        return describe_url(url)
    except ValueError as exc:
        raise ConfigError([f"{what}: {exc}"]) from None


def _named(host: SQSHost, where: str) -> Sourced | None:
    return Sourced(host.region, f"{where} ({host.form})") if host.region else None


def _conflict(region: Sourced | None, queue: SQSHost) -> str | None:
    if region is None or not queue.aws or queue.region is None or region.value == queue.region:
        return None
    return (
        f"region {region.value} (from {region.source}) differs from the queue URL's region "
        f"{queue.region}: SQS refuses calls for the queue made in another region"
    )


def aws_defaults(session: Any, env: Mapping[str, str]) -> tuple[Sourced | None, Sourced | None]:
    """The region and SQS endpoint the AWS SDK configuration names, each with its source.

    ``session``: a botocore (or aiobotocore) session, for the shared config file's profile;
    ``env``: the environment. Raises :class:`ConfigError` for a profile that does not exist, an
    unreadable config file, or a region botocore would refuse.
    """
    profile, full_config, label = _aws_config(session)
    return _aws_region(env, profile, label), _aws_endpoint(env, profile, full_config, label)


def _aws_config(session: Any) -> tuple[Mapping[str, Any], Mapping[str, Any], str]:
    """The session's profile, its whole config and a label naming the profile (ConfigError when
    the profile or the file cannot be read)."""
    from botocore.exceptions import BotoCoreError

    try:
        profile: Mapping[str, Any] = session.get_scoped_config()
        full_config: Mapping[str, Any] = session.full_config
    except BotoCoreError as exc:
        raise ConfigError([f"AWS config: {exc}"]) from None
    return profile, full_config, f"AWS config, profile {session.profile or 'default'}"


def _aws_region(env: Mapping[str, str], profile: Mapping[str, Any], label: str) -> Sourced | None:
    found = next(
        (Sourced(env[var], f"env {var}") for var in ("AWS_REGION", "AWS_DEFAULT_REGION") if env.get(var)),
        None,
    )
    if found is None and profile.get("region"):
        found = Sourced(str(profile["region"]), label)
    if found is not None and not _valid_region(found.value):
        raise ConfigError([f"region {found.value!r} (from {found.source}): not an AWS region name"])
    return found


def _valid_region(region: str) -> bool:
    """botocore's check (a host label); botocore.utils imported only for a name not of AWS's form."""
    if _REGION_NAME.fullmatch(region) and len(region) <= 63:
        return True
    from botocore.exceptions import InvalidRegionError
    from botocore.utils import validate_region_name

    try:
        validate_region_name(region)
    except InvalidRegionError:
        return False
    return True


def _aws_endpoint(
    env: Mapping[str, str],
    profile: Mapping[str, Any],
    full_config: Mapping[str, Any],
    label: str,
    service: str = "sqs",
) -> Sourced | None:
    # The AWS SDKs' "service-specific endpoints" order, as botocore applies it to client creation.
    ignore = env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", profile.get("ignore_configured_endpoint_urls"))
    if str(ignore).lower() == "true":
        return None
    for var in (f"AWS_ENDPOINT_URL_{service.upper()}", "AWS_ENDPOINT_URL"):
        if env.get(var):
            return Sourced(env[var], f"env {var}")
    services = profile.get("services")
    if services:
        section = full_config.get("services", {}).get(services)
        if not section:
            raise ConfigError([f"{label}: services section {services!r} does not exist"])
        url = section.get(service, {}).get("endpoint_url")
        if url:
            return Sourced(str(url), f"{label}, services {services}")
    if profile.get("endpoint_url"):
        return Sourced(str(profile["endpoint_url"]), label)
    return None


def s3_endpoint(session: Any, env: Mapping[str, str]) -> Sourced | None:
    """The S3 endpoint the AWS SDK configuration names (``AWS_ENDPOINT_URL_S3``,
    ``AWS_ENDPOINT_URL``, the profile), by the same rules as the SQS one; None: AWS's own."""
    return configured_endpoint(session, env, "s3")


def configured_endpoint(session: Any, env: Mapping[str, str], service: str) -> Sourced | None:
    """The endpoint the AWS SDK configuration names for ``service`` (botocore's service name:
    ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``, the profile's ``services`` section or
    ``endpoint_url``); None: AWS's own."""
    profile, full_config, label = _aws_config(session)
    return _aws_endpoint(env, profile, full_config, label, service)


def sqs_target(
    settings: Settings, session: Any, env: Mapping[str, str], sources: Mapping[str, str] | None = None
) -> SQSTarget:
    """:func:`resolve_target` for ``settings`` and the AWS configuration of ``session`` / ``env``.

    ``sources`` labels the settings (``asqsd config`` passes where each came from).
    """
    if settings.queue_url is None:
        raise ConfigError(["queue_url is required"])
    labels = sources or {}
    aws_region, aws_endpoint = aws_defaults(session, env)
    return resolve_target(
        settings.queue_url,
        region=_setting(settings.region, labels.get("region", "setting region")),
        endpoint=_setting(settings.endpoint_url, labels.get("endpoint_url", "setting endpoint_url")),
        aws_region=aws_region,
        aws_endpoint=aws_endpoint,
    )


def _setting(value: str | None, source: str) -> Sourced | None:
    return Sourced(value, source) if value is not None else None


def regional_endpoint(session: Any, region: str, service: str = "sqs") -> str:
    """botocore's endpoint of ``service`` (SQS by default) for ``region`` (what a client given no
    endpoint calls); no network.

    ``session`` is a plain botocore session. For a region of the usual form (``eu-west-1``) and
    neither ``use_fips_endpoint`` nor ``use_dualstack_endpoint`` set, the endpoint comes from SQS's
    endpoint rule set and botocore's partitions, which give the same URL as a client's
    ``meta.endpoint_url`` (a unit test compares every region botocore knows) without building a
    client (that parses botocore's 1.2 MB endpoints.json: ~40 ms and ~8 MiB). Otherwise the two
    can differ, so the client decides, as before. Raises :class:`ConfigError` when botocore has no
    endpoint for the region.
    """
    from botocore.exceptions import BotoCoreError

    try:
        if _REGION_NAME.fullmatch(region) and not _endpoint_variant(session):
            return _ruleset_endpoint(session, region, service)
        return _client_endpoint(session, region, service)
    except BotoCoreError as exc:
        raise ConfigError([f"region {region!r}: {exc}"]) from None


_REGION_NAME = re.compile(_REGION)


def _endpoint_variant(session: Any) -> bool:
    """Whether the AWS configuration asks for FIPS or dual-stack endpoints."""
    return any(session.get_config_variable(name) for name in ("use_fips_endpoint", "use_dualstack_endpoint"))


def _ruleset_endpoint(session: Any, region: str, service: str) -> str:
    from botocore.endpoint_provider import EndpointProvider
    from botocore.utils import validate_region_name

    validate_region_name(region)
    loader = session.get_component("data_loader")
    rules = loader.load_service_model(service, "endpoint-rule-set-1")
    provider = EndpointProvider(rules, loader.load_data("partitions"))
    return str(provider.resolve_endpoint(Region=region, UseFIPS=False, UseDualStack=False).url)


def _client_endpoint(session: Any, region: str, service: str) -> str:
    # Unsigned, so no credentials are looked up.
    from botocore import UNSIGNED
    from botocore.config import Config

    client = session.create_client(service, region_name=region, config=Config(signature_version=UNSIGNED))
    try:
        return str(client.meta.endpoint_url)
    finally:
        client.close()
