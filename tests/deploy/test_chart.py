"""The Helm chart, rendered offline with the Helm v4 SDK and validated against Kubernetes 1.32."""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from pydantic import BaseModel

from tests.deploy.conftest import (
    FULL_VALUES,
    K8S_VERSION,
    PUBLIC,
    SERVICES,
    by_name,
    of_kind,
    pod_specs,
    render_k8s,
)

# Who may call whom (docs/operations.md, NetworkPolicies); every service calls the signer.
EXPECTED_CALLERS = {
    "signer": {"ca", "idp", "consent", "broker", "jlis-sync"},
    "ca": {"idp", "consent", "broker"},  # certificate status lookups
    "idp": {"broker"},  # subject lookups
    "consent": {"idp", "broker"},  # idp: effective consent before releasing claims
    "broker": {"consent"},  # the citizen dashboard reads the exchange log
    "jlis-sync": {"ca", "idp", "broker"},
}
CRD_KINDS = {"ServiceMonitor"}


def prefix(svc: str) -> str:
    return "TSUNAGU_" + svc.upper().replace("-", "_") + "_"


def test_every_rendered_object_is_valid_kubernetes_1_32_strict(objects: list[dict[str, Any]]) -> None:
    failures = []
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue  # no schema in kubernetes-validate; checked below
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {list(exc.path)} {exc.message}")
    assert not failures, "\n".join(failures)
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "NetworkPolicy",
        "Ingress",
        "Job",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
    }


