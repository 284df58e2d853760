"""Client authentication (``idp.services.client_auth``) on the real stack: private_key_jwt,
client_secret_basic / _post and none, called in-process as the token endpoint will."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote_plus

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from tests.idp.conftest import ISSUER
from tests.idp.test_clients import make_tenant, public_jwks, rp
from tsunagu.devstack.postgres import scratch_database
from tsunagu.idp.domain.errors import OAuthError

TOKEN_URL = f"{ISSUER}/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REGISTRY = jws.JWSRegistry(algorithms=["ES256", "RS256", "PS256", "EdDSA", "HS256"])


def assertion(key: Any, client_id: str, *, alg: str = "ES256", kid: str | None = "k1", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "exp": now + 60,
        "iat": now,
        "jti": secrets.token_urlsafe(16),
        **claims,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    header = {"alg": alg, **({"kid": kid} if kid else {})}
    return jws.serialize_compact(header, json.dumps(payload), key, registry=REGISTRY)


def jwt_form(token: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token,
        **extra,
    }


def basic(client_id: str, secret: str) -> str:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()


async def admin_client(idp, metadata: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await idp.client.post("/admin/v1/tenants/ebetsu/clients", json=metadata, auth=idp.auth())
    assert response.status_code == 201, response.text
    return dict(response.json())


async def refused(
    idp, form: dict[str, str], authorization: str | None = None, *, endpoint: str = TOKEN_URL
) -> OAuthError:  # type: ignore[no-untyped-def]
    with pytest.raises(OAuthError) as error:
        await idp.services.client_auth.authenticate(form, authorization, endpoint_url=endpoint)
    assert error.value.error == "invalid_client" and error.value.status == 401
    return error.value


async def authenticate(
    idp, form: dict[str, str], authorization: str | None = None, *, endpoint: str = TOKEN_URL
) -> str:  # type: ignore[no-untyped-def]
    client = await idp.services.client_auth.authenticate(form, authorization, endpoint_url=endpoint)
    return str(client.client_id)


@pytest.fixture
async def jwt_client(idp):  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    key = ECKey.generate_key("P-256")
    registered = await admin_client(
        idp, rp(jwks=public_jwks(key), grant_types=["authorization_code", "client_credentials"])
    )
    return key, registered["client_id"]


async def test_private_key_jwt_accepts_a_good_assertion_once(idp, jwt_client) -> None:  # type: ignore[no-untyped-def]
    key, client_id = jwt_client
    token = assertion(key, client_id)
    assert await authenticate(idp, jwt_form(token)) == client_id
    [seen] = await idp.rows("seen_jti")
    assert seen["scope"] == "client" and seen["issuer"] == client_id

    replay = await refused(idp, jwt_form(token))
    assert "already used" in replay.description
    # aud may be the endpoint URL (alone or in a list); client_id in the form must agree
    assert (
        await authenticate(idp, jwt_form(assertion(key, client_id, aud=[TOKEN_URL]), client_id=client_id))
        == client_id
    )
    par = f"{ISSUER}/par"
    assert await authenticate(idp, jwt_form(assertion(key, client_id, aud=par)), endpoint=par) == client_id
    # no kid: every key of the right type is tried
    assert await authenticate(idp, jwt_form(assertion(key, client_id, kid=None))) == client_id


async def test_private_key_jwt_refusals(idp, jwt_client) -> None:  # type: ignore[no-untyped-def]
    key, client_id = jwt_client
    other = ECKey.generate_key("P-256")
    now = int(time.time())
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
    body = (
        base64.urlsafe_b64encode(
            json.dumps(
                {"iss": client_id, "sub": client_id, "aud": ISSUER, "exp": now + 60, "jti": "x"}
            ).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    hs = jws.serialize_compact(
        {"alg": "HS256"},
        json.dumps({"iss": client_id, "sub": client_id}),
        OctKey.import_key(b"0" * 32),
        registry=REGISTRY,
    )
    cases: dict[str, dict[str, str]] = {
        "bad signature": jwt_form(assertion(other, client_id)),
        "unknown kid": jwt_form(assertion(key, client_id, kid="k2")),
        "wrong aud": jwt_form(assertion(key, client_id, aud="https://elsewhere.example/token")),
        "aud of another endpoint": jwt_form(assertion(key, client_id, aud=f"{ISSUER}/par")),
        "expired": jwt_form(assertion(key, client_id, exp=now - 120)),
        "exp too far ahead": jwt_form(assertion(key, client_id, exp=now + 3600)),
        "no exp": jwt_form(assertion(key, client_id, exp=None)),
        "iat in the future": jwt_form(assertion(key, client_id, iat=now + 600)),
        "no jti": jwt_form(assertion(key, client_id, jti=None)),
        "iss is not sub": jwt_form(assertion(key, client_id, iss="someone")),
        "alg none": jwt_form(f"{header}.{body}."),
        "alg HS256": jwt_form(hs),
        "wrong assertion type": {**jwt_form(assertion(key, client_id)), "client_assertion_type": "jwt"},
        "no assertion": {"client_assertion_type": ASSERTION_TYPE},
        "garbage": jwt_form("a.b.c"),
        "form client_id differs": jwt_form(assertion(key, client_id), client_id="another"),
        "assertion and secret": {**jwt_form(assertion(key, client_id)), "client_secret": "x"},
        "wrong method (secret_post)": {"client_id": client_id, "client_secret": "anything"},
        "wrong method (none)": {"client_id": client_id},
        "unknown client": jwt_form(assertion(key, "no-such-client")),
    }
    for name, form in cases.items():
        with pytest.raises(OAuthError) as error:
            await idp.services.client_auth.authenticate(form, None, endpoint_url=TOKEN_URL)
        assert error.value.error == "invalid_client" and error.value.status == 401, name
        assert "WWW-Authenticate" not in error.value.headers, name
    assert await idp.rows("seen_jti") == []  # nothing refused consumed a jti
    wrong_basic = await refused(idp, jwt_form(assertion(key, client_id)), basic(client_id, "x"))
    assert wrong_basic.headers["WWW-Authenticate"].startswith("Basic")


async def test_other_algorithms_and_a_pinned_signing_alg(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    rsa, ed = RSAKey.generate_key(2048), OKPKey.generate_key("Ed25519")
    keys = {"keys": [{**rsa.as_dict(private=False), "kid": "r"}, {**ed.as_dict(private=False), "kid": "e"}]}
    client_id = (await admin_client(idp, rp(jwks=keys)))["client_id"]
    for key, alg, kid in [(rsa, "RS256", "r"), (rsa, "PS256", "r"), (ed, "EdDSA", "e")]:
        assert await authenticate(idp, jwt_form(assertion(key, client_id, alg=alg, kid=kid))) == client_id
    pinned = (await admin_client(idp, rp(jwks=keys, token_endpoint_auth_signing_alg="PS256")))["client_id"]
    assert await authenticate(idp, jwt_form(assertion(rsa, pinned, alg="PS256", kid="r"))) == pinned
    await refused(idp, jwt_form(assertion(rsa, pinned, alg="RS256", kid="r")))
    # an RSA key named by kid cannot verify an ES256 header
    await refused(idp, jwt_form(assertion(ECKey.generate_key("P-256"), client_id, kid="r")))


async def test_disabled_clients_fail_authentication(idp, jwt_client) -> None:  # type: ignore[no-untyped-def]
    key, client_id = jwt_client
    assert await authenticate(idp, jwt_form(assertion(key, client_id))) == client_id  # cached now
    secret_client = await admin_client(idp, rp(jwks=None, token_endpoint_auth_method="client_secret_basic"))
    for cid in (client_id, secret_client["client_id"]):
        assert (await idp.client.delete(f"/admin/v1/clients/{cid}", auth=idp.auth())).status_code == 204
    await refused(idp, jwt_form(assertion(key, client_id)))
    await refused(idp, {}, basic(secret_client["client_id"], secret_client["client_secret"]))


async def test_client_secret_basic_and_post(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    basic_client = await admin_client(idp, rp(jwks=None, token_endpoint_auth_method="client_secret_basic"))
    post_client = await admin_client(idp, rp(jwks=None, token_endpoint_auth_method="client_secret_post"))
    cid, secret = basic_client["client_id"], basic_client["client_secret"]

    assert await authenticate(idp, {"grant_type": "authorization_code"}, basic(cid, secret)) == cid
    assert await authenticate(idp, {"client_id": cid}, basic(cid, secret)) == cid
    wrong = await refused(idp, {}, basic(cid, secret[:-1] + ("A" if secret[-1] != "A" else "B")))
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="tsunagu"'
    await refused(idp, {}, basic(cid, ""))
    await refused(idp, {}, "Basic !!!not-base64")
    await refused(idp, {}, "Basic " + base64.b64encode(b"no-colon").decode())
    await refused(idp, {"client_id": "other"}, basic(cid, secret))
    await refused(idp, {"client_id": cid, "client_secret": secret})  # registered for Basic
    await refused(idp, {"client_secret": secret}, basic(cid, secret))  # two methods
    await refused(idp, {}, f"Bearer {secret}")

    pid, psecret = post_client["client_id"], post_client["client_secret"]
    assert await authenticate(idp, {"client_id": pid, "client_secret": psecret}) == pid
    await refused(idp, {"client_id": pid, "client_secret": "wrong"})
    await refused(idp, {"client_secret": psecret})
    await refused(idp, {}, basic(pid, psecret))  # registered for post

    # a rotated secret works at once, the old one no longer
    rotated = await idp.client.post(f"/admin/v1/clients/{cid}/secret", auth=idp.auth())
    new_secret = rotated.json()["client_secret"]
    assert await authenticate(idp, {}, basic(cid, new_secret)) == cid
    await refused(idp, {}, basic(cid, secret))


async def test_basic_credentials_are_form_urlencoded(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    client = await admin_client(idp, rp(jwks=None, token_endpoint_auth_method="client_secret_basic"))
    cid, secret = client["client_id"], client["client_secret"]
    raw = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()  # nothing to escape
    assert await authenticate(idp, {}, raw) == cid
    encoded = "Basic " + base64.b64encode(f"{cid}:{quote_plus(secret, safe='')}".encode()).decode()
    assert await authenticate(idp, {}, encoded) == cid


async def test_public_clients_send_only_their_client_id(idp) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    public = await admin_client(
        idp, rp(jwks=None, token_endpoint_auth_method="none", redirect_uris=["http://127.0.0.1:8400/cb"])
    )
    pid = public["client_id"]
    assert await authenticate(idp, {"client_id": pid, "code": "x"}) == pid
    await refused(idp, {"client_id": pid, "client_secret": "x"})
    await refused(idp, {})
    await refused(idp, {"client_id": "unknown"})


class _JwksServer:
    """A loopback HTTP server answering the current JWK set (jwks_uri in test)."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    with _JwksServer() as server:
        yield server


