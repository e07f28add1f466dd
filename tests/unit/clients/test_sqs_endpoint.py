"""Queue URL forms, and the region and endpoint the SQS client gets for each (with their sources).

Pure: no network. The few botocore sessions built here read a temporary AWS config file only.
"""

from __future__ import annotations

from pathlib import Path

import botocore.loaders
import botocore.session
import pytest

from asqsd.clients.sqs.aws_config import AwsConfigSession
from asqsd.clients.sqs.endpoint import (
    AWS_DNS_SUFFIXES,
    AWS_DUALSTACK_DNS_SUFFIXES,
    DEFAULT_REGION_SOURCE,
    Sourced,
    aws_defaults,
    describe_url,
    regional_endpoint,
    resolve_target,
    sqs_target,
)
from asqsd.config import load_settings
from asqsd.errors import ConfigError

VPCE = "vpce-0a1b2c3d4e5f67890-abcdefgh"

# url, form, region it names, AWS host, calls go to the URL's own host
REGIONAL, LEGACY, VPCE_FORM, FIPS, DUAL = (
    "regional endpoint",
    "legacy endpoint",
    "VPC endpoint",
    "FIPS endpoint",
    "dual-stack endpoint",
)
UNKNOWN, NOT_AWS = "AWS host of unknown form", "host that is not AWS"
# fmt: off
FORMS = [
    ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", REGIONAL, "eu-west-1", True, False),
    ("http://sqs.eu-west-1.amazonaws.com/123456789012/q", REGIONAL, "eu-west-1", True, False),
    ("https://SQS.EU-WEST-1.AMAZONAWS.COM/123456789012/q", REGIONAL, "eu-west-1", True, False),
    ("https://sqs.eu-west-1.amazonaws.com./123456789012/q", REGIONAL, "eu-west-1", True, False),
    ("https://sqs.ap-southeast-5.amazonaws.com/123456789012/q.fifo", REGIONAL, "ap-southeast-5", True, False),
    ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", REGIONAL, "cn-north-1", True, False),
    ("https://sqs.us-gov-west-1.amazonaws.com/123456789012/q", REGIONAL, "us-gov-west-1", True, False),
    ("https://sqs.us-gov-east-1.amazonaws.com/123456789012/q", REGIONAL, "us-gov-east-1", True, False),
    ("https://sqs.us-iso-east-1.c2s.ic.gov/123456789012/q", REGIONAL, "us-iso-east-1", True, False),
    ("https://eu-west-1.queue.amazonaws.com/123456789012/q", LEGACY, "eu-west-1", True, False),
    ("https://queue.amazonaws.com/123456789012/q", LEGACY, "us-east-1", True, False),
    ("https://cn-north-1.queue.amazonaws.com.cn/123456789012/q", LEGACY, "cn-north-1", True, False),
    (f"https://{VPCE}.sqs.us-east-1.vpce.amazonaws.com/123456789012/q", VPCE_FORM, "us-east-1", True, True),
    (f"https://{VPCE}-us-east-1a.sqs.us-east-1.vpce.amazonaws.com/1/q", VPCE_FORM, "us-east-1", True, True),
    (f"https://{VPCE}.sqs.cn-north-1.vpce.amazonaws.com.cn/1/q", VPCE_FORM, "cn-north-1", True, True),
    ("https://sqs-fips.us-east-1.amazonaws.com/123456789012/q", FIPS, "us-east-1", True, True),
    ("https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/q", FIPS, "us-gov-west-1", True, True),
    ("https://sqs.us-east-1.api.aws/123456789012/q", DUAL, "us-east-1", True, True),
    ("https://sqs-fips.us-east-2.api.aws/123456789012/q", DUAL, "us-east-2", True, True),
    ("https://sqs.amazonaws.com/123456789012/q", UNKNOWN, None, True, False),
    ("https://example.execute-api.amazonaws.com/123456789012/q", UNKNOWN, None, True, False),
    ("http://127.0.0.1:9324/000000000000/q", NOT_AWS, None, False, True),
    ("http://[::1]:9324/000000000000/q", NOT_AWS, None, False, True),
    ("http://sqs:9324/000000000000/default", NOT_AWS, None, False, True),
    ("http://localhost:9324/queue/q", NOT_AWS, None, False, True),
    ("https://sqs.eu-west-1.amazonaws.com.example.org/1/q", NOT_AWS, None, False, True),
    ("http://localhost:4566/queue/us-east-1/000000000000/q", "LocalStack path", "us-east-1", False, True),
    ("http://localhost:4566/queue/eu-west-3/000000000000/q", "LocalStack path", "eu-west-3", False, True),
    ("http://sqs.eu-west-2.localhost.localstack.cloud:4566/0/q", "LocalStack host", "eu-west-2", False, True),
]
# fmt: on


