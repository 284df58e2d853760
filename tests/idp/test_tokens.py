"""The token endpoint, userinfo, introspection and revocation on the real stack (signer with its
SoftHSM2 token): every token is checked independently with joserfc against /jwks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from tests.idp.conftest import ISSUER, IdpHarness
from tests.idp.rp import Pkce
from tests.idp.token_support import (
    ACR,
    AMR,
    USER_NUMBER,
    exchange,
    introspect,
    issue_code,
    new_rp,
    refresh,
    revoke,
    token_form,
    verified,
)
from tsunagu.devstack.postgres import scratch_database
from tsunagu.idp.domain.errors import OAuthError
from tsunagu.idp.domain.tokens import ApprovedLogin, DpopInput
from tsunagu.idp.store import models


def _error(response: Any, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text
    assert response.headers["cache-control"] == "no-store"


async def _userinfo(idp: IdpHarness, access_token: str) -> Any:
    return await idp.client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


async def _code_tokens(idp: IdpHarness, rp: Any = None, **code: Any) -> tuple[Any, dict[str, Any]]:
    rp = rp or await new_rp(idp)
    pkce = Pkce()
    response = await exchange(idp, rp, await issue_code(idp, rp, pkce, **code), pkce)
    assert response.status_code == 200, response.text
    return rp, response.json()


# -- authorization_code ---------------------------------------------------------------------------


async def test_code_exchange_issues_id_access_and_refresh_tokens_that_verify(idp: IdpHarness):
    rp = await new_rp(idp)
    pkce = Pkce()
    auth_time = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    code = await issue_code(idp, rp, pkce, auth_time=auth_time, scope="openid profile")
    response = await exchange(idp, rp, code, pkce)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == idp.services.settings.access_token_ttl_s
    assert body["scope"] == "openid profile" and body["refresh_token"]

    client = await idp.services.clients.get(rp.client_id)
    sub = idp.services.subjects.subject(client.sector_identifier, USER_NUMBER)
    header, claims = await verified(idp, body["id_token"], typ="JWT")
    assert header["alg"] == "ES256" and header["kid"]
    assert claims["iss"] == ISSUER and claims["sub"] == sub and claims["sub"] != USER_NUMBER
    assert claims["aud"] == rp.client_id and claims["azp"] == rp.client_id
    assert claims["nonce"] == "nonce-1" and claims["acr"] == ACR and claims["amr"] == AMR
    assert claims["auth_time"] == int(auth_time.timestamp())
    assert claims["exp"] - claims["iat"] == idp.services.settings.id_token_ttl_s
    assert "user_number" not in claims and "sid" not in claims  # no legal basis, no session

    _, access = await verified(idp, body["access_token"], typ="at+jwt")
    assert access["iss"] == ISSUER and access["sub"] == sub and access["aud"] == rp.client_id
    assert access["client_id"] == rp.client_id and access["scope"] == "openid profile"
    assert access["auth_time"] == int(auth_time.timestamp()) and access["acr"] == ACR
    assert "cnf" not in access
    assert access["jti"] in {row["jti"] for row in await idp.rows("access_token")}

    # The subject is remembered so the client's sub names the person back (CIBA login_hint).
    assert await idp.services.tokens.user_for_subject(client.sector_identifier, sub) == USER_NUMBER
    assert await idp.services.tokens.user_for_subject("other.example", sub) is None
    # Only hashes of codes and refresh tokens are stored.
    stored = {row["code_hash"] for row in await idp.rows("authorization_code")}
    assert code not in stored and len(next(iter(stored))) == 64
    assert body["refresh_token"] not in {row["token_hash"] for row in await idp.rows("refresh_token")}

    userinfo = await _userinfo(idp, body["access_token"])
    assert userinfo.status_code == 200 and userinfo.json() == {"sub": sub}
    assert userinfo.headers["cache-control"] == "no-store"


async def test_an_rs256_client_gets_rs256_id_tokens(idp: IdpHarness):
    rp = await new_rp(idp, id_token_signed_response_alg="RS256")
    _, body = await _code_tokens(idp, rp)
    header, claims = await verified(idp, body["id_token"], typ="JWT")
    assert header["alg"] == "RS256" and claims["aud"] == rp.client_id
    access_header, _ = await verified(idp, body["access_token"], typ="at+jwt")
    assert access_header["alg"] == "ES256"


async def test_legal_basis_releases_user_number_and_sessions_give_sid(idp: IdpHarness):
    rp = await new_rp(idp, user_number_legal_basis="番号法 第9条 別表 (test)")
    now = datetime.now(UTC)
    async with idp.app.state.runtime.db.transaction() as session:
        await session.execute(
            insert(models.idp_session).values(
                id="sid-1",
                cookie_hash="0" * 64,
                user_number=USER_NUMBER,
                certificate_serial="0a1b2c",
                auth_time=now,
                acr=ACR,
                amr=AMR,
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    claims_parameter = {"id_token": {"user_number": None}, "userinfo": {"user_number": None}}
    _, body = await _code_tokens(idp, rp, session_id="sid-1", claims=claims_parameter)
    _, claims = await verified(idp, body["id_token"], typ="JWT")
    assert claims["user_number"] == USER_NUMBER and claims["sid"] == "sid-1"
    assert (await _userinfo(idp, body["access_token"])).json()["user_number"] == USER_NUMBER

    # Logout (or a revoked certificate) revokes the session's grants and their tokens.
    async with idp.app.state.runtime.db.transaction() as session:
        revoked = await idp.services.tokens.revoke_grants(session, session_ids=["sid-1"], reason="logout")
    assert len(revoked) == 1
    _error(await refresh(idp, rp, body["refresh_token"]), "invalid_grant")
    assert (await _userinfo(idp, body["access_token"])).status_code == 401


async def test_revoking_a_certificate_revokes_its_grants(idp: IdpHarness):
    rp, body = await _code_tokens(idp, certificate_serial="dead01")
    _, other = await _code_tokens(idp, rp, certificate_serial="beef02")
    async with idp.app.state.runtime.db.transaction() as session:
        revoked = await idp.services.tokens.revoke_grants(
            session, certificate_serial="dead01", reason="certificate-revoked"
        )
    assert len(revoked) == 1
    assert (await introspect(idp, rp, body["access_token"]))["active"] is False
    assert (await introspect(idp, rp, other["access_token"]))["active"] is True


async def test_a_replayed_code_revokes_every_token_it_issued(idp: IdpHarness):
    rp = await new_rp(idp)
    pkce = Pkce()
    code = await issue_code(idp, rp, pkce)
    first = await exchange(idp, rp, code, pkce)
    assert first.status_code == 200, first.text
    _error(await exchange(idp, rp, code, pkce), "invalid_grant")
    tokens = first.json()
    _error(await refresh(idp, rp, tokens["refresh_token"]), "invalid_grant")
    assert (await introspect(idp, rp, tokens["access_token"]))["active"] is False
    assert (await _userinfo(idp, tokens["access_token"])).status_code == 401
    grants = await idp.rows("grant")
    assert [g["revoked_reason"] for g in grants] == ["code-replay"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_verifier": "x" * 43}, "invalid_grant"),  # wrong PKCE verifier
        ({"code_verifier": "short"}, "invalid_grant"),  # not a verifier at all
        ({"code_verifier": None}, "invalid_request"),
        ({"redirect_uri": "https://rp.example/other"}, "invalid_grant"),
        ({"redirect_uri": None}, "invalid_request"),
        ({"code": "no-such-code"}, "invalid_grant"),
    ],
)
async def test_bad_code_exchanges_are_refused(idp: IdpHarness, change: dict[str, Any], error: str):
    rp = await new_rp(idp)
    pkce = Pkce()
    code = await issue_code(idp, rp, pkce)
    parameters: dict[str, Any] = {
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": pkce.verifier,
        **change,
    }
    response = await idp.client.post("/token", data=token_form(rp, "authorization_code", **parameters))
    _error(response, error)
    assert await idp.rows("access_token") == []


async def test_a_code_of_another_client_and_an_expired_code_are_refused(idp: IdpHarness):
    rp, other = await new_rp(idp), await new_rp(idp)
    pkce = Pkce()
    code = await issue_code(idp, rp, pkce)
    other.redirect_uri = rp.redirect_uri
    _error(await exchange(idp, other, code, pkce), "invalid_grant")
    tokens = idp.services.tokens
    later = datetime.now(UTC) + timedelta(seconds=idp.services.settings.authorization_code_ttl_s + 1)
    tokens.clock = lambda: later
    try:
        _error(await exchange(idp, rp, code, pkce), "invalid_grant")
    finally:
        tokens.clock = lambda: datetime.now(UTC)
    assert await idp.rows("access_token") == []


async def test_token_endpoint_refusals(idp: IdpHarness):
    rp = await new_rp(idp)
    _error(await idp.client.post("/token", data=rp.auth_form(ISSUER + "/token")), "invalid_request")
    _error(await idp.client.post("/token", data=token_form(rp, "password")), "unsupported_grant_type")
    _error(await idp.client.post("/token", data=token_form(rp, "client_credentials")), "unauthorized_client")
    no_auth = await idp.client.post(
        "/token", data={"grant_type": "authorization_code", "client_id": rp.client_id, "code": "x"}
    )
    _error(no_auth, "invalid_client", 401)
    as_json = await idp.client.post("/token", json={"grant_type": "client_credentials"})
    _error(as_json, "invalid_request")
    repeated = await idp.client.post(
        "/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _error(repeated, "invalid_request")


# -- refresh tokens -------------------------------------------------------------------------------


async def test_refresh_tokens_rotate_and_reuse_revokes_the_family(idp: IdpHarness):
    rp, first = await _code_tokens(idp)
    second = await refresh(idp, rp, first["refresh_token"])
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    _, claims = await verified(idp, rotated["id_token"], typ="JWT")
    assert "nonce" not in claims and claims["acr"] == ACR
    assert (await introspect(idp, rp, rotated["refresh_token"]))["active"] is True
    assert (await introspect(idp, rp, first["refresh_token"]))["active"] is False

    _error(await refresh(idp, rp, first["refresh_token"]), "invalid_grant")  # reuse
    _error(await refresh(idp, rp, rotated["refresh_token"]), "invalid_grant")  # the family is gone
    for access_token in (first["access_token"], rotated["access_token"]):
        assert (await introspect(idp, rp, access_token))["active"] is False
    assert [g["revoked_reason"] for g in await idp.rows("grant")] == ["refresh-reuse"]


async def test_refresh_is_bound_to_its_client_and_to_the_granted_scope(idp: IdpHarness):
    rp, tokens = await _code_tokens(idp, scope="openid profile")
    other = await new_rp(idp)
    _error(await refresh(idp, other, tokens["refresh_token"]), "invalid_grant")
    _error(await refresh(idp, rp, tokens["refresh_token"], scope="openid address"), "invalid_scope")
    narrowed = await refresh(idp, rp, tokens["refresh_token"], scope="openid")
    assert narrowed.status_code == 200, narrowed.text  # the refusals above spent nothing
    assert narrowed.json()["scope"] == "openid"
    _, access = await verified(idp, narrowed.json()["access_token"], typ="at+jwt")
    assert access["scope"] == "openid"
    _error(await refresh(idp, rp, "not-a-refresh-token"), "invalid_grant")


async def test_without_offline_access_or_the_refresh_grant_no_refresh_token(idp: IdpHarness):
    rp = await new_rp(idp, grant_types=["authorization_code"])
    _, tokens = await _code_tokens(idp, rp)
    assert "refresh_token" not in tokens
    _, offline = await _code_tokens(idp, rp, scope="openid offline_access")
    assert offline["refresh_token"]
    _error(await refresh(idp, rp, offline["refresh_token"]), "unauthorized_client")


# -- client_credentials ---------------------------------------------------------------------------


async def _service_client(idp: IdpHarness, **metadata: Any) -> Any:
    return await new_rp(
        idp,
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope="tsunagu.read tsunagu.write",
        **metadata,
    )


async def test_client_credentials_token_is_for_the_client_itself(idp: IdpHarness):
    service = await _service_client(idp)
    response = await idp.client.post(
        "/token", data=token_form(service, "client_credentials", scope="tsunagu.read")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no ID token, no refresh
    assert body["scope"] == "tsunagu.read" and body["token_type"] == "Bearer"
    _, claims = await verified(idp, body["access_token"], typ="at+jwt")
    assert claims["sub"] == claims["client_id"] == claims["aud"] == service.client_id
    assert "auth_time" not in claims and "acr" not in claims

    default = await idp.client.post("/token", data=token_form(service, "client_credentials"))
    assert default.json()["scope"] == "tsunagu.read tsunagu.write"
    for_api = await idp.client.post(
        "/token", data=token_form(service, "client_credentials", resource="https://api.example/v1")
    )
    _, claims = await verified(idp, for_api.json()["access_token"], typ="at+jwt")
    assert claims["aud"] == "https://api.example/v1"
    _error(
        await idp.client.post("/token", data=token_form(service, "client_credentials", resource="relative")),
        "invalid_target",
    )
    for scope in ("tsunagu.admin", "openid", "tsunagu.read tsunagu.admin"):
        _error(
            await idp.client.post("/token", data=token_form(service, "client_credentials", scope=scope)),
            "invalid_scope",
        )
    # A person's endpoint refuses a service token; introspection shows it to its client.
    assert (await _userinfo(idp, body["access_token"])).status_code == 401
    answer = await introspect(idp, service, body["access_token"])
    assert answer["active"] is True and answer["sub"] == service.client_id
    # Many tokens, one grant row per (client, scope) in this process.
    await asyncio.gather(
        *(idp.client.post("/token", data=token_form(service, "client_credentials")) for _ in range(5))
    )
    grants = [g for g in await idp.rows("grant") if g["client_id"] == service.client_id]
    assert len(grants) <= 4 and all(g["user_number"] is None for g in grants)


# -- userinfo -------------------------------------------------------------------------------------


async def test_userinfo_refusals_carry_the_challenge(idp: IdpHarness):
    rp, tokens = await _code_tokens(idp)
    missing = await idp.client.get("/userinfo")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    garbage = await _userinfo(idp, "a.b.c")
    assert garbage.status_code == 401 and 'error="invalid_token"' in garbage.headers["www-authenticate"]
    posted = await idp.client.post("/userinfo", data={"access_token": tokens["access_token"]})
    assert posted.status_code == 200, posted.text
    no_openid_rp, no_openid = await _code_tokens(idp, scope="profile")
    refused = await _userinfo(idp, no_openid["access_token"])
    assert refused.status_code == 403 and 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert no_openid_rp.client_id
    # A token minted for another resource (RFC 8707) is not for userinfo.
    pkce = Pkce()
    elsewhere = await exchange(
        idp, rp, await issue_code(idp, rp, pkce), pkce, resource="https://api.example/records"
    )
    assert (await _userinfo(idp, elsewhere.json()["access_token"])).status_code == 401


# -- introspection and revocation -----------------------------------------------------------------


async def test_introspection_shows_a_client_only_its_own_tokens(idp: IdpHarness):
    rp, tokens = await _code_tokens(idp)
    other = await new_rp(idp)
    own = await introspect(idp, rp, tokens["access_token"])
    assert own["active"] is True and own["client_id"] == rp.client_id and own["scope"] == "openid"
    assert own["token_type"] == "Bearer" and own["iss"] == ISSUER and own["exp"] > own["iat"]
    assert await introspect(idp, other, tokens["access_token"]) == {"active": False}
    assert await introspect(idp, other, tokens["refresh_token"]) == {"active": False}
    refresh_view = await introspect(idp, rp, tokens["refresh_token"])
    assert refresh_view["active"] is True and refresh_view["token_type"] == "refresh_token"
    assert refresh_view["sub"] == own["sub"]
    assert await introspect(idp, rp, "unknown") == {"active": False}
    unauthenticated = await idp.client.post("/introspect", data={"token": tokens["access_token"]})
    assert unauthenticated.status_code == 401


async def test_revocation(idp: IdpHarness):
    rp, tokens = await _code_tokens(idp)
    other = await new_rp(idp)
    # Another client's revocation is answered 200 and changes nothing; so is an unknown token.
    assert (await revoke(idp, other, tokens["access_token"])).status_code == 200
    assert (await revoke(idp, other, tokens["refresh_token"])).status_code == 200
    assert (await revoke(idp, rp, "unknown")).status_code == 200
    assert (await introspect(idp, rp, tokens["access_token"]))["active"] is True
    # An access token is revoked alone.
    assert (await revoke(idp, rp, tokens["access_token"])).status_code == 200
    assert (await introspect(idp, rp, tokens["access_token"]))["active"] is False
    assert (await _userinfo(idp, tokens["access_token"])).status_code == 401
    renewed = await refresh(idp, rp, tokens["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    # A refresh token revokes its grant.
    assert (await revoke(idp, rp, renewed.json()["refresh_token"])).status_code == 200
    _error(await refresh(idp, rp, renewed.json()["refresh_token"]), "invalid_grant")
    assert (await introspect(idp, rp, renewed.json()["access_token"]))["active"] is False


# -- CIBA -----------------------------------------------------------------------------------------


class _Poller:
    def __init__(self, answer: ApprovedLogin | OAuthError) -> None:
        self.answer = answer

    async def poll(self, client: Any, auth_req_id: str) -> ApprovedLogin:
        if isinstance(self.answer, OAuthError):
            raise self.answer
        return self.answer


async def test_an_approved_ciba_request_becomes_a_grant_and_tokens(idp: IdpHarness):
    rp = await new_rp(
        idp,
        grant_types=["urn:openid:params:grant-type:ciba", "refresh_token"],
        redirect_uris=[],
        backchannel_token_delivery_mode="poll",
    )
    client = await idp.services.clients.get(rp.client_id)
    login = ApprovedLogin(
        user_number=USER_NUMBER,
        certificate_serial="0a1b2c",
        scope="openid",
        claims=None,
        authorization_details=None,
        acr=ACR,
        amr=AMR,
        auth_time=datetime.now(UTC).replace(microsecond=0),
    )
    body = await idp.services.tokens.ciba(
        client, auth_req_id="req-1", poller=_Poller(login), dpop=DpopInput(None)
    )
    _, claims = await verified(idp, body["id_token"], typ="JWT")
    assert claims["sub"] == idp.services.subjects.subject(client.sector_identifier, USER_NUMBER)
    assert body["refresh_token"] and "nonce" not in claims
    with pytest.raises(OAuthError) as refused:
        await idp.services.tokens.ciba(
            client,
            auth_req_id="req-2",
            poller=_Poller(OAuthError("authorization_pending", "wait")),
            dpop=DpopInput(None),
        )
    assert refused.value.error == "authorization_pending"
    unknown = await idp.client.post(
        "/token", data=token_form(rp, "urn:openid:params:grant-type:ciba", auth_req_id="nope")
    )
    _error(unknown, "invalid_grant")


# -- concurrency on PostgreSQL --------------------------------------------------------------------


async def test_concurrent_replays_on_postgresql_let_one_exchange_win(make_idp):  # type: ignore[no-untyped-def]
    async with scratch_database("tsunagu_idp") as url, make_idp(url) as idp:
        rp = await new_rp(idp)
        pkce = Pkce()
        code = await issue_code(idp, rp, pkce)
        answers = await asyncio.gather(*(exchange(idp, rp, code, pkce) for _ in range(6)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 400, 400, 400, 400, 400], [a.text for a in answers]
        assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code == 400)
        winner = next(a.json() for a in answers if a.status_code == 200)
        # The replays revoked what the winner got.
        assert (await introspect(idp, rp, winner["access_token"]))["active"] is False
        assert [g["revoked_reason"] for g in await idp.rows("grant")] == ["code-replay"]

        rp2, tokens = await _code_tokens(idp)
        answers = await asyncio.gather(*(refresh(idp, rp2, tokens["refresh_token"]) for _ in range(6)))
        assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400, 400]
        winner = next(a.json() for a in answers if a.status_code == 200)
        _error(await refresh(idp, rp2, winner["refresh_token"]), "invalid_grant")


# -- claims -----------------------------------------------------------------------------------------


class _AllowAll:
    async def allowed(self, user_number: str, client_id: str, items: list[str], at: datetime) -> set[str]:
        return set(items)


async def test_consented_claims_reach_the_id_token_and_userinfo_with_updated_at(idp: IdpHarness, citizen):  # type: ignore[no-untyped-def]
    rp = await new_rp(idp)
    # Without consent (no consent service) nothing beyond sub leaves.
    _, withheld = await _code_tokens(idp, rp, scope="openid profile", user_number=citizen.user_number)
    assert set((await _userinfo(idp, withheld["access_token"])).json()) == {"sub"}

    idp.services.claims.consent = _AllowAll()
    changed = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    async with idp.app.state.runtime.db.transaction() as session:
        await idp.services.resident_updates.record(session, citizen.user_number, changed)
    claims_parameter = {"id_token": {"name": None}, "userinfo": {"verified_claims": None}}
    _, tokens = await _code_tokens(
        idp, rp, scope="openid profile", user_number=citizen.user_number, claims=claims_parameter
    )
    _, id_token = await verified(idp, tokens["id_token"], typ="JWT")
    assert id_token["name"] == "数字 太郎" and id_token["updated_at"] == int(changed.timestamp())
    assert "birthdate" not in id_token  # scope claims go to userinfo; the ID token has what was asked
    userinfo = (await _userinfo(idp, tokens["access_token"])).json()
    assert userinfo["name"] == "数字 太郎" and userinfo["birthdate"] == "1985-06-15"
    assert userinfo["gender"] == "male" and userinfo["updated_at"] == int(changed.timestamp())
    assert userinfo["verified_claims"]["verification"]["trust_framework"] == "jp_my_number_card"
    assert "address" not in userinfo and "user_number" not in userinfo