async def test_jwks_uri_is_fetched_cached_and_refetched_for_an_unknown_kid(idp, jwks_server) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(idp)
    first, second = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    jwks_server.document = public_jwks(first, "k1")
    client_id = (await admin_client(idp, rp(jwks=None, jwks_uri=jwks_server.url)))["client_id"]
    assert jwks_server.hits == 0  # not fetched at registration
    assert await authenticate(idp, jwt_form(assertion(first, client_id))) == client_id
    assert await authenticate(idp, jwt_form(assertion(first, client_id))) == client_id
    assert jwks_server.hits == 1  # cached

    jwks_server.document = public_jwks(second, "k2")  # the client rotated its key
    assert await authenticate(idp, jwt_form(assertion(second, client_id, kid="k2"))) == client_id
    assert jwks_server.hits == 2
    # a refetch does not come again at once for another unknown kid
    await refused(idp, jwt_form(assertion(second, client_id, kid="k3")))
    assert jwks_server.hits == 2

    client = await idp.services.clients.get(client_id)
    assert (await idp.services.clients.jwks(client))["keys"][0]["kid"] == "k2"

    jwks_server.document = {"keys": [second.as_dict(private=True)]}  # a private key is never used
    fresh = await admin_client(idp, rp(jwks=None, jwks_uri=jwks_server.url + "?again"))
    await refused(idp, jwt_form(assertion(second, fresh["client_id"], kid=None)))