@pytest.mark.parametrize(("url", "form", "region", "aws", "own"), FORMS, ids=[f[0] for f in FORMS])
def test_every_queue_url_form(url: str, form: str, region: str | None, aws: bool, own: bool) -> None:
    """Each form is recognised: its name, the region it names, whether AWS serves it, and whether
    the calls go to its own host."""
    host = describe_url(url)
    assert (host.form, host.region, host.aws, host.own_endpoint) == (form, region, aws, own)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:9324/000000000000/q", "http://127.0.0.1:9324"),
        ("http://[::1]:9324/000000000000/q", "http://[::1]:9324"),
        ("http://localhost/000000000000/q", "http://localhost"),
        ("https://user:secret@sqs.internal:8443/1/q", "https://sqs.internal:8443"),
        (
            f"https://{VPCE}.sqs.us-east-1.vpce.amazonaws.com/1/q",
            f"https://{VPCE}.sqs.us-east-1.vpce.amazonaws.com",
        ),
    ],
)
def test_origin_is_scheme_host_and_port_without_credentials(url: str, origin: str) -> None:
    """The endpoint taken from a queue URL: scheme, host and port as written, never its user info."""
    assert describe_url(url).origin == origin


def test_no_host_is_a_config_error() -> None:
    """A queue URL without a host is named as such."""
    with pytest.raises(ValueError, match="has no host"):
        describe_url("http:///1/q")
    with pytest.raises(ConfigError, match=r"queue_url 'http:///1/q': has no host"):
        resolve_target("http:///1/q")


def test_dns_suffixes_match_botocores_partitions() -> None:
    """Every partition botocore knows is an AWS domain here (a new partition fails this test)."""
    partitions = botocore.loaders.create_loader().load_data("partitions")["partitions"]
    assert {p["outputs"]["dnsSuffix"] for p in partitions} == set(AWS_DNS_SUFFIXES)
    assert {p["outputs"]["dualStackDnsSuffix"] for p in partitions} == set(AWS_DUALSTACK_DNS_SUFFIXES)


@pytest.mark.parametrize(
    "url", [url for url, form, *_ in FORMS if form == REGIONAL and url.startswith("https://sqs.")]
)
def test_regional_urls_name_the_endpoint_botocore_picks(url: str) -> None:
    """For the regional form, botocore's endpoint for the region is the URL's own host: leaving the
    endpoint to botocore sends the calls where the URL points."""
    host = describe_url(url)
    assert host.region is not None
    assert regional_endpoint(botocore.session.Session(), host.region) == host.origin.lower().rstrip(".")


