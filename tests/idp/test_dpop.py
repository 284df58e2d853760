"""RFC 9449 DPoP: proof checks (unit), and sender-constrained tokens on the real stack (token
endpoint, refresh tokens of public clients, userinfo)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from tests.idp.conftest import ISSUER, IdpHarness
from tests.idp.rp import Pkce
from tests.idp.token_support import (
    dpop_key,
    dpop_proof,
    exchange,
    introspect,
    issue_code,
    new_rp,
    refresh,
    token_form,
    verified,
)
from tsunagu.idp.domain.dpop import DpopVerifier, normalised_htu, thumbprint
from tsunagu.idp.domain.errors import OAuthError

TOKEN = ISSUER + "/token"
USERINFO = ISSUER + "/userinfo"


# -- the proof itself -----------------------------------------------------------------------------


def _refused(proof: str, method: str = "POST", url: str = TOKEN, **kwargs: Any) -> str:
    with pytest.raises(OAuthError) as refused:
        DpopVerifier().check(proof, method=method, url=url, **kwargs)
    assert refused.value.error == "invalid_dpop_proof"
    return refused.value.description


@pytest.mark.parametrize(
    "key", [ECKey.generate_key("P-256", private=True), RSAKey.generate_key(2048, private=True)]
)
def test_a_good_proof_gives_the_rfc7638_thumbprint(key: Any):
    alg = "ES256" if isinstance(key, ECKey) else "PS256"
    proof = dpop_proof(key, "POST", TOKEN + "?ignored=1#frag", alg=alg)
    checked = DpopVerifier().check(proof, method="POST", url=TOKEN)
    assert checked.jkt == key.thumbprint() == thumbprint(key.as_dict(private=False))


def test_an_ed25519_proof_is_accepted():
    key = OKPKey.generate_key("Ed25519", private=True)
    assert DpopVerifier().check(dpop_proof(key, "GET", USERINFO, alg="EdDSA"), method="GET", url=USERINFO)


def test_proofs_that_are_refused():
    key = dpop_key()
    other = dpop_key()
    assert "typ" in _refused(dpop_proof(key, "POST", TOKEN, typ="JWT"))
    assert "jwk" in _refused(dpop_proof(key, "POST", TOKEN, jwk=key.as_dict(private=True)))
    assert "signature" in _refused(dpop_proof(key, "POST", TOKEN, jwk=other.as_dict(private=False)))
    assert "htm" in _refused(dpop_proof(key, "GET", TOKEN))
    assert "htu" in _refused(dpop_proof(key, "POST", ISSUER + "/other"))
    assert "htu" in _refused(dpop_proof(key, "POST", "https://idp.test/token"))  # another scheme
    assert "fresh" in _refused(dpop_proof(key, "POST", TOKEN, iat=time.time() - 301))
    assert "fresh" in _refused(dpop_proof(key, "POST", TOKEN, iat=time.time() + 120))
    assert "jti" in _refused(dpop_proof(key, "POST", TOKEN, jti="short"))
    assert "compact" in _refused("not-a-jws")
    assert "compact" in _refused("")
    # A MAC is not a proof of possession of an asymmetric key.
    secret = OctKey.generate_key(256)
    assert "asymmetric" in _refused(dpop_proof(secret, "POST", TOKEN, alg="HS256", jwk={"kty": "oct"}))
    # ath binds the proof to the access token presented with it.
    with_ath = dpop_proof(key, "GET", USERINFO, access_token="token-a")
    assert DpopVerifier().check(with_ath, method="GET", url=USERINFO, access_token="token-a")
    assert "ath" in _refused(with_ath, "GET", USERINFO, access_token="token-b")
    assert "ath" in _refused(dpop_proof(key, "GET", USERINFO), "GET", USERINFO, access_token="token-a")


def test_htu_normalisation():
    assert normalised_htu("HTTPS://IdP.Example:443/token?x=1#y") == "https://idp.example/token"
    assert normalised_htu("http://127.0.0.1:8103/token") == "http://127.0.0.1:8103/token"
    assert normalised_htu("http://[::1]:80/t") == "http://[::1]/t"


# -- tokens bound to the key ----------------------------------------------------------------------


async def test_client_credentials_with_dpop_binds_the_token_and_a_proof_is_single_use(idp: IdpHarness):
    service = await new_rp(idp, grant_types=["client_credentials"], redirect_uris=[], scope="tsunagu.read")
    key = dpop_key()
    proof = dpop_proof(key, "POST", TOKEN)
    response = await idp.client.post(
        "/token", data=token_form(service, "client_credentials"), headers={"DPoP": proof}
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    _, claims = await verified(idp, response.json()["access_token"], typ="at+jwt")
    assert claims["cnf"] == {"jkt": key.thumbprint()}
    assert (await introspect(idp, service, response.json()["access_token"]))["token_type"] == "DPoP"

    replay = await idp.client.post(
        "/token", data=token_form(service, "client_credentials"), headers={"DPoP": proof}
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_dpop_proof"
    bad = await idp.client.post(
        "/token",
        data=token_form(service, "client_credentials"),
        headers={"DPoP": dpop_proof(key, "POST", ISSUER + "/par")},
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_dpop_proof"


async def test_a_dpop_bound_client_must_send_a_proof(idp: IdpHarness):
    rp = await new_rp(idp, dpop_bound_access_tokens=True)
    pkce = Pkce()
    code = await issue_code(idp, rp, pkce)
    missing = await exchange(idp, rp, code, pkce)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_dpop_proof"
    bound = await exchange(idp, rp, code, pkce, dpop=dpop_proof(dpop_key(), "POST", TOKEN))
    assert bound.status_code == 200 and bound.json()["token_type"] == "DPoP"  # the code was not spent


async def test_a_code_requested_with_dpop_jkt_needs_that_key(idp: IdpHarness):
    rp = await new_rp(idp)
    key, other = dpop_key(), dpop_key()
    pkce = Pkce()
    code = await issue_code(idp, rp, pkce, dpop_jkt=key.thumbprint())
    wrong = await exchange(idp, rp, code, pkce, dpop=dpop_proof(other, "POST", TOKEN))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_dpop_proof"
    assert (await exchange(idp, rp, code, pkce)).json()["error"] == "invalid_dpop_proof"
    right = await exchange(idp, rp, code, pkce, dpop=dpop_proof(key, "POST", TOKEN))
    assert right.status_code == 200, right.text


async def test_a_public_clients_refresh_tokens_are_bound_to_its_key(idp: IdpHarness):
    rp = await new_rp(idp, token_endpoint_auth_method="none", jwks=None)
    key, other = dpop_key(), dpop_key()
    pkce = Pkce()
    code = await issue_code(idp, rp, pkce)
    first = await exchange(idp, rp, code, pkce, dpop=dpop_proof(key, "POST", TOKEN))
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    for proof in (None, dpop_proof(other, "POST", TOKEN)):
        refused = await refresh(idp, rp, refresh_token, dpop=proof)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    renewed = await refresh(idp, rp, refresh_token, dpop=dpop_proof(key, "POST", TOKEN))
    assert renewed.status_code == 200, renewed.text
    _, claims = await verified(idp, renewed.json()["access_token"], typ="at+jwt")
    assert claims["cnf"] == {"jkt": key.thumbprint()}


async def test_userinfo_with_a_dpop_bound_token(idp: IdpHarness):
    rp = await new_rp(idp)
    key, other = dpop_key(), dpop_key()
    pkce = Pkce()
    tokens = (
        await exchange(idp, rp, await issue_code(idp, rp, pkce), pkce, dpop=dpop_proof(key, "POST", TOKEN))
    ).json()
    access_token = tokens["access_token"]

    async def userinfo(scheme: str, proof: str | None, method: str = "GET") -> Any:
        headers = {"Authorization": f"{scheme} {access_token}"}
        if proof is not None:
            headers["DPoP"] = proof
        return await idp.client.request(method, "/userinfo", headers=headers)

    good = dpop_proof(key, "GET", USERINFO, access_token=access_token)
    answer = await userinfo("DPoP", good)
    assert answer.status_code == 200, answer.text
    replayed = await userinfo("DPoP", good)
    assert (
        replayed.status_code == 401 and 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]
    )
    as_bearer = await userinfo("Bearer", None)
    assert as_bearer.status_code == 401 and as_bearer.headers["www-authenticate"].startswith("Bearer")
    missing = await userinfo("DPoP", None)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("DPoP")
    other_key = await userinfo("DPoP", dpop_proof(other, "GET", USERINFO, access_token=access_token))
    assert other_key.status_code == 401 and 'error="invalid_token"' in other_key.headers["www-authenticate"]
    no_ath = await userinfo("DPoP", dpop_proof(key, "GET", USERINFO))
    assert no_ath.status_code == 401 and 'error="invalid_dpop_proof"' in no_ath.headers["www-authenticate"]
    wrong_method = await userinfo("DPoP", dpop_proof(key, "POST", USERINFO, access_token=access_token))
    assert wrong_method.status_code == 401
    posted = await userinfo("DPoP", dpop_proof(key, "POST", USERINFO, access_token=access_token), "POST")
    assert posted.status_code == 200, posted.text
    # An unbound token is not accepted under the DPoP scheme.
    plain = (await exchange(idp, rp, await issue_code(idp, rp, (p := Pkce())), p)).json()["access_token"]
    unbound = await idp.client.get(
        "/userinfo",
        headers={
            "Authorization": f"DPoP {plain}",
            "DPoP": dpop_proof(key, "GET", USERINFO, access_token=plain),
        },
    )
    assert unbound.status_code == 401
