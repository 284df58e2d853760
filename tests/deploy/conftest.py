"""Offline checks of the deployment artefacts: the Helm chart (rendered by the Helm v4 SDK, no
binary, no cluster), k8s/ manifests, the Dockerfile. Everything here runs without a network."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["signer", "ca", "idp", "consent", "broker", "jlis-sync"]
PUBLIC = ["ca", "idp", "consent", "broker", "jlis-sync"]
K8S_VERSION = "1.32.0"


def _load_render_k8s() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_k8s", ROOT / "deploy" / "render_k8s.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_k8s"] = module
    spec.loader.exec_module(module)
    return module


render_k8s = _load_render_k8s()

# Every optional feature switched on, to validate the templates' less travelled branches.
FULL_VALUES: dict[str, Any] = {
    **copy.deepcopy(render_k8s.BASE_VALUES),
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "kafka": {
        "bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093",
        "securityProtocol": "SASL_SSL",
        "sasl": {
            "mechanism": "SCRAM-SHA-512",
            "username": "tsunagu",
            "passwordSecret": {"name": "tsunagu-kafka", "key": "password"},
        },
        "tls": {"caSecretName": "tsunagu-kafka-ca"},
        "cidrs": ["10.40.0.0/24"],
    },
    "hsm": {
        "modulePath": "/opt/hsm/lib/libCryptoki2_64.so",
        "tokenLabel": "tsunagu-prod",
        "pinSecret": {"name": "tsunagu-hsm-pin", "key": "pin"},
        "libraryVolume": {"persistentVolumeClaim": {"claimName": "hsm-client", "readOnly": True}},
        "env": {"ChrystokiConfigurationPath": "/opt/hsm/etc"},
        "cidrs": ["10.50.0.10/32"],
        "ports": [1792],
    },
    "idp": {
        "pairwiseSecret": {"name": "tsunagu-idp-pairwise", "key": "secret"},
        "relyingPartyEgress": {"cidrs": ["198.51.100.0/24"], "ports": [443, 8443]},
    },
    "affinity": {"podAntiAffinity": "required"},
    "image": {"repository": "tsunagu/tsunagu", "digest": "sha256:" + "a" * 64},
}


@pytest.fixture(scope="session")
def rk() -> ModuleType:
    return render_k8s


@pytest.fixture(scope="session")
def base_objects() -> list[dict[str, Any]]:
    return render_k8s.render(render_k8s.BASE_VALUES)


@pytest.fixture(scope="session")
def full_objects() -> list[dict[str, Any]]:
    return render_k8s.render(FULL_VALUES)


@pytest.fixture(scope="session", params=["base", "full"])
def objects(request: pytest.FixtureRequest, base_objects: list, full_objects: list) -> list[dict[str, Any]]:
    return base_objects if request.param == "base" else full_objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    ]
