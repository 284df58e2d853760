"""Discovery and JWKS on the real stack, and TokenSigner's key cache across a rotation (fakes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tests.idp.conftest import ISSUER, IdpHarness
from tsunagu.clients.internal import UpstreamError
from tsunagu.clients.jwt_signing import InvalidJwt, NoSigningKey, TokenSigner

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


async def test_discovery_document_states_what_the_idp_does(idp: IdpHarness):
    response = await idp.client.get("/.well-known/openid-configuration")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"].startswith("public, max-age=")
    document = response.json()
    assert document["issuer"] == ISSUER
    # Every advertised endpoint is served by this app (405 for a POST-only route is fine).
    for name, value in document.items():
        if name.endswith("_endpoint") or name == "jwks_uri":
            assert value.startswith(ISSUER + "/"), name
            answer = await idp.client.get(value.removeprefix(ISSUER))
            assert answer.status_code != 404, f"{name} {value} is not served"
    expected = {
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "require_pushed_authorization_requests": False,
        "request_parameter_supported": True,
        "request_uri_parameter_supported": False,
        "claims_parameter_supported": True,
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "backchannel_token_delivery_modes_supported": ["poll", "ping"],
        "ui_locales_supported": ["ja", "en"],
        "authorization_details_types_supported": ["tsunagu_data_access"],
        "verified_claims_supported": True,
        "acr_values_supported": ["urn:tsunagu:acr:jpki-proofed"],
    }
    for name, value in expected.items():
        assert document[name] == value, name
    assert set(document["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:openid:params:grant-type:ciba",
    }
    assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
    assert "ES256" in document["token_endpoint_auth_signing_alg_values_supported"]
    assert "none" not in document["dpop_signing_alg_values_supported"]
    assert {"sub", "name", "address", "birthdate", "gender", "verified_claims"} <= set(
        document["claims_supported"]
    )
    assert document["trust_frameworks_supported"] and document["evidence_supported"]


async def test_jwks_publishes_the_es256_and_rs256_keys_and_nothing_private(idp: IdpHarness):
    response = await idp.client.get("/jwks")
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("public, max-age=")
    keys = response.json()["keys"]
    assert {k["alg"] for k in keys} >= {"ES256", "RS256"}
    assert all(k["use"] == "sig" and k["kid"] and not PRIVATE_MEMBERS & set(k) for k in keys)
    token = await idp.services.token_signer.sign_jwt({"iss": ISSUER, "x": 1}, typ="JWT", alg="RS256")
    decoded = jwt.decode(token, KeySet.import_key_set(response.json()), algorithms=["RS256"])
    assert decoded.claims["x"] == 1 and decoded.header["kid"] in {k["kid"] for k in keys}


# -- TokenSigner with a fake signer ------------------------------------------------------------


class FakeSigner:
    """The two signer calls TokenSigner makes: the key registry, and batch signing by key id."""

    def __init__(self) -> None:
        self.keys_list: list[dict[str, Any]] = []
        self.private: dict[str, ECKey] = {}
        self.registry_reads = 0

    def add(self, state: str, activated_at: str | None = None) -> str:
        key = ECKey.generate_key("P-256", private=True)
        kid = key.thumbprint()
        self.private[kid] = key
        self.keys_list.append(
            {
                "kid": kid,
                "algorithm": "ES256",
                "state": state,
                "activated_at": activated_at,
                "jwk": {**key.as_dict(private=False), "kid": kid, "alg": "ES256", "use": "sig"},
            }
        )
        return kid

    def set_state(self, kid: str, state: str) -> None:
        next(k for k in self.keys_list if k["kid"] == kid)["state"] = state

    async def keys(self, purpose: str | None = None) -> list[dict[str, Any]]:
        self.registry_reads += 1
        return [dict(k) for k in self.keys_list]

    async def sign_batch(self, items: list[bytes], *, key_id: str | None = None, **_: Any) -> list[bytes]:
        key = next((k for k in self.keys_list if k["kid"] == key_id), None)
        if key is None or key["state"] != "active":
            raise UpstreamError("signer", 409, {"type": "urn:tsunagu:problem:key-not-active"})
        private = self.private[key_id].private_key
        signatures = []
        for item in items:
            r, s = decode_dss_signature(private.sign(item, ec.ECDSA(hashes.SHA256())))
            signatures.append(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return signatures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_token_signer_follows_a_rotation_and_publishes_the_next_key():
    fake, clock = FakeSigner(), Clock()
    old = fake.add("active", "2026-11-01")
    upcoming = fake.add("next")
    signer = TokenSigner(fake, cache_s=60, refresh_min_interval_s=5, clock=clock)  # type: ignore[arg-type]
    assert {k["kid"] for k in (await signer.jwks())["keys"]} == {old, upcoming}  # next published first
    first = await signer.sign_jwt({"n": 1}, typ="JWT")
    assert (await signer.verify_jwt(first, typ="JWT"))["n"] == 1
    with pytest.raises(InvalidJwt):
        await signer.verify_jwt(first, typ="at+jwt")

    # The operator activates the next key: the signer refuses the old one, TokenSigner re-reads.
    fake.set_state(upcoming, "active")
    fake.set_state(old, "retired")
    second = await signer.sign_jwt({"n": 2}, typ="JWT")
    header = jwt.decode(second, fake.private[upcoming]).header
    assert header["kid"] == upcoming
    assert (await signer.verify_jwt(first))["n"] == 1  # retired keys keep verifying

    # A kid we have not seen makes the cache refresh (at most every refresh_min_interval_s).
    reads = fake.registry_reads
    newest = fake.add("next")
    token = jwt.encode({"alg": "ES256", "kid": newest, "typ": "JWT"}, {"n": 3}, fake.private[newest])
    clock.now += 1
    with pytest.raises(InvalidJwt):
        await signer.verify_jwt(token)  # refreshed too recently
    clock.now += 5
    assert (await signer.verify_jwt(token))["n"] == 3
    assert fake.registry_reads == reads + 1
    with pytest.raises(NoSigningKey):
        await signer.sign_jwt({}, typ="JWT", alg="RS256")


async def test_concurrent_first_calls_read_the_registry_once():
    fake = FakeSigner()
    fake.add("active", "2026-11-01")
    signer = TokenSigner(fake)  # type: ignore[arg-type]
    tokens = await asyncio.gather(*(signer.sign_jwt({"n": n}, typ="JWT") for n in range(10)))
    assert fake.registry_reads == 1
    assert [(await signer.verify_jwt(t))["n"] for t in tokens] == list(range(10))
