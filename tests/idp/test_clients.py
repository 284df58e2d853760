"""Tenants, clients, RFC 7591 registration and RFC 7592 management on the real stack."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey

from tests.idp.conftest import ISSUER
from tsunagu.idp.domain.clients import Client

PROBLEM = "urn:tsunagu:problem:"


def public_jwks(key: ECKey | RSAKey, kid: str = "k1") -> dict[str, Any]:
    return {"keys": [{**key.as_dict(private=False), "kid": kid}]}


def rp(**overrides: Any) -> dict[str, Any]:
    """Metadata of a typical confidential web RP (private_key_jwt)."""
    metadata: dict[str, Any] = {
        "redirect_uris": ["https://rp.ebetsu.example/callback"],
        "jwks": public_jwks(ECKey.generate_key("P-256")),
        "client_name": "Ebetsu services",
        "client_name#ja": "江別市電子申請",
        "client_name#en": "Ebetsu e-applications",
    }
    metadata.update(overrides)
    return {name: value for name, value in metadata.items() if value is not None}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def make_tenant(idp, tenant_id: str = "ebetsu") -> str:  # type: ignore[no-untyped-def]
    response = await idp.client.post(
        "/admin/v1/tenants",
        json={"id": tenant_id, "name_ja": "江別市", "name_en": "Ebetsu City"},
        auth=idp.auth(),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["initial_access_token"])


async def snapshot(idp) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:  # type: ignore[no-untyped-def]
    return await idp.rows("tenant"), await idp.rows("client"), await idp.events()


# --- tenants --------------------------------------------------------------------------------


async def test_a_tenant_is_created_read_and_its_initial_access_token_rotated(idp) -> None:  # type: ignore[no-untyped-def]
    token = await make_tenant(idp)
    [row] = await idp.rows("tenant")
    assert row["initial_access_token_hash"] == sha256(token)
    assert token not in str(row)
    response = await idp.client.get("/admin/v1/tenants/ebetsu", auth=idp.auth())
    assert response.status_code == 200
    body = response.json()
    assert body["name_ja"] == "江別市" and body["state"] == "active"
    assert "initial_access_token" not in body

    rotated = await idp.client.post("/admin/v1/tenants/ebetsu/initial-access-token", auth=idp.auth())
    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["initial_access_token"]
    assert new_token != token and rotated.headers["cache-control"] == "no-store"
    old = await idp.client.post("/register", json=rp(), headers={"Authorization": f"Bearer {token}"})
    assert old.status_code == 401 and old.json()["error"] == "invalid_token"
    new = await idp.client.post("/register", json=rp(), headers={"Authorization": f"Bearer {new_token}"})
    assert new.status_code == 201, new.text


async def test_tenant_refusals_write_nothing(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    before = await snapshot(idp)
    cases = [
        ({"id": "ebetsu", "name_ja": "江別市", "name_en": "Ebetsu"}, 409, f"{PROBLEM}tenant-exists"),
        ({"id": "Ebetsu!", "name_ja": "江別市", "name_en": "Ebetsu"}, 422, None),
        ({"id": "-x", "name_ja": "江別市", "name_en": "Ebetsu"}, 422, None),
        ({"id": "maebashi", "name_ja": "前橋市"}, 422, None),
        ({"id": "maebashi", "name_ja": "", "name_en": "Maebashi"}, 422, None),
    ]
    for body, status, problem in cases:
        response = await idp.client.post("/admin/v1/tenants", json=body, auth=idp.auth())
        assert response.status_code == status, (body, response.text)
        if problem:
            assert response.json()["type"] == problem
    assert (await idp.client.get("/admin/v1/tenants/nowhere", auth=idp.auth())).status_code == 404
    rotate = await idp.client.post("/admin/v1/tenants/nowhere/initial-access-token", auth=idp.auth())
    assert rotate.status_code == 404
    assert await snapshot(idp) == before


async def test_the_admin_api_needs_the_operator(idp) -> None:  # type: ignore[no-untyped-def]
    body = {"id": "ebetsu", "name_ja": "江別市", "name_en": "Ebetsu"}
    anonymous = await idp.client.post("/admin/v1/tenants", json=body)
    assert anonymous.status_code == 401
    broker = await idp.client.post("/admin/v1/tenants", json=body, auth=idp.auth("broker"))
    assert broker.status_code == 403
    assert (await idp.client.get("/admin/v1/clients/x", auth=idp.auth("broker"))).status_code == 403
    assert await idp.rows("tenant") == []


# --- clients (admin) ------------------------------------------------------------------------


async def test_an_operator_registers_a_private_key_jwt_client_with_a_legal_basis(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    response = await idp.client.post(
        "/admin/v1/tenants/ebetsu/clients",
        json={**rp(tsunagu_app_id="jp.ebetsu.app"), "user_number_legal_basis": "番号法第9条第1項 別表第1"},
        auth=idp.auth(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    client_id = body["client_id"]
    assert len(client_id) == 22
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["response_types"] == ["code"] and body["id_token_signed_response_alg"] == "ES256"
    assert body["sector_identifier"] == "rp.ebetsu.example"
    assert body["user_number_legal_basis"] == "番号法第9条第1項 別表第1"
    assert "client_secret" not in body and "registration_access_token" not in body

    [row] = await idp.rows("client")
    assert row["client_secret_hash"] is None and row["registration_access_token_hash"] is None
    assert row["user_number_legal_basis"] == "番号法第9条第1項 別表第1"
    assert "user_number_legal_basis" not in row["metadata_json"]
    [event] = await idp.events("tsunagu.idp.client")
    assert event["type"] == "tsunagu.idp.client.registered"
    assert event["data"]["client_id"] == client_id and event["data"]["actor"] == "operator"
    assert event["data"]["actor_id"] == "operator" and event["data"]["tenant_id"] == "ebetsu"
    assert event["data"]["metadata"]["redirect_uris"] == ["https://rp.ebetsu.example/callback"]

    client = await idp.services.clients.get(client_id)
    assert isinstance(client, Client)
    assert client.tenant_name_ja == "江別市" and client.app_id == "jp.ebetsu.app"
    assert client.display_name("ja") == "江別市電子申請"
    assert client.display_name("en-GB") == "Ebetsu e-applications"
    assert client.display_name("fr") == "Ebetsu services"
    assert client.redirect_uris == ["https://rp.ebetsu.example/callback"]
    assert not client.is_public and not client.require_par and client.id_token_alg == "ES256"
    fetched = await idp.client.get(f"/admin/v1/clients/{client_id}", auth=idp.auth())
    assert fetched.status_code == 200 and fetched.json()["client_name#ja"] == "江別市電子申請"


async def test_secrets_are_issued_once_hashed_and_rotated(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    response = await idp.client.post(
        "/admin/v1/tenants/ebetsu/clients",
        json=rp(jwks=None, token_endpoint_auth_method="client_secret_basic"),
        auth=idp.auth(),
    )
    assert response.status_code == 201, response.text
    client_id, secret = response.json()["client_id"], response.json()["client_secret"]
    assert len(secret) == 43 and response.json()["client_secret_expires_at"] == 0
    [row] = await idp.rows("client")
    assert row["client_secret_hash"] == sha256(secret)

    rotated = await idp.client.post(f"/admin/v1/clients/{client_id}/secret", auth=idp.auth())
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["client_secret"]
    assert new_secret != secret
    [row] = await idp.rows("client")
    assert row["client_secret_hash"] == sha256(new_secret)
    event = (await idp.events("tsunagu.idp.client"))[-1]
    assert event["type"] == "tsunagu.idp.client.updated" and event["data"]["secret_rotated"] is True
    assert new_secret not in str(await idp.events())

    jwt_client = await idp.client.post("/admin/v1/tenants/ebetsu/clients", json=rp(), auth=idp.auth())
    before = await snapshot(idp)
    refused = await idp.client.post(
        f"/admin/v1/clients/{jwt_client.json()['client_id']}/secret", auth=idp.auth()
    )
    assert refused.status_code == 409 and refused.json()["type"] == f"{PROBLEM}client-has-no-secret"
    missing = await idp.client.post("/admin/v1/clients/nope/secret", auth=idp.auth())
    assert missing.status_code == 404
    assert await snapshot(idp) == before


async def test_an_operator_patches_a_client(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    created = await idp.client.post("/admin/v1/tenants/ebetsu/clients", json=rp(), auth=idp.auth())
    client_id = created.json()["client_id"]
    assert (await idp.services.clients.get(client_id)).user_number_legal_basis is None  # cached now

    patched = await idp.client.patch(
        f"/admin/v1/clients/{client_id}",
        json={
            "client_name": "Ebetsu",
            "client_name#en": None,
            "dpop_bound_access_tokens": True,
            "user_number_legal_basis": "条例第3条",
        },
        auth=idp.auth(),
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["client_name"] == "Ebetsu" and "client_name#en" not in body
    assert body["dpop_bound_access_tokens"] is True and body["user_number_legal_basis"] == "条例第3条"
    client = await idp.services.clients.get(client_id)  # the local cache was cleared
    assert client.dpop_bound and client.user_number_legal_basis == "条例第3条"
    event = (await idp.events("tsunagu.idp.client"))[-1]
    assert event["type"] == "tsunagu.idp.client.updated" and event["data"]["secret_rotated"] is False

    to_secret = await idp.client.patch(
        f"/admin/v1/clients/{client_id}",
        json={"token_endpoint_auth_method": "client_secret_post"},
        auth=idp.auth(),
    )
    assert to_secret.status_code == 200, to_secret.text
    assert len(to_secret.json()["client_secret"]) == 43

    before = await snapshot(idp)
    for changes, status in [
        ({"redirect_uris": ["https://elsewhere.example/cb"]}, 400),  # the pairwise sector would change
        ({"redirect_uris": ["http://rp.ebetsu.example/cb"]}, 400),
        ({"grant_types": ["implicit"]}, 400),
        ({"user_number_legal_basis": 42}, 400),
    ]:
        response = await idp.client.patch(f"/admin/v1/clients/{client_id}", json=changes, auth=idp.auth())
        assert response.status_code == status, (changes, response.text)
        assert response.json()["type"] == f"{PROBLEM}invalid-client-metadata"
    unknown = await idp.client.patch("/admin/v1/clients/nope", json={"client_name": "x"}, auth=idp.auth())
    assert unknown.status_code == 404
    assert await snapshot(idp) == before


async def test_deleting_a_client_disables_it(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    created = await idp.client.post("/admin/v1/tenants/ebetsu/clients", json=rp(), auth=idp.auth())
    client_id = created.json()["client_id"]
    assert await idp.services.clients.get(client_id) is not None
    deleted = await idp.client.delete(f"/admin/v1/clients/{client_id}", auth=idp.auth())
    assert deleted.status_code == 204
    assert await idp.services.clients.get(client_id) is None
    [row] = await idp.rows("client")
    assert row["state"] == "disabled"
    shown = await idp.client.get(f"/admin/v1/clients/{client_id}", auth=idp.auth())
    assert shown.status_code == 200 and shown.json()["state"] == "disabled"
    event = (await idp.events("tsunagu.idp.client"))[-1]
    assert event["type"] == "tsunagu.idp.client.deleted" and event["data"]["client_id"] == client_id
    before = await snapshot(idp)
    again = await idp.client.delete(f"/admin/v1/clients/{client_id}", auth=idp.auth())
    assert again.status_code == 404
    patch = await idp.client.patch(
        f"/admin/v1/clients/{client_id}", json={"client_name": "x"}, auth=idp.auth()
    )
    assert patch.status_code == 404
    assert await snapshot(idp) == before


async def test_admin_metadata_errors_are_problems_and_write_nothing(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    before = await snapshot(idp)
    response = await idp.client.post(
        "/admin/v1/tenants/ebetsu/clients", json=rp(redirect_uris=["https://a.example/cb#x"]), auth=idp.auth()
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == f"{PROBLEM}invalid-client-metadata"
    unknown_tenant = await idp.client.post("/admin/v1/tenants/nowhere/clients", json=rp(), auth=idp.auth())
    assert unknown_tenant.status_code == 404 and unknown_tenant.json()["type"] == f"{PROBLEM}tenant-not-found"
    assert await snapshot(idp) == before


# --- RFC 7591 / 7592 ------------------------------------------------------------------------


async def test_dynamic_registration_and_management(idp) -> None:  # type: ignore[no-untyped-def]
    token = await make_tenant(idp)
    response = await idp.client.post(
        "/register",
        json=rp(
            jwks=None, token_endpoint_auth_method="client_secret_basic", software_id="x", unknown_member=1
        ),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    client_id, access = body["client_id"], body["registration_access_token"]
    assert body["registration_client_uri"] == f"{ISSUER}/register/{client_id}"
    assert body["client_secret_expires_at"] == 0 and isinstance(body["client_id_issued_at"], int)
    assert "unknown_member" not in body and "user_number_legal_basis" not in body
    [row] = await idp.rows("client")
    assert row["registration_access_token_hash"] == sha256(access)
    assert row["client_secret_hash"] == sha256(body["client_secret"])
    [event] = await idp.events("tsunagu.idp.client")
    assert event["data"]["actor"] == "tenant" and event["data"]["actor_id"] == "ebetsu"

    bearer = {"Authorization": f"Bearer {access}"}
    read = await idp.client.get(f"/register/{client_id}", headers=bearer)
    assert read.status_code == 200, read.text
    assert read.json()["client_id"] == client_id and "client_secret" not in read.json()
    assert read.json()["registration_access_token"] == access

    replacement = {**rp(jwks=None, token_endpoint_auth_method="client_secret_basic"), "client_id": client_id}
    replacement["client_name"] = "Renamed"
    replaced = await idp.client.put(f"/register/{client_id}", json=replacement, headers=bearer)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["client_name"] == "Renamed" and "client_secret" not in replaced.json()
    event = (await idp.events("tsunagu.idp.client"))[-1]
    assert event["type"] == "tsunagu.idp.client.updated"
    assert event["data"]["actor"] == "client" and event["data"]["actor_id"] == client_id

    before = await snapshot(idp)
    for body_, error in [
        ({k: v for k, v in replacement.items() if k != "client_id"}, "invalid_client_metadata"),
        ({**replacement, "client_id": "other"}, "invalid_client_metadata"),
        ({**replacement, "client_secret": "not-the-secret"}, "invalid_client_metadata"),
        ({**replacement, "registration_access_token": access}, "invalid_client_metadata"),
        ({**replacement, "user_number_legal_basis": "条例"}, "invalid_client_metadata"),
        ({**replacement, "redirect_uris": ["https://rp.ebetsu.example/cb#f"]}, "invalid_redirect_uri"),
        ({**replacement, "redirect_uris": ["https://other.example/cb"]}, "invalid_client_metadata"),
    ]:
        refused = await idp.client.put(f"/register/{client_id}", json=body_, headers=bearer)
        assert refused.status_code == 400, (body_, refused.text)
        assert refused.json()["error"] == error
    wrong = await idp.client.get(f"/register/{client_id}", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_token"
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    other_client = await idp.client.get("/register/another-client", headers=bearer)
    assert other_client.status_code == 401
    assert (await idp.client.get(f"/register/{client_id}")).status_code == 401
    assert await snapshot(idp) == before

    deleted = await idp.client.delete(f"/register/{client_id}", headers=bearer)
    assert deleted.status_code == 204
    assert (await idp.rows("client"))[0]["state"] == "disabled"
    assert (await idp.events("tsunagu.idp.client"))[-1]["type"] == "tsunagu.idp.client.deleted"
    gone = await idp.client.get(f"/register/{client_id}", headers=bearer)
    assert gone.status_code == 401 and gone.json()["error"] == "invalid_token"


async def test_registration_needs_a_valid_initial_access_token(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    before = await snapshot(idp)
    for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic Zm9vOmJhcg=="}]:
        response = await idp.client.post("/register", json=rp(), headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_token"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await snapshot(idp) == before


BAD_METADATA: list[tuple[dict[str, Any], str]] = [
    (rp(redirect_uris=None), "invalid_redirect_uri"),
    (rp(redirect_uris=[]), "invalid_redirect_uri"),
    (rp(redirect_uris=["http://rp.example/cb"]), "invalid_redirect_uri"),
    (rp(redirect_uris=["https://rp.example/cb#frag"]), "invalid_redirect_uri"),
    (rp(redirect_uris=["/relative/cb"]), "invalid_redirect_uri"),
    (rp(redirect_uris=["com.example.app:/cb"]), "invalid_redirect_uri"),
    (rp(redirect_uris=["https://user:pw@rp.example/cb"]), "invalid_redirect_uri"),
    (rp(redirect_uris="https://rp.example/cb"), "invalid_redirect_uri"),
    (rp(redirect_uris=["https://a.example/cb", "https://b.example/cb"]), "invalid_client_metadata"),
    (rp(response_types=["token"]), "invalid_client_metadata"),
    (rp(response_types=["code", "id_token"]), "invalid_client_metadata"),
    (rp(grant_types=["implicit"]), "invalid_client_metadata"),
    (rp(grant_types=["password"]), "invalid_client_metadata"),
    (rp(grant_types=["refresh_token"]), "invalid_client_metadata"),
    (rp(grant_types=["client_credentials"], response_types=["code"]), "invalid_client_metadata"),
    (rp(token_endpoint_auth_method="client_secret_jwt"), "invalid_client_metadata"),
    (rp(jwks=None), "invalid_client_metadata"),  # private_key_jwt by default needs keys
    (rp(jwks_uri="https://rp.example/jwks"), "invalid_client_metadata"),  # both jwks and jwks_uri
    (rp(jwks=None, jwks_uri="ftp://rp.example/jwks"), "invalid_client_metadata"),
    (rp(jwks=None, jwks_uri="http://rp.example/jwks"), "invalid_client_metadata"),
    # URLs the idp calls may not name an address inside (the SSRF guard)
    (rp(jwks=None, jwks_uri="https://169.254.169.254/latest/meta-data"), "invalid_client_metadata"),
    (rp(jwks=None, jwks_uri="https://10.0.0.5/jwks"), "invalid_client_metadata"),
    (rp(backchannel_logout_uri="https://[fd00::1]/logout"), "invalid_client_metadata"),
    (rp(backchannel_logout_uri="https://[::ffff:192.168.0.1]/logout"), "invalid_client_metadata"),
    (rp(jwks={"keys": []}), "invalid_client_metadata"),
    (rp(jwks={"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}), "invalid_client_metadata"),
    (rp(jwks={"keys": [ECKey.generate_key("P-256").as_dict(private=True)]}), "invalid_client_metadata"),
    (rp(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), "invalid_client_metadata"),
    (rp(jwks={"keys": [ECKey.generate_key("P-384").as_dict(private=False)]}), "invalid_client_metadata"),
    (rp(jwks={"keys": [RSAKey.generate_key(1024).as_dict(private=False)]}), "invalid_client_metadata"),
    (
        rp(token_endpoint_auth_method="none", grant_types=["client_credentials"], response_types=[]),
        "invalid_client_metadata",
    ),
    (rp(id_token_signed_response_alg="HS256"), "invalid_client_metadata"),
    (rp(id_token_signed_response_alg="none"), "invalid_client_metadata"),
    (rp(request_object_signing_alg="none"), "invalid_client_metadata"),
    (rp(token_endpoint_auth_signing_alg="HS256"), "invalid_client_metadata"),
    (rp(require_pushed_authorization_requests="yes"), "invalid_client_metadata"),
    (rp(dpop_bound_access_tokens=1), "invalid_client_metadata"),
    (rp(backchannel_logout_uri="http://rp.example/logout"), "invalid_client_metadata"),
    (rp(backchannel_logout_session_required=True), "invalid_client_metadata"),
    (rp(post_logout_redirect_uris=["https://rp.example/bye#x"]), "invalid_client_metadata"),
    (rp(grant_types=["authorization_code", "urn:openid:params:grant-type:ciba"]), "invalid_client_metadata"),
    (
        rp(
            grant_types=["authorization_code", "urn:openid:params:grant-type:ciba"],
            backchannel_token_delivery_mode="ping",
        ),
        "invalid_client_metadata",
    ),
    (
        rp(
            grant_types=["authorization_code", "urn:openid:params:grant-type:ciba"],
            backchannel_token_delivery_mode="ping",
            backchannel_client_notification_endpoint="http://rp.example/ciba",
        ),
        "invalid_client_metadata",
    ),
    (rp(backchannel_token_delivery_mode="push"), "invalid_client_metadata"),
    (rp(backchannel_token_delivery_mode="poll"), "invalid_client_metadata"),  # without the CIBA grant
    (rp(subject_type="public"), "invalid_client_metadata"),
    (rp(sector_identifier_uri="http://sector.example/uris.json"), "invalid_client_metadata"),
    (rp(authorization_details_types=["payment_initiation"]), "invalid_client_metadata"),
    (rp(scope="openid\nprofile"), "invalid_client_metadata"),
    (rp(tsunagu_app_id="bad app id"), "invalid_client_metadata"),
    (rp(logo_uri="javascript:alert(1)"), "invalid_client_metadata"),
    (rp(client_name=""), "invalid_client_metadata"),
    (rp(client_name="x" * 201), "invalid_client_metadata"),
    (rp(contacts="admin@example.jp"), "invalid_client_metadata"),
]


@pytest.mark.parametrize(("metadata", "error"), BAD_METADATA, ids=[str(i) for i in range(len(BAD_METADATA))])
async def test_bad_metadata_is_refused_and_nothing_is_written(idp, metadata, error) -> None:  # type: ignore[no-untyped-def]
    token = await make_tenant(idp)
    before = await snapshot(idp)
    response = await idp.client.post("/register", json=metadata, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error, response.json()
    assert await snapshot(idp) == before


async def test_registration_refuses_what_is_not_json_metadata(idp) -> None:  # type: ignore[no-untyped-def]
    token = await make_tenant(idp)
    bearer = {"Authorization": f"Bearer {token}"}
    before = await snapshot(idp)
    for response in [
        await idp.client.post(
            "/register",
            content=b"redirect_uris=x",
            headers={**bearer, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        await idp.client.post(
            "/register", content=b"{not json", headers={**bearer, "Content-Type": "application/json"}
        ),
        await idp.client.post("/register", json=["https://rp.example/cb"], headers=bearer),
        await idp.client.post("/register", json={**rp(), "user_number_legal_basis": "条例"}, headers=bearer),
    ]:
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_client_metadata"
    assert await snapshot(idp) == before


async def test_sectors_service_clients_public_clients_and_ciba(idp) -> None:  # type: ignore[no-untyped-def]
    token = await make_tenant(idp)
    bearer = {"Authorization": f"Bearer {token}"}

    async def register(metadata: dict[str, Any]) -> dict[str, Any]:
        response = await idp.client.post("/register", json=metadata, headers=bearer)
        assert response.status_code == 201, response.text
        return dict(response.json())

    two_hosts = await register(
        rp(
            redirect_uris=["https://a.ebetsu.example/cb", "https://b.ebetsu.example/cb"],
            sector_identifier_uri="https://sector.ebetsu.example/redirects.json",
        )
    )
    service = await register(
        rp(
            redirect_uris=None,
            grant_types=["client_credentials"],
            jwks=None,
            token_endpoint_auth_method="client_secret_post",
        )
    )
    assert service["response_types"] == [] and "client_secret" in service
    native = await register(
        rp(
            redirect_uris=["http://127.0.0.1:51234/cb", "http://127.0.0.1/other"],
            jwks=None,
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
        )
    )
    assert "client_secret" not in native
    ciba = await register(
        rp(
            grant_types=["authorization_code", "urn:openid:params:grant-type:ciba"],
            backchannel_token_delivery_mode="ping",
            backchannel_client_notification_endpoint="https://rp.ebetsu.example/ciba",
            id_token_signed_response_alg="RS256",
            require_pushed_authorization_requests=True,
            backchannel_logout_uri="https://rp.ebetsu.example/logout",
            post_logout_redirect_uris=["https://rp.ebetsu.example/bye"],
        )
    )
    clients = idp.services.clients
    assert (await clients.get(two_hosts["client_id"])).sector_identifier == "sector.ebetsu.example"
    assert (await clients.get(service["client_id"])).sector_identifier == service["client_id"]
    public = await clients.get(native["client_id"])
    assert public.is_public and public.sector_identifier == "127.0.0.1"
    assert public.redirect_uris == ["http://127.0.0.1:51234/cb", "http://127.0.0.1/other"]
    backchannel = await clients.get(ciba["client_id"])
    assert backchannel.ciba_mode == "ping"
    assert backchannel.ciba_notification_endpoint == "https://rp.ebetsu.example/ciba"
    assert backchannel.id_token_alg == "RS256" and backchannel.require_par
    assert backchannel.backchannel_logout_uri == "https://rp.ebetsu.example/logout"
    assert backchannel.post_logout_redirect_uris == ["https://rp.ebetsu.example/bye"]
    assert backchannel.grant_types == ["authorization_code", "urn:openid:params:grant-type:ciba"]
    assert len(await idp.events("tsunagu.idp.client.registered")) == 4


def test_jwks_uri_on_loopback_is_refused_in_production() -> None:
    from tsunagu.idp.domain.clients import MetadataRejected, validate_metadata

    metadata = rp(jwks=None, jwks_uri="http://127.0.0.1:9/jwks")
    assert validate_metadata(metadata, loopback_http=True).jwks_uri == "http://127.0.0.1:9/jwks"
    with pytest.raises(MetadataRejected) as refused:
        validate_metadata(metadata, loopback_http=False)
    assert refused.value.oauth_error == "invalid_client_metadata"
