"""k8s/: the kustomize base is exactly what the chart renders, and every manifest is valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.deploy.conftest import K8S_VERSION, ROOT, SERVICES, render_k8s

K8S = ROOT / "k8s"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _base_objects() -> list[dict[str, Any]]:
    kustomization = _docs(K8S / "base" / "kustomization.yaml")[0]
    objects = [o for name in kustomization["resources"] for o in _docs(K8S / "base" / name)]
    return objects + _docs(K8S / "base" / "jobs" / "jobs.yaml")


def test_k8s_base_is_in_sync_with_the_chart() -> None:
    problems = render_k8s.diff(render_k8s.build_files())
    assert problems == [], f"run `.venv/bin/python deploy/render_k8s.py`: {problems}"


def test_sync_check_notices_a_hand_edit(tmp_path: Path) -> None:
    files = render_k8s.build_files()
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content, encoding="utf-8")
    assert render_k8s.diff(files, tmp_path) == []
    edited = tmp_path / "deployments.yaml"
    edited.write_text(edited.read_text(encoding="utf-8").replace("readOnlyRootFilesystem: true", "x: 1"))
    (tmp_path / "extra.yaml").write_text("{}\n", encoding="utf-8")
    assert render_k8s.diff(files, tmp_path) == ["out of date deployments.yaml", "not generated extra.yaml"]


def test_every_k8s_manifest_validates_strict() -> None:
    objects = _base_objects()
    assert len(objects) >= 40
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "kustomize"
        assert not [
            k for k in {**labels, **obj["metadata"].get("annotations", {})} if k.startswith("helm.sh/")
        ]


def _patch_docs(overlay: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    kustomization = _docs(overlay / "kustomization.yaml")[0]
    out = []
    for patch in kustomization.get("patches", []):
        docs = _docs(overlay / patch["path"]) if "path" in patch else [yaml.safe_load(patch["patch"])]
        out.extend((patch, d) for d in docs)
    return out


def test_overlays_point_at_objects_that_exist() -> None:
    """What kustomize would refuse or silently skip: patches, images and replicas naming nothing."""
    base = {(o["kind"], o["metadata"]["name"]) for o in _base_objects()}
    images = {
        c["image"].rsplit(":", 1)[0]
        for o in _base_objects()
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    for name in ("dev", "production"):
        overlay = K8S / "overlays" / name
        kustomization = _docs(overlay / "kustomization.yaml")[0]
        assert kustomization["resources"] == ["../../base"]
        assert kustomization["namespace"]
        for image in kustomization.get("images", []):
            assert image["name"] in images, image
        assert {i["name"].rsplit("-", 1)[-1] for i in kustomization["images"]} >= {"signer", "ca", "idp"}
        for replica in kustomization.get("replicas", []):
            assert ("Deployment", replica["name"]) in base, replica
        for patch, doc in _patch_docs(overlay):
            if "target" in patch:
                assert any(kind == patch["target"]["kind"] for kind, _ in base), patch
            else:
                assert (doc["kind"], doc["metadata"]["name"]) in base, (name, doc["kind"], doc["metadata"])
                for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("initContainers", []):
                    sc = c["securityContext"]
                    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
                    assert sc["runAsNonRoot"] and sc["capabilities"]["drop"] == ["ALL"]


def test_dev_overlay_covers_every_service() -> None:
    dev = _docs(K8S / "overlays" / "dev" / "kustomization.yaml")[0]
    assert sorted(r["name"] for r in dev["replicas"]) == sorted(f"tsunagu-{s}" for s in SERVICES)
    assert any(i["newName"].endswith("tsunagu-signer-softhsm") for i in dev["images"])