async def test_concurrent_uses_of_one_jti_on_postgresql_accept_exactly_one(make_idp) -> None:  # type: ignore[no-untyped-def]
    async with scratch_database("tsunagu_idp") as url, make_idp(url) as idp:
        await make_tenant(idp)
        key = ECKey.generate_key("P-256")
        client_id = (await admin_client(idp, rp(jwks=public_jwks(key))))["client_id"]
        token = assertion(key, client_id)
        authenticator = idp.services.client_auth
        for _ in range(3):  # a few rounds: the race has to be lost every time
            token = assertion(key, client_id)
            results = await asyncio.gather(
                *(
                    authenticator.authenticate(jwt_form(token), None, endpoint_url=TOKEN_URL)
                    for _ in range(4)
                ),
                return_exceptions=True,
            )
            accepted = [r for r in results if not isinstance(r, BaseException)]
            failures = [r for r in results if isinstance(r, BaseException)]
            assert len(accepted) == 1, results
            assert all(isinstance(f, OAuthError) and f.error == "invalid_client" for f in failures), failures
        assert len(await idp.rows("seen_jti")) == 3


async def test_client_credentials_tokens_on_postgresql_are_recorded_under_one_grant(make_idp) -> None:  # type: ignore[no-untyped-def]
    # The hot path writes one autocommitted statement per token on PostgreSQL (store.tokens,
    # store.replay): the token must still be recorded, under the client's one grant, and a
    # replayed assertion refused.
    async with scratch_database("tsunagu_idp") as url, make_idp(url) as idp:
        await make_tenant(idp)
        key = ECKey.generate_key("P-256")
        client_id = (
            await admin_client(
                idp, rp(jwks=public_jwks(key), grant_types=["authorization_code", "client_credentials"])
            )
        )["client_id"]
        tokens = []
        for _ in range(3):
            form = jwt_form(assertion(key, client_id))
            response = await idp.client.post("/token", data=form)
            assert response.status_code == 200, response.text
            tokens.append(response.json()["access_token"])
            replayed = await idp.client.post("/token", data=form)
            assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"
        recorded = await idp.rows("access_token")
        assert len(recorded) == 3 and len({row["grant_id"] for row in recorded}) == 1
        assert len(await idp.rows("seen_jti")) == 3
