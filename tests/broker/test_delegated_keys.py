"""The broker signs with an in-memory key its HSM key delegated: the JWKS carries the delegation,
a receiver trusting only the HSM keys can check it, and a key with a forged or mismatched
delegation is not trusted."""

from __future__ import annotations

import json
import time

from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet

from tests.broker.conftest import BrokerHarness
from tsunagu.devstack.sample_provider import DELEGATION_TYP, trusted_keys


async def test_jwks_publishes_delegated_keys_chained_to_the_hsm_key(broker: BrokerHarness):
    jwks = (await broker.broker.get("/v1/jwks")).json()
    hsm = [k for k in jwks["keys"] if "tsunagu_delegation" not in k]
    delegated = [k for k in jwks["keys"] if "tsunagu_delegation" in k]
    assert hsm and all(k["kty"] == "EC" and "d" not in k for k in jwks["keys"])
    assert delegated  # published before it signs anything
    for key in delegated:
        verified = jws.deserialize_compact(key["tsunagu_delegation"], KeySet.import_key_set({"keys": hsm}))
        claims = json.loads(verified.payload)
        assert verified.headers()["typ"] == DELEGATION_TYP and claims["sub"] == key["kid"]
        assert claims["exp"] - claims["iat"] <= 3600 and claims["exp"] > time.time()
        assert claims["iss"] == broker.broker_url
    trusted = trusted_keys(jwks, broker.broker_url)
    assert {k.kid for k in trusted.keys} == {k["kid"] for k in jwks["keys"]}


def test_a_forged_or_mismatched_delegation_is_not_trusted():
    hsm = ECKey.generate_key("P-256", parameters={"alg": "ES256", "kid": "hsm-1"}, private=True)
    stranger = ECKey.generate_key("P-256", parameters={"alg": "ES256", "kid": "x"}, private=True)
    now = int(time.time())

    def delegated(kid: str, signer: ECKey, **overrides: object) -> dict:  # type: ignore[type-arg]
        key = ECKey.generate_key("P-256", private=True)
        public = {**key.as_dict(private=False), "kid": kid, "alg": "ES256", "use": "sig"}
        claims = {"iss": "https://api.example.jp", "sub": kid, "jwk": public, "iat": now, "exp": now + 600}
        claims.update(overrides)
        header = {"alg": "ES256", "kid": signer.kid, "typ": DELEGATION_TYP}
        return {**public, "tsunagu_delegation": jwt.encode(header, claims, signer)}

    jwks = {
        "keys": [
            hsm.as_dict(private=False),
            delegated("d-good", hsm),
            delegated("d-forged", stranger),  # not signed by the HSM key
            delegated("d-expired", hsm, exp=now - 1),
            delegated("d-other-kid", hsm, sub="d-someone-else"),
            delegated("d-other-issuer", hsm, iss="https://evil.example"),
        ]
    }
    assert {k.kid for k in trusted_keys(jwks, "https://api.example.jp").keys} == {"hsm-1", "d-good"}
