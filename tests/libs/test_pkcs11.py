"""tsunagu.pkcs11 against a real SoftHSM2 token (plugin: tests.fixtures.softhsm)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pkcs11 import Attribute, Mechanism
from pydantic import SecretStr

from tests.fixtures.softhsm import pkcs11_settings_for
from tsunagu.devstack.softhsm import (
    INSTALL_HINT,
    MODULE_ENV,
    SoftHsmNotInstalled,
    SoftHsmToken,
    find_softhsm_module,
    init_token,
)
from tsunagu.errors import DomainError
from tsunagu.pkcs11 import (
    KeyNotFound,
    PinIncorrect,
    Pkcs11ModuleNotFound,
    Pkcs11Settings,
    Pkcs11Token,
    TokenNotFound,
    TokenUnavailable,
    ecdsa_der_to_raw,
    ecdsa_raw_to_der,
    find_private_key,
    generate_ec_p256_keypair,
    generate_rsa_keypair,
    read_public_key,
    sign_ecdsa_p256_sha256,
    sign_rsa_pkcs1v15_sha256,
    sign_rsa_pss_sha256,
)

pytestmark = pytest.mark.softhsm

PSS_SHA256 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def _label(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
async def ec_key(pkcs11_token: Pkcs11Token) -> tuple[str, ec.EllipticCurvePublicKey]:
    label = _label("ec")

    def create(session: Any) -> ec.EllipticCurvePublicKey:
        generate_ec_p256_keypair(session, label=label, key_id=secrets.token_bytes(8))
        public = read_public_key(session, label=label)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return public

    return label, await pkcs11_token.run(create)


@pytest.fixture(scope="module")
async def rsa_key(pkcs11_token: Pkcs11Token) -> tuple[str, rsa.RSAPublicKey]:
    label = _label("rsa")

    def create(session: Any) -> rsa.RSAPublicKey:
        generate_rsa_keypair(session, label=label, key_id=secrets.token_bytes(8), bits=2048)
        public = read_public_key(session, label=label)
        assert isinstance(public, rsa.RSAPublicKey)
        return public

    return label, await pkcs11_token.run(create)


def _sign_ec(label: str, data: bytes) -> Any:
    return lambda session: sign_ecdsa_p256_sha256(find_private_key(session, label=label), data)


# -- signing on the real token -----------------------------------------------------------------------


async def test_ec_p256_signature_verifies(
    pkcs11_token: Pkcs11Token, ec_key: tuple[str, ec.EllipticCurvePublicKey]
) -> None:
    label, public = ec_key
    data = b"tsunagu ec test payload"
    raw = await pkcs11_token.run(_sign_ec(label, data))
    assert len(raw) == 64
    der = ecdsa_raw_to_der(raw)
    assert ecdsa_der_to_raw(der) == raw
    assert public.curve.name == "secp256r1"
    public.verify(der, data, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(der, data + b"!", ec.ECDSA(hashes.SHA256()))


async def test_rsa_2048_pkcs1v15_and_pss_signatures_verify(
    pkcs11_token: Pkcs11Token, rsa_key: tuple[str, rsa.RSAPublicKey]
) -> None:
    label, public = rsa_key
    data = b"tsunagu rsa test payload"

    def sign(session: Any) -> tuple[bytes, bytes]:
        private = find_private_key(session, label=label)
        return sign_rsa_pkcs1v15_sha256(private, data), sign_rsa_pss_sha256(private, data)

    pkcs1, pss = await pkcs11_token.run(sign)
    assert public.key_size == 2048
    assert len(pkcs1) == len(pss) == 256
    public.verify(pkcs1, data, padding.PKCS1v15(), hashes.SHA256())
    public.verify(pss, data, PSS_SHA256, hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(pss, data, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(pkcs1, b"other", padding.PKCS1v15(), hashes.SHA256())


async def test_generated_private_keys_are_sensitive_and_non_extractable(
    pkcs11_token: Pkcs11Token,
    ec_key: tuple[str, ec.EllipticCurvePublicKey],
    rsa_key: tuple[str, rsa.RSAPublicKey],
) -> None:
    wanted = [
        Attribute.TOKEN,
        Attribute.PRIVATE,
        Attribute.SENSITIVE,
        Attribute.EXTRACTABLE,
        Attribute.ALWAYS_SENSITIVE,
        Attribute.NEVER_EXTRACTABLE,
        Attribute.SIGN,
        Attribute.DECRYPT,
    ]

    def attributes(session: Any) -> list[dict[Any, Any]]:
        out = []
        for label in (ec_key[0], rsa_key[0]):
            private = find_private_key(session, label=label)
            out.append({attr: private[attr] for attr in wanted})
        return out

    for attrs in await pkcs11_token.run(attributes):
        assert attrs[Attribute.TOKEN] is True
        assert attrs[Attribute.PRIVATE] is True
        assert attrs[Attribute.SENSITIVE] is True
        assert attrs[Attribute.EXTRACTABLE] is False
        assert attrs[Attribute.ALWAYS_SENSITIVE] is True
        assert attrs[Attribute.NEVER_EXTRACTABLE] is True
        assert attrs[Attribute.SIGN] is True
        assert attrs[Attribute.DECRYPT] is False

    # The secret values cannot be read back.
    def read_secret(session: Any) -> Any:
        return find_private_key(session, label=ec_key[0])[Attribute.VALUE]

    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        await pkcs11_token.run(read_secret)

    def read_rsa_secret(session: Any) -> Any:
        return find_private_key(session, label=rsa_key[0])[Attribute.PRIVATE_EXPONENT]

    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        await pkcs11_token.run(read_rsa_secret)


async def test_100_concurrent_tasks_are_serialised_on_one_worker_thread(
    pkcs11_token: Pkcs11Token, ec_key: tuple[str, ec.EllipticCurvePublicKey]
) -> None:
    label, public = ec_key
    threads: set[int] = set()
    active = 0
    max_active = 0
    guard = threading.Lock()

    def sign(data: bytes) -> Any:
        def call(session: Any) -> bytes:
            nonlocal active, max_active
            with guard:
                active += 1
                max_active = max(max_active, active)
                threads.add(threading.get_ident())
            try:
                return sign_ecdsa_p256_sha256(find_private_key(session, label=label), data)
            finally:
                with guard:
                    active -= 1

        return call

    messages = [f"message {i}".encode() for i in range(100)]
    signatures = await asyncio.gather(*(pkcs11_token.run(sign(m)) for m in messages))
    assert len(signatures) == 100
    for message, signature in zip(messages, signatures, strict=True):
        public.verify(ecdsa_raw_to_der(signature), message, ec.ECDSA(hashes.SHA256()))
    assert max_active == 1
    assert len(threads) == 1
    assert threading.get_ident() not in threads


async def test_run_sync_from_a_thread_and_nested(
    pkcs11_token: Pkcs11Token, ec_key: tuple[str, ec.EllipticCurvePublicKey]
) -> None:
    label, public = ec_key

    def from_thread() -> bytes:
        return pkcs11_token.run_sync(_sign_ec(label, b"sync"))

    signature = await asyncio.to_thread(from_thread)
    public.verify(ecdsa_raw_to_der(signature), b"sync", ec.ECDSA(hashes.SHA256()))

    # run_sync inside a callback runs inline on the worker instead of deadlocking.
    nested = await pkcs11_token.run(lambda _s: pkcs11_token.run_sync(_sign_ec(label, b"nested")))
    public.verify(ecdsa_raw_to_der(nested), b"nested", ec.ECDSA(hashes.SHA256()))


# -- error mapping -------------------------------------------------------------------------------------


async def test_missing_module_file_raises_module_not_found(
    tmp_path: Path, softhsm_token: SoftHsmToken, pkcs11_token: Pkcs11Token
) -> None:
    missing = Pkcs11Token(pkcs11_settings_for(softhsm_token, module_path=str(tmp_path / "nope.so")))
    with pytest.raises(Pkcs11ModuleNotFound) as info:
        await missing.open()
    assert "nope.so" in str(info.value)
    assert info.value.status == 503

    # A file that is not a loadable library (dlopen fails; python-pkcs11 caches nothing then).
    garbage = tmp_path / "garbage.so"
    garbage.write_bytes(b"not an ELF file")
    bad = Pkcs11Token(pkcs11_settings_for(softhsm_token, module_path=str(garbage)))
    with pytest.raises(Pkcs11ModuleNotFound):
        await bad.open()

    # The failed loads did not disturb the real module.
    assert len(await pkcs11_token.run(lambda s: s.generate_random(128))) == 16


def test_missing_module_in_a_fresh_process(tmp_path: Path, softhsm_token: SoftHsmToken) -> None:
    code = (
        "import asyncio, sys\n"
        "from pydantic import SecretStr\n"
        "from tsunagu.pkcs11 import Pkcs11Settings, Pkcs11Token, Pkcs11ModuleNotFound\n"
        "t = Pkcs11Token(Pkcs11Settings(module_path=sys.argv[1], token_label='x', user_pin=SecretStr('1')))\n"
        "try:\n"
        "    asyncio.run(t.open())\n"
        "except Pkcs11ModuleNotFound as exc:\n"
        "    print('MODULE-NOT-FOUND', exc.status)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing.so")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **softhsm_token.env()},
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "MODULE-NOT-FOUND 503" in proc.stdout


async def test_unknown_label_raises_token_not_found(softhsm_token: SoftHsmToken) -> None:
    token = Pkcs11Token(pkcs11_settings_for(softhsm_token, token_label="no-such-token"))
    with pytest.raises(TokenNotFound) as info:
        await token.open()
    assert "no-such-token" in str(info.value)
    assert info.value.status == 503


async def test_wrong_pin_raises_pin_incorrect_without_leaking_it(
    softhsm_aux_token: SoftHsmToken, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_pin = "wrong-" + secrets.token_hex(6)
    settings = pkcs11_settings_for(softhsm_aux_token, user_pin=SecretStr(wrong_pin))
    token = Pkcs11Token(settings)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PinIncorrect) as info:
        await token.open()
    exc = info.value
    assert exc.status == 503
    assert isinstance(exc, DomainError)
    rendered = [
        str(exc),
        repr(exc),
        "".join(traceback.format_exception(exc)),
        exc.to_problem().model_dump_json(),
        repr(token),
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        caplog.text,
    ]
    for text in rendered:
        assert wrong_pin not in text
    assert softhsm_aux_token.label in str(exc)
    assert any("rejected" in r.getMessage() for r in caplog.records)
    # Later calls keep failing the same way (no half-open state).
    with pytest.raises(PinIncorrect):
        await token.run(lambda s: s.generate_random(64))

    # The same token opens with the right PIN, and that PIN does not leak into the logs either.
    good = Pkcs11Token(pkcs11_settings_for(softhsm_aux_token))
    await good.open()
    try:
        assert len(await good.run(lambda s: s.generate_random(64))) == 8
    finally:
        await good.close()
    assert softhsm_aux_token.user_pin not in caplog.text
    assert softhsm_aux_token.user_pin not in repr(softhsm_aux_token)
    assert softhsm_aux_token.so_pin not in repr(softhsm_aux_token)


async def test_missing_key_raises_key_not_found(pkcs11_token: Pkcs11Token) -> None:
    with pytest.raises(KeyNotFound) as info:
        await pkcs11_token.run(lambda s: find_private_key(s, label="does-not-exist"))
    assert info.value.status == 404
    assert "does-not-exist" in str(info.value)
    with pytest.raises(KeyNotFound):
        await pkcs11_token.run(lambda s: read_public_key(s, key_id=b"\xde\xad"))
    # The raw python-pkcs11 NoSuchKey is mapped too.
    with pytest.raises(KeyNotFound):
        await pkcs11_token.run(lambda s: s.get_key(label="does-not-exist"))


# -- recovery ------------------------------------------------------------------------------------------


async def test_reset_then_sign_works(
    pkcs11_token: Pkcs11Token, ec_key: tuple[str, ec.EllipticCurvePublicKey]
) -> None:
    label, public = ec_key
    before = await pkcs11_token.run(lambda s: s)
    await pkcs11_token.reset()
    signature = await pkcs11_token.run(_sign_ec(label, b"after reset"))
    public.verify(ecdsa_raw_to_der(signature), b"after reset", ec.ECDSA(hashes.SHA256()))
    after = await pkcs11_token.run(lambda s: s)
    assert after is not before


async def test_dead_session_raises_token_unavailable_then_reopens(
    pkcs11_token: Pkcs11Token, ec_key: tuple[str, ec.EllipticCurvePublicKey]
) -> None:
    label, public = ec_key
    # Kill the session behind the pool's back (what a removed device / HSM restart looks like).
    await pkcs11_token.run(lambda s: s.close())
    with pytest.raises(TokenUnavailable) as info:
        await pkcs11_token.run(lambda s: s.generate_random(64))
    assert info.value.status == 503
    assert info.value.headers["Retry-After"]
    # The next call transparently reopens and logs in again.
    signature = await pkcs11_token.run(_sign_ec(label, b"reopened"))
    public.verify(ecdsa_raw_to_der(signature), b"reopened", ec.ECDSA(hashes.SHA256()))


async def test_call_timeout_raises_token_unavailable_and_never_hangs(softhsm_aux_token: SoftHsmToken) -> None:
    token = Pkcs11Token(pkcs11_settings_for(softhsm_aux_token, call_timeout_s=0.3))
    await token.open()
    queued_ran = threading.Event()
    try:
        slow = asyncio.ensure_future(token.run(lambda _s: time.sleep(1.0)))
        await asyncio.sleep(0.05)  # let the slow call start on the worker
        started = time.monotonic()
        with pytest.raises(TokenUnavailable, match="busy"):
            await token.run(lambda _s: queued_ran.set(), timeout_s=0.1)
        with pytest.raises(TokenUnavailable, match="did not answer"):
            await slow
        assert time.monotonic() - started < 0.9
        # The worker comes free again; the queued call was dropped, not run late.
        assert len(await token.run(lambda s: s.generate_random(64), timeout_s=5)) == 8
        assert not queued_ran.is_set()
    finally:
        await token.close()
    with pytest.raises(TokenUnavailable, match="closed"):
        await token.run(lambda s: s.generate_random(64))


async def test_inline_calls_run_on_the_callers_thread_only_while_the_token_is_idle(
    softhsm_aux_token: SoftHsmToken,
) -> None:
    token = Pkcs11Token(pkcs11_settings_for(softhsm_aux_token, inline_calls=True))
    await token.open()
    here = threading.get_ident()
    try:
        ran_on = await token.run(lambda _s: threading.get_ident(), inline=True)
        assert ran_on == here
        # Not asked for inline: the worker, as always.
        assert await token.run(lambda _s: threading.get_ident()) != here
        # While a call is on the token, an inline call waits for the worker instead of touching
        # the token from a second thread at the same time.
        on_token = threading.Event()
        off_token = threading.Event()
        overlapped = threading.Event()

        def slow(_session: Any) -> None:
            on_token.set()
            time.sleep(0.3)
            off_token.set()

        def check(_session: Any) -> int:
            if not off_token.is_set():
                overlapped.set()
            return threading.get_ident()

        slow_call = asyncio.ensure_future(token.run(slow))
        await asyncio.to_thread(on_token.wait, 5)
        ran_on = await token.run(check, inline=True)
        await slow_call
        assert ran_on != here
        assert not overlapped.is_set()
        # Errors are mapped as on the worker.
        with pytest.raises(KeyNotFound):
            await token.run(lambda s: find_private_key(s, label="no-such-key"), inline=True)
        # run_sync inside an inline call runs inline too, instead of waiting for the lock it holds.
        started = time.monotonic()
        nested = await token.run(lambda _s: token.run_sync(lambda _t: threading.get_ident()), inline=True)
        assert nested == here and time.monotonic() - started < 1.0
        assert await token.run(lambda _s: threading.get_ident()) != here  # the worker, afterwards
    finally:
        await token.close()


async def test_inline_is_ignored_unless_the_settings_allow_it(softhsm_aux_token: SoftHsmToken) -> None:
    token = Pkcs11Token(pkcs11_settings_for(softhsm_aux_token))  # a network HSM's setting
    await token.open()
    try:
        assert await token.run(lambda _s: threading.get_ident(), inline=True) != threading.get_ident()
    finally:
        await token.close()


# -- settings, errors, devstack ------------------------------------------------------------------------


def test_settings_hide_the_pin() -> None:
    settings = Pkcs11Settings(module_path="/x.so", token_label="t", user_pin=SecretStr("s3cr3t-pin"))
    assert settings.call_timeout_s == 5.0
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cr3t-pin" not in text
    assert "s3cr3t-pin" not in repr(Pkcs11Token(settings))


def test_error_classes() -> None:
    unavailable = (Pkcs11ModuleNotFound, TokenNotFound, TokenUnavailable, PinIncorrect)
    assert {cls.status for cls in unavailable} == {503}
    assert KeyNotFound.status == 404
    codes = {cls.code for cls in (*unavailable, KeyNotFound)}
    assert len(codes) == 5
    assert TokenUnavailable("x").headers["Retry-After"] == "5"


def test_init_token_is_idempotent(tmp_path: Path) -> None:
    first = init_token(tmp_path, "idem", user_pin="1111", so_pin="2222")
    second = init_token(tmp_path, "idem", user_pin="1111", so_pin="2222")
    assert first == second
    assert first.env() == {"SOFTHSM2_CONF": str(tmp_path.resolve() / "softhsm2.conf")}
    conf = first.conf_path.read_text()
    assert "objectstore.backend = file" in conf
    assert "log.level = ERROR" in conf
    assert f"directories.tokendir = {tmp_path.resolve() / 'tokens'}" in conf
    assert len([p for p in (tmp_path / "tokens").iterdir() if p.is_dir()]) == 1
    init_token(tmp_path, "other", user_pin="1111", so_pin="2222")
    assert len([p for p in (tmp_path / "tokens").iterdir() if p.is_dir()]) == 2
    assert "1111" not in repr(first)
    assert "2222" not in repr(first)


def test_find_softhsm_module_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"")
    monkeypatch.setenv(MODULE_ENV, str(fake))
    assert find_softhsm_module() == str(fake)
    monkeypatch.setenv(MODULE_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(SoftHsmNotInstalled, match="apt-get install softhsm2"):
        find_softhsm_module()
    monkeypatch.delenv(MODULE_ENV)
    assert Path(find_softhsm_module()).is_file()
    assert "apt-get install softhsm2" in INSTALL_HINT


async def test_ed25519_key_generated_in_the_token_signs_and_verifies(pkcs11_token):
    from tsunagu.pkcs11.keys import generate_ed25519_keypair, to_cryptography_public_key

    def generate_and_sign(session):  # type: ignore[no-untyped-def]
        public, private = generate_ed25519_keypair(session, label="ed25519-test", key_id=b"ed-1")
        return to_cryptography_public_key(public), private.sign(b"tsunagu", mechanism=Mechanism.EDDSA)

    public_key, signature = await pkcs11_token.run(generate_and_sign)
    public_key.verify(signature, b"tsunagu")  # raises InvalidSignature if wrong
    assert len(signature) == 64
