"""LeanCloudWatch's PutMetricData request is botocore's: the same JSON body and protocol headers
as botocore's JSON serializer makes from CloudWatch's own service model."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import botocore.loaders
import botocore.model
import botocore.serialize
import orjson
import pytest

from asqsd.clients.cloudwatch import TARGET, encode_put_metric_data

_DIMS = [{"Name": "EnvironmentName", "Value": "my-env"}, {"Name": "QueueName", "Value": "jobs"}]


def _botocore_request(params: dict[str, Any]) -> dict[str, Any]:
    loader = botocore.loaders.create_loader()
    model = botocore.model.ServiceModel(loader.load_service_model("cloudwatch", "service-2"), "cloudwatch")
    request: dict[str, Any] = botocore.serialize.JSONSerializer().serialize_to_request(
        params, model.operation_model("PutMetricData")
    )
    return request


@pytest.mark.parametrize(
    "timestamp",
    [
        dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 6, 10, 0, 0, 3691, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 6, 11, 0, 0, 500000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(2026, 12, 6, 10, 0, 0, 999999),  # naive: UTC, as botocore reads it
    ],
)
def test_the_body_is_botocores(timestamp: dt.datetime) -> None:
    data = [
        {"MetricName": "Health", "Dimensions": _DIMS[:1], "Value": 1.0},
        {
            "MetricName": "Deliveries2xx",
            "Dimensions": _DIMS,
            "Timestamp": timestamp,
            "Unit": "Count",
            "Value": 7.0,
        },
        {
            "MetricName": "ProcessingTime",
            "Dimensions": _DIMS,
            "Timestamp": timestamp,
            "Unit": "Milliseconds",
            "Values": [5.0, 50.0, 500.0],
            "Counts": [3.0, 2.0, 1.0],
        },
    ]
    reference = _botocore_request({"Namespace": "ElasticBeanstalk/SQSD", "MetricData": data})
    assert orjson.loads(encode_put_metric_data("ElasticBeanstalk/SQSD", data)) == json.loads(
        reference["body"]
    )


def test_the_protocol_headers_are_the_ones_the_signer_sends() -> None:
    headers = _botocore_request({"Namespace": "n", "MetricData": [{"MetricName": "m", "Value": 1.0}]})[
        "headers"
    ]
    # CachedKeySigV4 sends and signs exactly these three for every call (as for SQS).
    assert headers["X-Amz-Target"] == TARGET
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert headers["x-amzn-query-mode"] == "true"


@pytest.mark.parametrize("token", [None, "session-token"])
def test_the_signature_is_botocores_for_cloudwatch(token: str | None) -> None:
    """The SQS signer with service ``monitoring`` signs a PutMetricData as botocore's SigV4Auth does."""
    from unittest import mock

    from botocore.credentials import ReadOnlyCredentials

    from asqsd.clients.sqs.sigv4 import BotocoreSigV4, CachedKeySigV4

    url = "https://monitoring.eu-west-1.amazonaws.com/"
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", token)
    body = encode_put_metric_data("n", [{"MetricName": "m", "Value": 1.0}])
    moment = dt.datetime(2026, 12, 6, 7, 8, 9)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        via_botocore = BotocoreSigV4(url, "eu-west-1", "monitoring").sign(TARGET, body, credentials)
    cached = CachedKeySigV4(url, "eu-west-1", "monitoring").sign_at(
        TARGET, body, credentials, "20261206T070809Z"
    )
    assert cached == via_botocore
    assert "/eu-west-1/monitoring/aws4_request" in cached["Authorization"]
