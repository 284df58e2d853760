"""Service tokens, trust store, access policy and the FastAPI / httpx glue of ``tsunagu.auth``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from joserfc.jwk import ECKey

from tsunagu.auth import (
    TOKEN_TYPE,
    AccessPolicy,
    CallerNotAllowed,
    InternalAuth,
    InvalidServiceToken,
    ServicePrincipal,
    ServiceTokenAuth,
    ServiceTokenIssuer,
    ServiceTokenVerifier,
    TrustStore,
    key_id,
    load_private_key,
    provision_service_credentials,
    public_jwk,
    require_permission,
)
from tsunagu.errors import DomainError

NOW = 1_700_000_000.0
SERVICES = ["signer", "ca", "idp", "consent", "broker", "jlis-sync", "operator"]


class Clock:
    """A settable clock so expiry tests never depend on wall time."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {name: ec.generate_private_key(ec.SECP256R1()) for name in ("ca", "idp", "signer")}


@pytest.fixture(scope="module")
def trust(keys: dict[str, ec.EllipticCurvePrivateKey]) -> TrustStore:
    return TrustStore.from_dict(
        {"services": {n: {"keys": [public_jwk(k.public_key())]} for n, k in keys.items()}}
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(trust: TrustStore, clock: Clock) -> ServiceTokenVerifier:
    return ServiceTokenVerifier("signer", trust, clock=clock)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(iss: str = "ca", **overrides: Any) -> dict[str, Any]:
    base = {"iss": iss, "sub": iss, "aud": "signer", "iat": int(NOW), "nbf": int(NOW)}
    return {**base, "exp": int(NOW) + 120, "jti": "j1", **overrides}


def forge(key: ec.EllipticCurvePrivateKey, payload: dict[str, Any] | bytes, **header: Any) -> str:
    """Sign arbitrary header and claims (or raw payload bytes) with ES256, no library checks in the way."""
    protected = {"alg": "ES256", "typ": TOKEN_TYPE, "kid": key_id(key.public_key()), **header}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(json.dumps(protected).encode())}.{b64(body)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


# --- tokens -------------------------------------------------------------------------------------


def test_round_trip(keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier) -> None:
    token = ServiceTokenIssuer("ca", keys["ca"], clock=Clock()).token_for("signer")
    assert verifier.verify(token) == ServicePrincipal(name="ca")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "typ": TOKEN_TYPE, "kid": key_id(keys["ca"].public_key())}


def test_issuer_caches_per_audience_until_refresh_margin(keys: dict[str, ec.EllipticCurvePrivateKey]) -> None:
    clock = Clock()
    issuer = ServiceTokenIssuer("ca", keys["ca"], lifetime_s=120, clock=clock)
    first = issuer.token_for("signer")
    assert issuer.token_for("idp") != first
    clock.now += 89  # 31 s left: still reused
    assert issuer.token_for("signer") == first
    clock.now += 1  # 30 s left: renewed
    assert issuer.token_for("signer") != first


def test_token_for_another_audience_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    token = ServiceTokenIssuer("ca", keys["ca"], clock=Clock()).token_for("idp")
    with pytest.raises(InvalidServiceToken, match="not addressed"):
        verifier.verify(token)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(120 + 4, True), (120 + 5, False), (10_000, False), (-5, True), (-6, False)],
)
def test_expiry_and_not_before_with_leeway(
    keys: dict[str, ec.EllipticCurvePrivateKey],
    verifier: ServiceTokenVerifier,
    clock: Clock,
    offset: float,
    accepted: bool,
) -> None:
    token = ServiceTokenIssuer("ca", keys["ca"], clock=Clock()).token_for("signer")
    clock.now = NOW + offset
    if accepted:
        assert verifier.verify(token).name == "ca"
    else:
        with pytest.raises(InvalidServiceToken):
            verifier.verify(token)