def test_regional_endpoint_is_a_botocore_clients_for_every_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a botocore client (the rule set and the partitions), the same endpoint a client's
    ``meta.endpoint_url`` names, for every region botocore knows; also from an AwsConfigSession."""
    from botocore import UNSIGNED
    from botocore.config import Config

    for variable in ("AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    session, ours = botocore.session.Session(), AwsConfigSession()
    partitions = botocore.loaders.create_loader().load_data("partitions")["partitions"]
    regions = [region for partition in partitions for region in partition["regions"]]
    assert len(regions) > 30
    config = Config(signature_version=UNSIGNED)
    for region in regions:
        client = session.create_client("sqs", region_name=region, config=config)
        assert regional_endpoint(session, region) == client.meta.endpoint_url, region
        assert regional_endpoint(ours, region) == client.meta.endpoint_url, region
        client.close()


# --- resolution: which value wins, and the source it reports ------------------------------------


def test_aws_queue_urls_take_their_region_and_leave_the_endpoint_to_botocore() -> None:
    """sqs.<region> and the legacy form: region from the URL, endpoint botocore's for that region."""
    for url in ("https://sqs.eu-west-1.amazonaws.com/1/q", "https://eu-west-1.queue.amazonaws.com/1/q"):
        target = resolve_target(url, aws_region=Sourced("us-east-1", "env AWS_REGION"))
        assert (target.region, target.endpoint_url) == ("eu-west-1", None)
        assert target.region_source.startswith("queue URL (")
        assert target.endpoint_source.startswith("botocore's endpoint for region eu-west-1")


def test_vpc_endpoint_and_fips_urls_are_their_own_endpoint() -> None:
    """Calls go through the VPC endpoint (or the FIPS host) the URL names, signed for its region."""
    url = f"https://{VPCE}.sqs.eu-central-1.vpce.amazonaws.com/123456789012/q"
    target = resolve_target(url)
    assert target.endpoint_url == f"https://{VPCE}.sqs.eu-central-1.vpce.amazonaws.com"
    assert (target.region, target.endpoint_source) == ("eu-central-1", "queue URL (VPC endpoint)")
    fips = resolve_target("https://sqs-fips.us-east-2.amazonaws.com/1/q")
    assert (fips.region, fips.endpoint_url) == ("us-east-2", "https://sqs-fips.us-east-2.amazonaws.com")


def test_non_aws_host_is_the_endpoint_and_the_region_only_signs() -> None:
    """A loopback queue URL with nothing else set: calls go to it, never to AWS; the region is the
    AWS environment's, else the default, said so."""
    url = "http://127.0.0.1:9324/000000000000/q"
    target = resolve_target(url)
    assert target.endpoint_url == "http://127.0.0.1:9324"
    assert target.endpoint_source == "queue URL (host that is not AWS)"
    assert (target.region, target.region_source) == ("us-east-1", DEFAULT_REGION_SOURCE)
    assert target.region_defaulted
    from_env = resolve_target(url, aws_region=Sourced("eu-north-1", "env AWS_REGION"))
    assert (from_env.region, from_env.region_source) == ("eu-north-1", "env AWS_REGION")
    assert not from_env.region_defaulted


def test_endpoint_precedence() -> None:
    """The endpoint setting, then the AWS configuration's endpoint, then the URL's own host."""
    url = "http://127.0.0.1:9324/000000000000/q"
    setting = Sourced("http://127.0.0.1:1", "flag --endpoint-url")
    aws = Sourced("http://127.0.0.1:2", "env AWS_ENDPOINT_URL_SQS")
    assert resolve_target(url, endpoint=setting, aws_endpoint=aws).endpoint_url == "http://127.0.0.1:1"
    target = resolve_target(url, aws_endpoint=aws)
    assert (target.endpoint_url, target.endpoint_source) == ("http://127.0.0.1:2", "env AWS_ENDPOINT_URL_SQS")
    # Also for an AWS queue URL: a configured endpoint (a proxy, moto, LocalStack) wins.
    aws_url = resolve_target("https://sqs.eu-west-1.amazonaws.com/1/q", endpoint=setting)
    assert (aws_url.endpoint_url, aws_url.region) == ("http://127.0.0.1:1", "eu-west-1")


