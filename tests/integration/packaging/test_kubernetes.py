"""deploy/kubernetes/sidecar.yaml: kinds, field names, settings, hardening, probes, KEDA."""

from __future__ import annotations

from typing import Any

from tests.integration.packaging.support import (
    HEALTH_PORT,
    asqsd_names,
    assert_real_settings,
    configmap_settings,
    container,
    pod_spec,
    shutdown_budget_s,
)

KNOWN_KINDS = {
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
CONTAINER_FIELDS = {
    "name", "image", "command", "args", "env", "envFrom", "ports", "lifecycle", "livenessProbe",
    "readinessProbe", "startupProbe", "securityContext", "resources", "volumeMounts", "workingDir",
    "imagePullPolicy", "restartPolicy",
}  # fmt: skip
PROBE_FIELDS = {
    "exec", "httpGet", "tcpSocket", "grpc", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
    "failureThreshold", "successThreshold", "terminationGracePeriodSeconds",
}  # fmt: skip
SCALED_OBJECT_FIELDS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}  # fmt: skip
TRIGGER_FIELDS = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
SQS_SCALER_METADATA = {
    "queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion", "awsEndpoint",
    "identityOwner", "scaleOnInFlight", "scaleOnDelayed", "awsRoleArn",
}  # fmt: skip
POD_IDENTITY_FIELDS = {"provider", "identityOwner", "roleArn", "identityId"}


def test_k8s_kinds_and_api_versions(k8s: dict[str, dict[str, Any]]) -> None:
    """Only real kinds with their real apiVersions; every object is named."""
    found = {(obj["apiVersion"], kind) for kind, obj in k8s.items()}
    assert found == KNOWN_KINDS
    assert all(obj["metadata"]["name"] for obj in k8s.values())


def test_k8s_env_names_are_settings_and_load(k8s: dict[str, dict[str, Any]]) -> None:
    """ConfigMap keys and container env: real ASQSD_* settings whose values validate."""
    data = k8s["ConfigMap"]["data"]
    assert asqsd_names(data)
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    assert_real_settings(data)
    assert_real_settings({e["name"]: e.get("value") for e in container(k8s, "asqsd")["env"]})
    settings = configmap_settings(k8s)
    assert settings.worker_url == "http://127.0.0.1:8080"
    (ref,) = container(k8s, "asqsd")["envFrom"]
    assert ref["configMapRef"]["name"] == k8s["ConfigMap"]["metadata"]["name"]


def test_k8s_container_fields_are_real(k8s: dict[str, dict[str, Any]]) -> None:
    """Container and probe fields are core/v1 field names (catches typos no parser would)."""
    for spec in pod_spec(k8s)["containers"]:
        assert set(spec) <= CONTAINER_FIELDS, spec["name"]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert set(spec.get(probe, {})) <= PROBE_FIELDS, (spec["name"], probe)


def test_k8s_asqsd_is_hardened_and_probed(k8s: dict[str, dict[str, Any]]) -> None:
    """Non-root, read-only root, no privilege escalation; probes hit /healthz and /readyz."""
    sidecar = container(k8s, "asqsd")
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod_spec(k8s)["securityContext"]["runAsNonRoot"] is True
    assert f"127.0.0.1:{HEALTH_PORT}/healthz" in " ".join(sidecar["livenessProbe"]["exec"]["command"])
    assert f"127.0.0.1:{HEALTH_PORT}/readyz" in " ".join(sidecar["readinessProbe"]["exec"]["command"])


def test_k8s_grace_period_covers_the_shutdown(k8s: dict[str, dict[str, Any]]) -> None:
    """terminationGracePeriodSeconds > asqsd's budget; the app outlives asqsd's grace period."""
    settings = configmap_settings(k8s)
    grace = pod_spec(k8s)["terminationGracePeriodSeconds"]
    assert grace > shutdown_budget_s(settings)
    app_sleep = container(k8s, "app")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert settings.shutdown_grace_s + settings.cancel_deadline_s <= app_sleep < grace


def test_k8s_keda_scales_the_deployment_on_the_same_queue(k8s: dict[str, dict[str, Any]]) -> None:
    """ScaledObject targets the Deployment, aws-sqs-queue on asqsd's queue, auth by reference."""
    spec = k8s["ScaledObject"]["spec"]
    assert set(spec) <= SCALED_OBJECT_FIELDS
    target = spec["scaleTargetRef"]
    deployment = k8s["Deployment"]
    assert (target["apiVersion"], target["kind"]) == (deployment["apiVersion"], "Deployment")
    assert target["name"] == deployment["metadata"]["name"]
    (trigger,) = spec["triggers"]
    assert set(trigger) <= TRIGGER_FIELDS
    assert trigger["type"] == "aws-sqs-queue"
    meta = trigger["metadata"]
    assert set(meta) <= SQS_SCALER_METADATA
    assert all(isinstance(v, str) for v in meta.values()), "trigger metadata values are strings"
    settings = configmap_settings(k8s)
    assert meta["queueURL"] == settings.queue_url
    assert f"sqs.{meta['awsRegion']}.amazonaws.com" in meta["queueURL"]
    assert int(meta["queueLength"]) >= 1
    assert meta["identityOwner"] in ("pod", "operator")
    assert trigger["authenticationRef"]["name"] == k8s["TriggerAuthentication"]["metadata"]["name"]


def test_k8s_trigger_authentication(k8s: dict[str, dict[str, Any]]) -> None:
    """TriggerAuthentication uses the aws pod identity provider with real field names."""
    identity = k8s["TriggerAuthentication"]["spec"]["podIdentity"]
    assert set(identity) <= POD_IDENTITY_FIELDS
    assert identity["provider"] == "aws"
    assert not ("roleArn" in identity and "identityOwner" in identity), "mutually exclusive"