def test_issued_in_future_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    token = forge(keys["ca"], claims(iat=int(NOW) + 60, nbf=int(NOW), exp=int(NOW) + 120))
    with pytest.raises(InvalidServiceToken, match="future"):
        verifier.verify(token)


@pytest.mark.parametrize("exp", [int(NOW) + 301, int(NOW), int(NOW) + 10**9])
def test_lifetime_out_of_bounds_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier, exp: int
) -> None:
    with pytest.raises(InvalidServiceToken):
        verifier.verify(forge(keys["ca"], claims(exp=exp)))


def test_forged_claims_accepted_only_when_well_formed(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    # The forge helper itself must produce acceptable tokens, else the rejections below prove nothing.
    assert verifier.verify(forge(keys["ca"], claims())).name == "ca"


@pytest.mark.parametrize(
    "bad",
    [
        {"sub": "idp"},
        {"iss": None},
        {"aud": ["signer"]},
        {"jti": ""},
        {"nbf": True},  # would read as 1970 and pass the nbf check if bools counted as numbers
        {"exp": "9999999999"},
        {"nbf": None},
        {"exp": 10**400},
    ],
)
def test_bad_claims_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier, bad: dict[str, Any]
) -> None:
    with pytest.raises(InvalidServiceToken):
        verifier.verify(forge(keys["ca"], claims(**bad)))


def test_nan_times_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    # NaN compares false with everything: it must not slip past the time checks.
    for value in (float("nan"), float("inf")):
        with pytest.raises(InvalidServiceToken):
            verifier.verify(forge(keys["ca"], claims(exp=value, iat=value, nbf=value)))
    # 1e400 is valid JSON that parses to inf: rejected as such, not by luck of the comparisons.
    raw = json.dumps(claims(nbf=0)).replace('"nbf": 0', '"nbf": -1e400').encode()
    with pytest.raises(InvalidServiceToken, match="out of range"):
        verifier.verify(forge(keys["ca"], raw))


def test_not_yet_valid_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    token = forge(keys["ca"], claims(iat=int(NOW) - 10, nbf=int(NOW) + 60, exp=int(NOW) + 120))
    with pytest.raises(InvalidServiceToken, match="not yet valid"):
        verifier.verify(token)


def test_oversized_but_validly_signed_token_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    token = forge(keys["ca"], claims(pad="x" * 9000))
    with pytest.raises(InvalidServiceToken, match="malformed"):
        verifier.verify(token)


def test_unknown_service_and_unknown_kid_rejected(verifier: ServiceTokenVerifier) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidServiceToken, match="unknown signing key"):
        verifier.verify(ServiceTokenIssuer("mallory", stranger, clock=Clock()).token_for("signer"))
    with pytest.raises(InvalidServiceToken, match="unknown signing key"):
        verifier.verify(forge(stranger, claims()))  # claims to be "ca", signed by an unknown key


def test_trusted_kid_with_someone_elses_signature_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    token = forge(keys["idp"], claims(), kid=key_id(keys["ca"].public_key()))
    with pytest.raises(InvalidServiceToken, match="signature"):
        verifier.verify(token)


def test_key_of_a_claiming_to_be_b_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    with pytest.raises(InvalidServiceToken, match="does not own"):
        verifier.verify(forge(keys["idp"], claims(iss="ca")))


def test_wrong_typ_and_crit_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    with pytest.raises(InvalidServiceToken, match="type"):
        verifier.verify(forge(keys["ca"], claims(), typ="JWT"))
    with pytest.raises(InvalidServiceToken, match="critical"):
        verifier.verify(forge(keys["ca"], claims(), crit=["exp"], exp=1))


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


def test_alg_none_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    header = {"alg": "none", "typ": TOKEN_TYPE, "kid": key_id(keys["ca"].public_key())}
    for signature in ("", "AAAA"):
        with pytest.raises(InvalidServiceToken):
            verifier.verify(f"{_unsigned(header, claims())}.{signature}")


