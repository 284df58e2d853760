"""The examples' webhook checks on their own: which broker keys are trusted, and which pushes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, KeySet

from examples.kit.broker import BadPush, Broker, KeysUnavailable, trusted_keys
from examples.kit.config import RpConfig

BROKER = "http://broker.test"
CLIENT = "bank-client"


def _key() -> ECKey:
    key = ECKey.generate_key("P-256", parameters={"alg": "ES256", "use": "sig"}, private=True)
    key.ensure_kid()
    return key


def _sign(key: ECKey, claims: dict[str, Any], typ: str) -> str:
    header = {"alg": "ES256", "typ": typ, "kid": key.kid}
    return jws.serialize_compact(header, json.dumps(claims).encode(), key)


def _delegated(hsm: ECKey, key: ECKey, *, exp_in: int = 3600, iss: str = BROKER) -> dict[str, Any]:
    public = key.as_dict(private=False)
    claims = {"iss": iss, "sub": key.kid, "jwk": public, "exp": int(time.time()) + exp_in}
    return {**public, "tsunagu_delegation": _sign(hsm, claims, "tsunagu-key-delegation+jwt")}


def test_only_delegations_an_hsm_key_signed_for_this_broker_and_in_date_are_trusted():
    hsm, good, stale, foreign, self_signed = _key(), _key(), _key(), _key(), _key()
    jwks = {
        "keys": [
            hsm.as_dict(private=False),
            _delegated(hsm, good),
            _delegated(hsm, stale, exp_in=-10),
            _delegated(hsm, foreign, iss="http://another-broker.test"),
            _delegated(self_signed, self_signed),
        ]
    }
    kids = {key.kid for key in trusted_keys(jwks, BROKER).keys}
    assert kids == {hsm.kid, good.kid}


@pytest.fixture
def broker(tmp_path: Path) -> Broker:
    key_file = tmp_path / "bank.jwk.json"
    key_file.write_text(json.dumps(_key().as_dict(private=True)))
    config = RpConfig(
        app="bank",
        title_ja="銀行",
        title_en="Bank",
        issuer="http://idp.test",
        client_id=CLIENT,
        key_file=key_file,
        base_url="http://127.0.0.1:9",
        broker_url=BROKER,
        port=9,
    )
    return Broker(config, "broker:subscribe")


def _push(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": BROKER, "aud": CLIENT, "sub": "s1", "jti": "dl_1", "iat": now, "exp": now + 300}
    return {**claims, "item": "resident.address", "value": {"address": "札幌"}, **changes}


async def test_a_genuine_push_is_kept_once(broker: Broker):
    hsm = _key()
    broker._keys = KeySet.import_key_set({"keys": [hsm.as_dict(private=False)]})
    genuine = _sign(hsm, _push(), "tsunagu-data-push+jwt").encode()
    assert (await broker.verify_push(genuine))["value"] == {"address": "札幌"}
    assert await broker.verify_push(genuine) == {}  # a redelivery: nothing new
    await broker.aclose()


@pytest.mark.parametrize(
    ("changes", "typ"),
    [
        ({"aud": "someone-else"}, "tsunagu-data-push+jwt"),
        ({"iss": "http://another-broker.test"}, "tsunagu-data-push+jwt"),
        ({"exp": int(time.time()) - 1}, "tsunagu-data-push+jwt"),
        ({"jti": ""}, "tsunagu-data-push+jwt"),
        ({}, "tsunagu-data-request+jwt"),  # a data request, not a push
    ],
    ids=["another-audience", "another-issuer", "expired", "no-jti", "wrong-typ"],
)
async def test_a_push_not_meant_for_us_is_refused(broker: Broker, changes: dict[str, Any], typ: str):
    hsm = _key()
    broker._keys = KeySet.import_key_set({"keys": [hsm.as_dict(private=False)]})
    with pytest.raises(BadPush):
        await broker.verify_push(_sign(hsm, _push(**changes), typ).encode())
    await broker.aclose()


async def test_an_unknown_key_makes_it_read_the_keys_again_and_unreachable_keys_are_not_a_refusal(
    broker: Broker,
):
    broker._keys = KeySet.import_key_set({"keys": [_key().as_dict(private=False)]})
    token = _sign(_key(), _push(), "tsunagu-data-push+jwt").encode()
    with pytest.raises(KeysUnavailable):  # the broker is not there: 503, it will retry
        await broker.verify_push(token)
    await broker.aclose()
