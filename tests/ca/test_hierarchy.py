"""The CA hierarchy: the ceremony from HSM keys, its refusals, and an issuing-CA rollover that
keeps every existing chain, CRL and status answer working."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.ca.conftest import CaHarness, _auth, stack_keys, started_stack
from tsunagu.auth import ServiceTokenIssuer, load_private_key
from tsunagu.clients.signer import SignerClient
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import enroll


# A rollover activates new CA keys, which retires the signer's previous ones for every CA using
# them: this module gets a stack of its own so the other tests keep theirs.
@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with started_stack(tmp_path_factory) as stack:
        yield stack


@pytest.fixture
def ca_keys(platform: RunningStack) -> dict[str, str]:
    """The CA keys active in the signer now (a rollover test before retired the stack's own)."""
    keys = stack_keys(platform)
    operator = _auth(platform, "operator", "signer")
    for kind, purpose in (("root", "ca-root"), ("issuing", "ca-issuing"), ("ocsp", "ocsp")):
        listed = httpx.get(f"{platform.urls['signer']}/v1/keys", params={"purpose": purpose}, auth=operator)
        keys[kind] = next(k["kid"] for k in listed.raise_for_status().json() if k["state"] == "active")
    return keys


async def _new_keys(platform: RunningStack, *purposes: str, algorithm: str = "ES256") -> dict[str, str]:
    issuer = ServiceTokenIssuer(
        "operator", load_private_key(platform.config.state_dir / "credentials" / "operator.key.pem")
    )
    signer = SignerClient(platform.urls["signer"], issuer)
    try:
        keys = {}
        for purpose in purposes:
            created = await signer.create_key(
                purpose, algorithm, key_size=2048 if algorithm != "ES256" else None
            )
            keys[purpose] = (await signer.transition(created["kid"], "activate"))["kid"]
        return keys
    finally:
        await signer.aclose()


def _by_kind(authorities: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for authority in authorities:
        kinds.setdefault(authority["kind"], []).append(authority)
    return kinds


async def test_ceremony_builds_root_issuing_and_a_delegated_ocsp_responder(ca: CaHarness):
    authorities = (await ca.client.get("/admin/v1/authorities", auth=ca.auth("operator"))).json()
    kinds = _by_kind(authorities)
    root = x509.load_pem_x509_certificate(kinds["root"][0]["certificate"].encode())
    issuing = x509.load_pem_x509_certificate(kinds["issuing"][0]["certificate"].encode())
    responder = x509.load_pem_x509_certificate(kinds["ocsp"][0]["certificate"].encode())
    root.verify_directly_issued_by(root)
    issuing.verify_directly_issued_by(root)
    responder.verify_directly_issued_by(issuing)
    assert issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert (
        ExtendedKeyUsageOID.OCSP_SIGNING
        in responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    chain = await ca.client.get("/ca/chain.pem")
    assert chain.status_code == 200 and chain.text.count("BEGIN CERTIFICATE") == 2
    der = await ca.client.get("/ca/issuing-1.crt")
    assert (
        der.headers["content-type"] == "application/pkix-cert"
        and x509.load_der_x509_certificate(der.content) == issuing
    )


async def test_ceremony_refusals(make_ca, ca_keys: dict[str, str]):  # type: ignore[no-untyped-def]
    async with make_ca(ceremony=False) as ca:
        assert (await ca.client.post("/v1/enrollments")).status_code == 503  # no CA yet
        body = {
            "root_key_id": ca_keys["root"],
            "issuing_key_id": ca_keys["issuing"],
            "ocsp_key_id": ca_keys["ocsp"],
        }
        assert (
            await ca.client.post("/admin/v1/hierarchy", json=body, auth=ca.auth("idp"))
        ).status_code == 403
        swapped = {**body, "root_key_id": ca_keys["issuing"]}
        wrong = await ca.client.post("/admin/v1/hierarchy", json=swapped, auth=ca.auth("operator"))
        assert wrong.status_code == 400 and wrong.json()["type"].endswith("invalid-ca-key")
        unknown = await ca.client.post(
            "/admin/v1/hierarchy", json={**body, "ocsp_key_id": "nope"}, auth=ca.auth("operator")
        )
        assert unknown.status_code == 400
        assert await ca.rows("authority") == []
        assert (
            await ca.client.post("/admin/v1/hierarchy", json=body, auth=ca.auth("operator"))
        ).status_code == 201
        again = await ca.client.post("/admin/v1/hierarchy", json=body, auth=ca.auth("operator"))
        assert again.status_code == 409 and again.json()["type"].endswith("hierarchy-exists")


async def test_issuing_ca_rollover_keeps_existing_chains(ca: CaHarness, platform: RunningStack):
    card, _ = await ca.new_card()
    before = await enroll(ca.client, card)
    keys = await _new_keys(platform, "ca-issuing", "ocsp")
    rolled = await ca.client.post(
        "/admin/v1/issuing-cas",
        json={"issuing_key_id": keys["ca-issuing"], "ocsp_key_id": keys["ocsp"]},
        auth=_auth(platform, "operator", "ca"),
    )
    assert rolled.status_code == 201, rolled.text
    states = {a["id"]: a["state"] for a in rolled.json()}
    assert states["issuing-1"] == "active" and states["issuing-2"] == "current"

    after = await enroll(ca.client, card)
    old = x509.load_pem_x509_certificate(before.signing.certificate_pem.encode())
    new = x509.load_pem_x509_certificate(after.signing.certificate_pem.encode())
    old_issuing, root = (x509.load_pem_x509_certificate(p.encode()) for p in before.signing.chain)
    new_issuing, same_root = (x509.load_pem_x509_certificate(p.encode()) for p in after.signing.chain)
    assert root == same_root and old_issuing != new_issuing
    old.verify_directly_issued_by(old_issuing)
    new.verify_directly_issued_by(new_issuing)
    new_issuing.verify_directly_issued_by(root)
    assert after.user_number == before.user_number
    status = await ca.client.get(f"/internal/v1/certificates/{before.signing.serial}", auth=ca.auth("idp"))
    assert status.json()["status"] == "good" and status.json()["issuer_id"] == "issuing-1"
    await ca.services.crls.publish_due()
    for issuer in ("issuing-1", "issuing-2"):
        crl = await ca.client.get(f"/crl/{issuer}.crl")
        assert crl.status_code == 200
        issuer_certificate = old_issuing if issuer == "issuing-1" else new_issuing
        assert x509.load_der_x509_crl(crl.content).is_signature_valid(issuer_certificate.public_key())  # type: ignore[arg-type]


async def test_a_replica_that_missed_the_rollover_issues_from_the_new_ca(
    make_ca, platform: RunningStack, tmp_path
):  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared-ca.db'}"
    async with make_ca(url) as first, make_ca(url, ceremony=False) as second:
        card, _ = await first.new_card()
        await enroll(second.client, card)  # the replica knows issuing-1
        keys = await _new_keys(platform, "ca-issuing", "ocsp")
        rolled = await first.client.post(
            "/admin/v1/issuing-cas",
            json={"issuing_key_id": keys["ca-issuing"], "ocsp_key_id": keys["ocsp"]},
            auth=first.auth("operator"),
        )
        assert rolled.status_code == 201
        assert second.services.ca.hierarchy.current_issuing().id == "issuing-1"  # stale
        enrolled = await enroll(second.client, card)
    status = enrolled.signing.chain[0]
    assert (
        x509.load_pem_x509_certificate(status.encode())
        .subject.rfc4514_string()
        .startswith("CN=Tsunagu Issuing CA 2")
    )


async def test_a_lint_error_blocks_issuance_and_is_reported(make_ca, ca_keys: dict[str, str]):  # type: ignore[no-untyped-def]
    # "ca" is neither an IP address nor a fully qualified name: the CRL and OCSP URIs the
    # certificates would carry break RFC 5280 §4.2.1.6, and pkilint says so before any signature.
    async with make_ca(ceremony=False, public_base_url="http://ca:8102") as ca:
        body = {
            "root_key_id": ca_keys["root"],
            "issuing_key_id": ca_keys["issuing"],
            "ocsp_key_id": ca_keys["ocsp"],
        }
        refused = await ca.client.post("/admin/v1/hierarchy", json=body, auth=ca.auth("operator"))
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["type"] == "urn:tsunagu:problem:certificate-lint-failed"
        assert {f["code"] for f in problem["findings"]} == {"pkix.invalid_uri_syntax"}
        assert await ca.rows("authority") == []


async def test_an_rsa_hierarchy_issues_chains_openssl_accepts(make_ca, platform: RunningStack, tmp_path):  # type: ignore[no-untyped-def]
    import subprocess

    keys = await _new_keys(platform, "ca-root", "ca-issuing", "ocsp", algorithm="PS256")
    async with make_ca(ceremony=False) as ca:
        body = {
            "root_key_id": keys["ca-root"],
            "issuing_key_id": keys["ca-issuing"],
            "ocsp_key_id": keys["ocsp"],
        }
        created = await ca.client.post("/admin/v1/hierarchy", json=body, auth=ca.auth("operator"))
        assert created.status_code == 201, created.text
        card, _ = await ca.new_card()
        enrolled = await enroll(ca.client, card)
    leaf = x509.load_pem_x509_certificate(enrolled.authentication.certificate_pem.encode())
    issuing, root = (x509.load_pem_x509_certificate(p.encode()) for p in enrolled.authentication.chain)
    assert leaf.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10"  # RSASSA-PSS
    leaf.verify_directly_issued_by(issuing)
    (tmp_path / "root.pem").write_text(enrolled.authentication.chain[1])
    (tmp_path / "issuing.pem").write_text(enrolled.authentication.chain[0])
    (tmp_path / "leaf.pem").write_text(enrolled.authentication.certificate_pem)
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            tmp_path / "root.pem",
            "-untrusted",
            tmp_path / "issuing.pem",
            tmp_path / "leaf.pem",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert root.subject == issuing.issuer