def test_hs256_with_public_key_as_secret_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    public = keys["ca"].public_key()
    header = {"alg": "HS256", "typ": TOKEN_TYPE, "kid": key_id(public)}
    signing_input = _unsigned(header, claims())
    for secret in (
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(public_jwk(public)).encode(),
    ):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidServiceToken, match="algorithm"):
            verifier.verify(f"{signing_input}.{b64(mac)}")


def test_tampered_payload_rejected(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    header, _, signature = forge(keys["ca"], claims()).split(".")
    payload = b64(json.dumps(claims(iss="idp", sub="idp")).encode())
    with pytest.raises(InvalidServiceToken, match="signature"):
        verifier.verify(f"{header}.{payload}.{signature}")


_VALID_HEADER = b64(json.dumps({"alg": "ES256", "typ": TOKEN_TYPE, "kid": "x"}).encode())
NASTY = [
    "",
    " ",
    "a",
    "a.b",
    "a.b.c",
    "a.b.c.d",
    "..",
    "...",
    "a" * 10_240,
    ".".join(["a" * 4000] * 3),
    "日本語.トークン.です",
    "eyJ.eyJ.eyJ",
    "e30.e30.e30",  # {} . {} . {}
    "W10.W10.W10",  # [] . [] . []
    "bnVsbA.bnVsbA.bnVsbA",  # null
    "a===.b.c",
    "a+b/.c.d",
    f"{_VALID_HEADER}.\n.sig",
    f"{_VALID_HEADER}.e30.sig\n",
    f"{_VALID_HEADER}.e30.x",
    f"{_VALID_HEADER}.A.A",
    b64(b"\xff\xfe").join(["", ".", ".x"]),
    b64(b"[" * 100_00)[:8000] + ".e30.x",
    "\x00.\x00.\x00",
]


@pytest.mark.parametrize("token", NASTY, ids=range(len(NASTY)))
def test_garbage_raises_invalid_service_token_only(verifier: ServiceTokenVerifier, token: str) -> None:
    with pytest.raises(InvalidServiceToken) as info:
        verifier.verify(token)
    error = info.value
    assert error.status == 401
    assert error.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    if len(token) > 3:
        assert token not in str(error.to_problem().model_dump())


def test_trust_store_supports_rotation(keys: dict[str, ec.EllipticCurvePrivateKey], clock: Clock) -> None:
    new = ec.generate_private_key(ec.SECP256R1())
    trust = TrustStore.from_dict(
        {"services": {"ca": {"keys": [public_jwk(keys["ca"].public_key()), public_jwk(new.public_key())]}}}
    )
    verifier = ServiceTokenVerifier("signer", trust, clock=clock)
    for key in (keys["ca"], new):
        assert verifier.verify(ServiceTokenIssuer("ca", key, clock=clock).token_for("signer")).name == "ca"


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"services": {"ca": {}}},
        {"services": {"ca": {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}}},
        {"services": {"ca": {"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}}},
        {"services": {"ca": {"keys": [{"kty": "EC", "crv": "P-256", "x": 1, "y": 2}]}}},
    ],
)
def test_trust_store_rejects_bad_config(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="trust store"):
        TrustStore.from_dict(data)


def test_trust_store_rejects_private_keys_and_duplicate_kids() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private_jwk = dict(ECKey.import_key(key).as_dict(private=True))
    with pytest.raises(ValueError, match="public keys only"):
        TrustStore.from_dict({"services": {"ca": {"keys": [private_jwk]}}})
    jwk = public_jwk(key.public_key())
    with pytest.raises(ValueError, match="duplicate kid"):
        TrustStore.from_dict({"services": {"ca": {"keys": [jwk]}, "idp": {"keys": [jwk]}}})


# --- policy -------------------------------------------------------------------------------------


def test_policy_denies_by_default_and_allows_grants() -> None:
    policy = AccessPolicy({"signer:sign": ["ca", "idp"]})
    policy.check(ServicePrincipal("ca"), "signer:sign")
    with pytest.raises(CallerNotAllowed) as info:
        policy.check(ServicePrincipal("consent"), "signer:sign")
    assert info.value.status == 403
    assert info.value.detail == "service 'consent' lacks permission 'signer:sign'"
    with pytest.raises(CallerNotAllowed):
        policy.check(ServicePrincipal("ca"), "signer:unknown")
    with pytest.raises(CallerNotAllowed):
        AccessPolicy({}).check(ServicePrincipal("operator"), "signer:sign")


def test_policy_merge_adds_grants_without_mutating() -> None:
    base = AccessPolicy({"signer:sign": ["ca"]})
    merged = base.merge({"signer:sign": ["idp"], "diagnostics:ping": ["operator"]})
    assert merged.allows("ca", "signer:sign")
    assert merged.allows("idp", "signer:sign")
    assert merged.allows("operator", "diagnostics:ping")
    assert not base.allows("idp", "signer:sign")
    assert base.merge(AccessPolicy({"x": ["y"]})).allows("y", "x")


def test_policy_rejects_a_string_as_caller_list() -> None:
    with pytest.raises(TypeError):
        AccessPolicy({"signer:sign": "ca"})


# --- FastAPI / httpx ----------------------------------------------------------------------------


def make_app(internal_auth: InternalAuth | None) -> FastAPI:
    app = FastAPI()
    if internal_auth is not None:
        app.state.internal_auth = internal_auth

    @app.exception_handler(DomainError)
    async def _problem(_request: Request, exc: DomainError) -> JSONResponse:
        problem = exc.to_problem().model_dump(exclude_none=True)
        return JSONResponse(status_code=exc.status, content=problem, headers=exc.headers)

    @app.post("/internal/sign")
    async def sign(
        request: Request, principal: Annotated[ServicePrincipal, Depends(require_permission("signer:sign"))]
    ) -> dict[str, str]:
        assert request.state.principal is principal
        return {"caller": principal.name}

    return app


@pytest.fixture
def app(verifier: ServiceTokenVerifier) -> FastAPI:
    return make_app(InternalAuth(verifier, AccessPolicy({"signer:sign": ["ca"]})))


async def test_fastapi_allowed_caller_via_async_httpx(
    app: FastAPI, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    auth = ServiceTokenAuth(ServiceTokenIssuer("ca", keys["ca"], clock=Clock()), "signer")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://signer") as client:
        response = await client.post("/internal/sign", auth=auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"caller": "ca"}


async def test_fastapi_rejections(app: FastAPI, keys: dict[str, ec.EllipticCurvePrivateKey]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://signer") as client:
        missing = await client.post("/internal/sign")
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert missing.json()["type"] == "urn:tsunagu:problem:service-token-missing"

        basic = await client.post("/internal/sign", headers={"Authorization": "Basic Y2E6eA=="})
        assert basic.status_code == 401
        assert basic.headers["WWW-Authenticate"] == "Bearer"

        bad = await client.post("/internal/sign", headers={"Authorization": "Bearer not.a.token"})
        assert bad.status_code == 401
        assert bad.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert "not.a.token" not in bad.text

        # The idp authenticates fine but holds no grant for signer:sign.
        idp_auth = ServiceTokenAuth(ServiceTokenIssuer("idp", keys["idp"], clock=Clock()), "signer")
        forbidden = await client.post("/internal/sign", auth=idp_auth)
        assert forbidden.status_code == 403
        assert forbidden.json()["type"] == "urn:tsunagu:problem:caller-not-allowed"


async def test_fastapi_without_internal_auth_denies(keys: dict[str, ec.EllipticCurvePrivateKey]) -> None:
    token = ServiceTokenIssuer("ca", keys["ca"]).token_for("signer")
    transport = httpx.ASGITransport(app=make_app(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://signer") as client:
        response = await client.post("/internal/sign", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_service_token_auth_with_sync_client(
    keys: dict[str, ec.EllipticCurvePrivateKey], verifier: ServiceTokenVerifier
) -> None:
    seen: list[ServicePrincipal] = []

    def handler(request: httpx.Request) -> httpx.Response:
        scheme, _, token = request.headers["Authorization"].partition(" ")
        assert scheme == "Bearer"
        seen.append(verifier.verify(token))
        return httpx.Response(204)

    auth = ServiceTokenAuth(ServiceTokenIssuer("ca", keys["ca"], clock=Clock()), "signer")
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        assert client.get("http://signer/x").status_code == 204
    assert seen == [ServicePrincipal("ca")]


# --- provisioning -------------------------------------------------------------------------------


def test_provisioning_is_idempotent_and_private(tmp_path: Path) -> None:
    directory = tmp_path / "creds"
    first = provision_service_credentials(directory, SERVICES)
    pems = {name: path.read_bytes() for name, path in first.key_files.items()}
    assert set(pems) == set(SERVICES)
    for path in first.key_files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8

    trust_before = first.trust_file.read_text()
    second = provision_service_credentials(directory, SERVICES)
    assert {name: path.read_bytes() for name, path in second.key_files.items()} == pems
    assert second.trust_file.read_text() == trust_before

    data = json.loads(trust_before)
    assert set(data["services"]) == set(SERVICES)
    for name in SERVICES:
        (jwk,) = data["services"][name]["keys"]
        public = load_private_key(first.key_files[name]).public_key()
        assert jwk == public_jwk(public)
        assert jwk["kid"] == key_id(public)
        assert (jwk["alg"], jwk["use"], "d" in jwk) == ("ES256", "sig", False)

    # The files work end to end.
    trust = TrustStore.from_file(first.trust_file)
    token = ServiceTokenIssuer("operator", load_private_key(first.key_files["operator"])).token_for("ca")
    assert ServiceTokenVerifier("ca", trust).verify(token).name == "operator"


def test_provisioning_tightens_mode_and_rejects_bad_names(tmp_path: Path) -> None:
    first = provision_service_credentials(tmp_path, ["ca"])
    first.key_files["ca"].chmod(0o644)
    provision_service_credentials(tmp_path, ["ca"])
    assert stat.S_IMODE(first.key_files["ca"].stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="invalid service name"):
        provision_service_credentials(tmp_path, ["../evil"])


def test_kid_is_rfc7638_thumbprint(keys: dict[str, ec.EllipticCurvePrivateKey]) -> None:
    jwk = public_jwk(keys["ca"].public_key())
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    assert jwk["kid"] == b64(hashlib.sha256(canonical.encode()).digest())


def test_a_cached_verification_still_expires_with_the_token(tmp_path):
    """Verified tokens are remembered for speed, but never past their expiry."""
    from tsunagu.auth import (
        ServiceTokenIssuer,
        ServiceTokenVerifier,
        TrustStore,
        provision_service_credentials,
    )
    from tsunagu.auth.keys import load_private_key

    creds = provision_service_credentials(tmp_path, ["ca", "signer"])
    now = [1_800_000_000.0]
    issuer = ServiceTokenIssuer(
        "ca", load_private_key(creds.key_files["ca"]), lifetime_s=60, clock=lambda: now[0]
    )
    verifier = ServiceTokenVerifier(
        "signer", TrustStore.from_file(creds.trust_file), leeway_s=5, clock=lambda: now[0]
    )
    token = issuer.token_for("signer")
    assert verifier.verify(token).name == "ca"
    assert verifier.verify(token).name == "ca"  # from the cache
    now[0] += 66
    with pytest.raises(InvalidServiceToken):
        verifier.verify(token)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    now[0] -= 66
    with pytest.raises(InvalidServiceToken):
        verifier.verify(tampered)  # a different string is verified afresh