def test_region_precedence() -> None:
    """The region setting, then the queue URL, then the endpoint URL, then the AWS configuration."""
    url = "https://sqs.eu-west-1.amazonaws.com/1/q"
    setting = Sourced("eu-west-1", "env ASQSD_REGION")
    aws = Sourced("ap-south-1", "env AWS_REGION")
    assert resolve_target(url, region=setting, aws_region=aws).region_source == "env ASQSD_REGION"
    assert resolve_target(url, aws_region=aws).region == "eu-west-1"
    vpce = Sourced(f"https://{VPCE}.sqs.sa-east-1.vpce.amazonaws.com", "flag --endpoint-url")
    via_endpoint = resolve_target("http://sqs:9324/0/q", endpoint=vpce, aws_region=aws)
    assert (via_endpoint.region, via_endpoint.region_source) == ("sa-east-1", "endpoint URL (VPC endpoint)")
    assert resolve_target("http://sqs:9324/0/q", aws_region=aws).region == "ap-south-1"


def test_aws_host_without_a_region_is_a_config_error_naming_what_to_set() -> None:
    """An AWS host whose region nothing names: refuse, and say which settings fix it."""
    with pytest.raises(ConfigError) as caught:
        resolve_target("https://sqs.amazonaws.com/123456789012/q")
    (problem,) = caught.value.problems
    assert problem.startswith("queue_url 'https://sqs.amazonaws.com/123456789012/q': ")
    assert "--region, ASQSD_REGION or AWS_REGION" in problem
    # With a region from anywhere the calls go to that region's endpoint, as with any AWS SDK.
    target = resolve_target(
        "https://sqs.amazonaws.com/1/q", aws_region=Sourced("us-west-2", "env AWS_REGION")
    )
    assert (target.region, target.endpoint_url) == ("us-west-2", None)
    # An AWS endpoint without a region is refused too, naming the endpoint and its source.
    unknown = Sourced("https://sqs.amazonaws.com", "env AWS_ENDPOINT_URL")
    with pytest.raises(
        ConfigError, match=r"endpoint_url 'https://sqs.amazonaws.com' \(from env AWS_ENDPOINT_URL\)"
    ):
        resolve_target("http://127.0.0.1:9324/0/q", aws_endpoint=unknown)


def test_aws_queue_url_with_a_non_aws_endpoint_needs_no_region() -> None:
    """An endpoint that is not AWS only needs a region to sign with: the default does."""
    target = resolve_target(
        "https://sqs.amazonaws.com/1/q", endpoint=Sourced("http://127.0.0.1:5000", "flag --endpoint-url")
    )
    assert (target.region, target.endpoint_url) == ("us-east-1", "http://127.0.0.1:5000")


def test_region_setting_that_contradicts_an_aws_queue_url_is_reported() -> None:
    """Kept (the setting wins) but reported: the calls would fail."""
    target = resolve_target(
        "https://sqs.eu-west-1.amazonaws.com/1/q", region=Sourced("us-east-1", "flag --region")
    )
    assert target.region == "us-east-1"
    assert target.region_conflict is not None
    assert (
        "us-east-1 (from flag --region)" in target.region_conflict and "eu-west-1" in target.region_conflict
    )
    assert (
        resolve_target(
            "http://localhost:4566/queue/eu-west-3/0/q", region=Sourced("x-y-1", "f")
        ).region_conflict
        is None
    )


# --- the AWS configuration: environment and shared config file ----------------------------------


def _session(tmp_path: Path, config: str, profile: str | None = None) -> botocore.session.Session:
    path = tmp_path / "config"
    path.write_text(config)
    session = botocore.session.Session()
    session.set_config_variable("config_file", str(path))
    session.set_config_variable("credentials_file", str(tmp_path / "no-credentials"))
    if profile is not None:
        session.set_config_variable("profile", profile)
    return session