def test_validator_rejects_a_broken_object(base_objects: list[dict[str, Any]]) -> None:
    """The validation above can fail: a misspelt field is refused in strict mode."""
    broken = json.loads(json.dumps(by_name(base_objects, "Deployment", "tsunagu-ca")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_service_monitors_only_when_enabled(base_objects: list, full_objects: list) -> None:
    assert not of_kind(base_objects, "ServiceMonitor")
    monitors = of_kind(full_objects, "ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == sorted(f"tsunagu-{s}" for s in SERVICES)
    for m in monitors:
        assert m["apiVersion"] == "monitoring.coreos.com/v1"
        assert m["metadata"]["labels"]["release"] == "prometheus"
        assert m["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
        svc = by_name(full_objects, "Service", m["metadata"]["name"])
        assert m["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]


def test_one_deployment_service_and_migration_job_per_service(objects: list[dict[str, Any]]) -> None:
    for svc in SERVICES:
        dep = by_name(objects, "Deployment", f"tsunagu-{svc}")
        service = by_name(objects, "Service", f"tsunagu-{svc}")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
        assert dep["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        container = dep["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[prefix(svc) + "MIGRATE_ON_START"] == "false"
        assert env[prefix(svc) + "DATABASE_URL_FILE"] == "/etc/tsunagu/database/url"
        assert container["args"] == ["serve"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        job = by_name(objects, "Job", f"tsunagu-{svc}-migrate")
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        jc = job["spec"]["template"]["spec"]["containers"][0]
        assert jc["args"] == ["migrate"]
        assert jc["image"] == container["image"]
        assert {e["name"]: e.get("value") for e in jc["env"]}[prefix(svc) + "DATABASE_URL_FILE"]
        vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
        assert vols["database"]["secret"]["secretName"] == f"tsunagu-db-{svc}"


def test_security_posture_of_every_pod(objects: list[dict[str, Any]]) -> None:
    specs = pod_specs(objects)
    assert len(specs) == 13  # 6 Deployments, 6 migration Jobs, the topics Job
    for where, spec in specs:
        assert spec["automountServiceAccountToken"] is False, where
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] >= 1000, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        mounts_tmp = False
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), f"{where} {part}"
            mounts_tmp |= any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", []))
        assert mounts_tmp, f"{where}: /tmp must be a mounted volume (read-only root)"
        for vol in spec.get("volumes", []):
            assert "hostPath" not in vol, where
    for dep in of_kind(objects, "Deployment"):
        anti = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        assert anti, dep["metadata"]["name"]


def test_secrets_only_as_files_never_in_configmaps(objects: list[dict[str, Any]]) -> None:
    secretish_key = re.compile(r"(PASSWORD|_PIN|SECRET|PRIVATE_KEY|TOKEN|DATABASE_URL)$")
    secretish_value = re.compile(r"://[^/@\s]+:[^/@\s]+@|BEGIN [A-Z ]*PRIVATE KEY|\"d\"\s*:")
    configmaps = of_kind(objects, "ConfigMap")
    assert len(configmaps) == 6
    for cm in configmaps:
        for key, value in cm["data"].items():
            assert not secretish_key.search(key), f"{cm['metadata']['name']}: {key}"
            assert not secretish_value.search(str(value)), f"{cm['metadata']['name']}: {key}"
    for _, spec in pod_specs(objects):
        for c in spec["containers"]:
            for e in c.get("env", []):
                assert not secretish_key.search(e["name"]), e["name"]
                assert "valueFrom" not in e or "secretKeyRef" not in e["valueFrom"], e["name"]
    assert not of_kind(objects, "Secret"), "the chart never carries secret material"


def test_secret_check_catches_a_leak() -> None:
    """The ConfigMap scan above is not vacuous: a database URL with a password is caught."""
    leak = "postgresql+asyncpg://tsunagu:hunter2@db:5432/tsunagu_ca"
    assert re.search(r"://[^/@\s]+:[^/@\s]+@", leak)


def test_network_policies_default_deny_and_allowed_calls(objects: list[dict[str, Any]]) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    deny = by_name(objects, "NetworkPolicy", "tsunagu-default-deny")
    assert deny["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "tsunagu",
        "app.kubernetes.io/instance": "tsunagu",
    }
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]

    def component_peers(rules: list[dict[str, Any]], key: str) -> set[str]:
        found = set()
        for rule in rules:
            for peer in rule.get(key, []):
                if set(peer) == {"podSelector"}:
                    found.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"])
        return found

    callees: dict[str, set[str]] = {s: set() for s in SERVICES}
    for svc in SERVICES:
        np = by_name(policies, "NetworkPolicy", f"tsunagu-{svc}")
        assert np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == svc
        assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        assert component_peers(np["spec"]["ingress"], "from") == EXPECTED_CALLERS[svc], svc
        callees[svc] = component_peers(np["spec"]["egress"], "to")
        for rule in np["spec"]["ingress"] + np["spec"]["egress"]:
            assert rule.get("from", rule.get("to")), f"{svc}: a rule without peers allows everyone"
            for peer in rule.get("from", []) + rule.get("to", []):
                assert peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0", svc
        egress_ports = {p["port"] for r in np["spec"]["egress"] for p in r["ports"]}
        assert {53, 5432} <= egress_ports, svc
        from_ingress_controller = any(
            p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            == "ingress-nginx"
            for r in np["spec"]["ingress"]
            for p in r["from"]
        )
        assert from_ingress_controller == (svc in PUBLIC), svc
    for svc in SERVICES:  # egress mirrors ingress
        assert callees[svc] == {c for c, callers in EXPECTED_CALLERS.items() if svc in callers}, svc
    jlis = by_name(policies, "NetworkPolicy", "tsunagu-jlis-sync")
    assert {"cidr": "203.0.113.0/24"} in [p.get("ipBlock") for r in jlis["spec"]["egress"] for p in r["to"]]
    signer = by_name(policies, "NetworkPolicy", "tsunagu-signer")
    assert "203.0.113.0/24" not in json.dumps(signer)


def test_hsm_egress_and_library_only_when_configured(base_objects: list, full_objects: list) -> None:
    base_signer = by_name(base_objects, "Deployment", "tsunagu-signer")["spec"]["template"]["spec"]
    assert "hsm-library" not in {v["name"] for v in base_signer["volumes"]}
    signer = by_name(full_objects, "Deployment", "tsunagu-signer")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in signer["containers"][0]["volumeMounts"]}
    assert mounts["hsm-library"] == {"name": "hsm-library", "mountPath": "/opt/hsm", "readOnly": True}
    np = by_name(full_objects, "NetworkPolicy", "tsunagu-signer")
    assert any(r["ports"] == [{"protocol": "TCP", "port": 1792}] for r in np["spec"]["egress"])


def test_ingress_only_for_public_endpoints_never_signer(objects: list[dict[str, Any]]) -> None:
    ingresses = of_kind(objects, "Ingress")
    assert sorted(i["metadata"]["name"] for i in ingresses) == sorted(f"tsunagu-{s}" for s in PUBLIC)
    for ing in ingresses:
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] != "tsunagu-signer"
                assert path["path"] != "/" and not path["path"].startswith(("/internal", "/metrics"))
    jlis = by_name(objects, "Ingress", "tsunagu-jlis-sync")
    assert [p["path"] for p in jlis["spec"]["rules"][0]["http"]["paths"]] == ["/v1/jlis/notifications"]


def test_idp_egress_to_relying_parties_only_when_configured(base_objects: list, full_objects: list) -> None:
    """jwks_uri, sector_identifier_uri, back-channel logout and CIBA ping leave the cluster only
    towards the ranges the operator names, and only from the idp."""
    base_idp = by_name(base_objects, "NetworkPolicy", "tsunagu-idp")
    base_ports = {p["port"] for r in base_idp["spec"]["egress"] for p in r["ports"]}
    assert base_ports == {53, 5432, 9092, 9093, 8101, 8102, 8104, 8106}  # DNS, DB, Kafka, peers only
    idp = by_name(full_objects, "NetworkPolicy", "tsunagu-idp")
    rules = [r for r in idp["spec"]["egress"] if {"ipBlock": {"cidr": "198.51.100.0/24"}} in r["to"]]
    assert [r["ports"] for r in rules] == [
        [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 8443}]
    ]
    for svc in SERVICES:
        if svc != "idp":
            policy = by_name(full_objects, "NetworkPolicy", f"tsunagu-{svc}")
            assert "198.51.100.0/24" not in json.dumps(policy), svc


def _public_routes(svc: str) -> set[str]:
    """A service's own routes (the chassis' /healthz, /metrics… are not in its routers), minus the
    operator's /admin API and the service-to-service /internal API."""
    from fastapi.routing import APIRoute

    api = importlib.import_module(f"tsunagu.{svc.replace('-', '_')}.api")
    paths = {route.path for router in api.routers for route in router.routes if isinstance(route, APIRoute)}
    return {p for p in paths if not p.startswith(("/admin/", "/internal/"))}


def _covers(prefix: str, path: str) -> bool:
    """Kubernetes ``pathType: Prefix``: element-wise (``/login`` covers ``/login/x``, not ``/logins``)."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


@pytest.mark.parametrize("svc", ["ca", "idp", "consent", "broker"])
def test_ingress_routes_exactly_the_public_endpoints(objects: list[dict[str, Any]], svc: str) -> None:
    """Every public route is reachable and every ingress path reaches a route (nothing stale)."""
    routes = _public_routes(svc)
    assert routes, svc
    ingress = by_name(objects, "Ingress", f"tsunagu-{svc}")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert {p["pathType"] for p in paths} == {"Prefix"}
    prefixes = [p["path"] for p in paths]
    assert sorted(r for r in routes if not any(_covers(p, r) for p in prefixes)) == [], "unreachable"
    assert [p for p in prefixes if not any(_covers(p, r) for r in routes)] == [], "routes to nothing"


def test_ingresses_sharing_a_host_do_not_overlap(objects: list[dict[str, Any]]) -> None:
    owners: dict[str, list[tuple[str, str]]] = {}
    for ing in of_kind(objects, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                owners.setdefault(rule["host"], []).append((path["path"], ing["metadata"]["name"]))
    assert {n for _, n in owners["id.example.jp"]} == {"tsunagu-idp", "tsunagu-ca"}  # the same issuer host
    for host, paths in owners.items():
        for i, (a, owner_a) in enumerate(paths):
            for b, owner_b in paths[i + 1 :]:
                assert not (_covers(a, b) or _covers(b, a)), f"{host}: {a} ({owner_a}) and {b} ({owner_b})"


def test_idp_settings_issuer_peers_and_pairwise_secret(objects: list[dict[str, Any]]) -> None:
    data = by_name(objects, "ConfigMap", "tsunagu-idp-env")["data"]
    ingress = by_name(objects, "Ingress", "tsunagu-idp")
    host = ingress["spec"]["rules"][0]["host"]
    assert data["TSUNAGU_IDP_ISSUER"] == f"https://{host}"  # what relying parties see
    assert host in ingress["spec"]["tls"][0]["hosts"]
    for peer, var in (
        ("signer", "SIGNER_URL"),
        ("ca", "CA_URL"),
        ("jlis-sync", "JLIS_SYNC_URL"),
        ("consent", "CONSENT_URL"),
    ):
        service = by_name(objects, "Service", f"tsunagu-{peer}")
        assert data[f"TSUNAGU_IDP_{var}"] == f"http://tsunagu-{peer}:{service['spec']['ports'][0]['port']}", (
            var
        )
    ca = by_name(objects, "ConfigMap", "tsunagu-ca-env")["data"]
    assert ca["TSUNAGU_CA_PUBLIC_BASE_URL"] == data["TSUNAGU_IDP_ISSUER"]  # one public host
    # The pairwise secret: a file from the operator's Secret, never a value in the chart.
    path = data["TSUNAGU_IDP_PAIRWISE_SECRET_FILE"]
    spec = by_name(objects, "Deployment", "tsunagu-idp")["spec"]["template"]["spec"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"] == {
        "secretName": "tsunagu-idp-pairwise",
        "defaultMode": 0o400,
        "items": [{"key": "secret", "path": path.rsplit("/", 1)[1]}],
    }
    for svc in SERVICES:  # nobody else mounts it
        if svc != "idp":
            other = by_name(objects, "Deployment", f"tsunagu-{svc}")["spec"]["template"]["spec"]
            assert "tsunagu-idp-pairwise" not in json.dumps(other), svc


def test_consent_settings_name_its_peers(objects: list[dict[str, Any]]) -> None:
    data = by_name(objects, "ConfigMap", "tsunagu-consent-env")["data"]
    assert data["TSUNAGU_CONSENT_SIGNER_URL"] == "http://tsunagu-signer:8101"  # receipt key
    assert data["TSUNAGU_CONSENT_CA_URL"] == "http://tsunagu-ca:8102"  # signers' certificates


def test_idp_without_consent_withholds_claims() -> None:
    """Consent switched off: no CONSENT_URL (the idp then releases nothing beyond ``sub``)."""
    values = {**render_k8s.BASE_VALUES, "services": {"consent": {"enabled": False}}}
    objects = render_k8s.render(values)
    data = by_name(objects, "ConfigMap", "tsunagu-idp-env")["data"]
    assert "TSUNAGU_IDP_CONSENT_URL" not in data and data["TSUNAGU_IDP_SIGNER_URL"]
    policy = by_name(objects, "NetworkPolicy", "tsunagu-idp")
    assert "consent" not in json.dumps(policy["spec"]["egress"])


def test_signer_and_jlis_sync_settings(objects: list[dict[str, Any]]) -> None:
    signer = by_name(objects, "ConfigMap", "tsunagu-signer-env")["data"]
    assert signer["TSUNAGU_SIGNER_PKCS11__MODULE_PATH"].startswith("/opt/hsm/")
    assert signer["TSUNAGU_SIGNER_PKCS11__TOKEN_LABEL"]
    assert signer["TSUNAGU_SIGNER_PKCS11__USER_PIN_FILE"] == "/etc/tsunagu/hsm/pin"
    jlis = by_name(objects, "ConfigMap", "tsunagu-jlis-sync-env")["data"]
    assert jlis["TSUNAGU_JLIS_SYNC_JLIS__BASE_URL"].startswith("https://")
    for key in ("ROOT_CA_FILE", "SIGNING_CA_FILE"):
        assert jlis[f"TSUNAGU_JLIS_SYNC_JLIS__{key}"].startswith("/etc/tsunagu/jlis/")
    for svc in SERVICES:
        data = by_name(objects, "ConfigMap", f"tsunagu-{svc}-env")["data"]
        assert data[prefix(svc) + "AUTH__PRIVATE_KEY_FILE"] == "/etc/tsunagu/auth/key.pem"
        assert data[prefix(svc) + "AUTH__TRUST_FILE"] == "/etc/tsunagu/trust/trust.json"
        assert data[prefix(svc) + "HOST"] == "0.0.0.0"


def _settings_class(svc: str) -> type[BaseModel]:
    module = importlib.import_module(f"tsunagu.{svc.replace('-', '_')}.settings")
    from tsunagu.settings import ServiceSettings

    classes = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
    ]
    assert len(classes) == 1, svc
    return classes[0]


def _known(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0].lower())
    if field is None:
        return False
    if len(parts) == 1:
        return True
    annotation = field.annotation
    candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
    return any(issubclass(c, BaseModel) and _known(c, parts[1:]) for c in candidates)


def test_every_service_variable_is_a_real_setting(full_objects: list[dict[str, Any]]) -> None:
    """A misspelt variable would be silently ignored by pydantic-settings: compare with the models."""
    for svc in SERVICES:
        model = _settings_class(svc)
        names = set(by_name(full_objects, "ConfigMap", f"tsunagu-{svc}-env")["data"])
        container = by_name(full_objects, "Deployment", f"tsunagu-{svc}")["spec"]["template"]["spec"]
        names |= {e["name"] for e in container["containers"][0]["env"]}
        for name in sorted(names):
            if not name.startswith(prefix(svc)):
                assert name in {"SSL_CERT_FILE", "ChrystokiConfigurationPath"}, name
                continue
            var = name[len(prefix(svc)) :]
            var = var.removesuffix("_FILE") if not _known(model, var.split("__")) else var
            assert _known(model, var.split("__")), f"{svc}: {name} is not a setting"
    assert not _known(_settings_class("signer"), ["PKCS11", "MODUL_PATH"])


def test_kafka_topics_job(objects: list[dict[str, Any]]) -> None:
    job = by_name(objects, "Job", "tsunagu-kafka-topics")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    topics = {t["name"]: t for t in json.loads(env["TOPICS"])}
    for state in (
        "tsunagu.signer.signature",
        "tsunagu.signer.key",
        "tsunagu.jlis_sync.resident",
        "tsunagu.ca.certificate",
        "tsunagu.consent.decision",
    ):
        assert topics[state]["retentionMs"] == -1, state
        if state != "tsunagu.signer.signature":  # auditors read it; no platform consumer, no DLQ
            assert topics[f"{state}.dlq"]["retentionMs"] == -1, state
    assert "tsunagu.platform.diagnostic" in topics and "tsunagu.platform.diagnostic.dlq" in topics
    assert container["command"] == ["python", "-c"]
    script = (render_k8s.CHART / "files" / "create_topics.py").read_text(encoding="utf-8")
    assert container["args"] == [script]
    compile(script, "create_topics.py", "exec")


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"services": {"signer": {"replicas": "two"}}}, "/services/signer/replicas"),
        ({"services": {"signer": {"ingress": {"enabled": True, "host": "x", "paths": ["/"]}}}}, "ingress"),
        ({"containerSecurityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"kafka": {"securityProtocol": "TLS"}}, "securityProtocol"),
        ({"database": {"cidrs": ["not-a-cidr"]}}, "cidrs"),
        ({"topics": {"items": [{"name": "tsunagu.x", "partitions": 0, "retentionMs": -1}]}}, "partitions"),
        ({"services": {"idp": {"callers": ["nobody"]}}}, "callers"),
        ({"idp": {"pairwiseSecret": {"name": "", "key": "secret"}}}, "pairwiseSecret"),
        ({"idp": {"pairwiseSecret": {"name": "x", "key": "secret", "value": "s3cret"}}}, "pairwiseSecret"),
        (
            {
                "services": {
                    "idp": {
                        "ingress": {"enabled": True, "host": "https://id.example.jp/", "paths": ["/token"]}
                    }
                }
            },
            "host",
        ),
        ({"replicaCount": 2}, "replicaCount"),
    ],
)
def test_values_schema_rejects_wrong_values(values: dict[str, Any], where: str) -> None:
    chart = helm_python.Chart.load(render_k8s.CHART)
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        chart.render(values, name="tsunagu", namespace="tsunagu")


def test_values_schema_accepts_defaults_and_full_values() -> None:
    chart = helm_python.Chart.load(render_k8s.CHART)
    chart.validate_schema({})
    chart.validate_schema(FULL_VALUES)


def test_chart_lints() -> None:
    result = helm_python.lint(str(render_k8s.CHART), FULL_VALUES, strict=True, kube_version=K8S_VERSION)
    assert result["total_charts_linted"] == 1
    assert result["errors"] == [], result
    # Helm severities: 1 info, 2 warning, 3 error. Only infos ("icon is recommended") are tolerated.
    assert all(m["severity"] < 2 for m in result["messages"]), result


def test_hook_jobs_only_need_what_exists_before_install(objects: list[dict[str, Any]]) -> None:
    """pre-install hooks run before the release's objects: their ServiceAccount must be a hook
    with a lower weight, and they may mount only Secrets (created by the operator), no ConfigMap."""
    hooks = [o for o in objects if render_k8s.is_hook(o)]
    weight = {
        (o["kind"], o["metadata"]["name"]): int(o["metadata"]["annotations"]["helm.sh/hook-weight"])
        for o in hooks
    }
    for job in (o for o in hooks if o["kind"] == "Job"):
        spec = job["spec"]["template"]["spec"]
        account = ("ServiceAccount", spec["serviceAccountName"])
        assert account in weight and weight[account] < weight[("Job", job["metadata"]["name"])]
        for vol in spec["volumes"]:
            assert "configMap" not in vol, job["metadata"]["name"]
        assert not [c for c in spec["containers"] if "envFrom" in c]