def test_aws_region_from_environment_then_profile(tmp_path: Path) -> None:
    """AWS_REGION, then AWS_DEFAULT_REGION, then the profile's region."""
    session = _session(tmp_path, "[default]\nregion = eu-south-1\n")
    both = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}
    assert aws_defaults(session, both)[0] == Sourced("eu-west-1", "env AWS_REGION")
    assert aws_defaults(session, {"AWS_DEFAULT_REGION": "eu-west-2"})[0] == Sourced(
        "eu-west-2", "env AWS_DEFAULT_REGION"
    )
    assert aws_defaults(session, {"AWS_REGION": ""})[0] == Sourced(
        "eu-south-1", "AWS config, profile default"
    )
    assert aws_defaults(_session(tmp_path, ""), {})[0] is None


def test_aws_endpoint_in_the_sdk_order(tmp_path: Path) -> None:
    """AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, the profile's services section, its endpoint_url;
    AWS_IGNORE_CONFIGURED_ENDPOINT_URLS (or the profile's setting) turns them all off."""
    config = (
        "[profile dev]\nendpoint_url = http://127.0.0.1:4\nservices = local\n"
        "[services local]\nsqs =\n  endpoint_url = http://127.0.0.1:3\n"
        "[profile plain]\nendpoint_url = http://127.0.0.1:4\n"
        "[profile ignoring]\nendpoint_url = http://127.0.0.1:4\nignore_configured_endpoint_urls = true\n"
    )
    dev = _session(tmp_path, config, "dev")
    env = {"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:1", "AWS_ENDPOINT_URL": "http://127.0.0.1:2"}
    assert aws_defaults(dev, env)[1] == Sourced("http://127.0.0.1:1", "env AWS_ENDPOINT_URL_SQS")
    assert aws_defaults(dev, {"AWS_ENDPOINT_URL": "http://127.0.0.1:2"})[1] == Sourced(
        "http://127.0.0.1:2", "env AWS_ENDPOINT_URL"
    )
    assert aws_defaults(dev, {})[1] == Sourced(
        "http://127.0.0.1:3", "AWS config, profile dev, services local"
    )
    plain = _session(tmp_path, config, "plain")
    assert aws_defaults(plain, {})[1] == Sourced("http://127.0.0.1:4", "AWS config, profile plain")
    assert aws_defaults(dev, {**env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"})[1] is None
    assert aws_defaults(_session(tmp_path, config, "ignoring"), {})[1] is None


@pytest.mark.parametrize(
    ("config", "profile", "env", "message"),
    [
        ("[default]\n", "missing", {}, "AWS config: .*missing"),
        ("[default]\nservices = nowhere\n", None, {}, "services section 'nowhere' does not exist"),
        ("[default]\n", None, {"AWS_REGION": "not a region!"}, r"'not a region!' \(from env AWS_REGION\)"),
    ],
)
def test_bad_aws_configuration_is_a_config_error(
    tmp_path: Path, config: str, profile: str | None, env: dict[str, str], message: str
) -> None:
    """A missing profile, a missing services section, a malformed region: named, not a traceback."""
    with pytest.raises(ConfigError, match=message):
        aws_defaults(_session(tmp_path, config, profile), env)


def test_sqs_target_labels_the_settings_with_their_sources(tmp_path: Path) -> None:
    """asqsd config passes where each setting came from; the daemon's factory gets generic labels."""
    loaded = load_settings(
        {"queue_url": "http://127.0.0.1:9324/0/q", "region": "eu-west-1"},
        {"ASQSD_ENDPOINT_URL": "http://127.0.0.1:9999"},
    )
    session = _session(tmp_path, "")
    labelled = sqs_target(loaded.settings, session, {}, loaded.sources)
    assert (labelled.region_source, labelled.endpoint_source) == ("flag --region", "env ASQSD_ENDPOINT_URL")
    plain = sqs_target(loaded.settings, session, {})
    assert (plain.region_source, plain.endpoint_source) == ("setting region", "setting endpoint_url")
    assert (plain.region, plain.endpoint_url) == ("eu-west-1", "http://127.0.0.1:9999")
