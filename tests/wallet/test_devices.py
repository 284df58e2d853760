"""Devices are PKCS#11 tokens: enrollment through the CLI makes the keys inside the token (and
they cannot be read out), a second device of the same person, a per-app certificate, listings,
and a lost device whose certificates alone are revoked."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.wallet.conftest import Wallet


def _spki(pem: str) -> str:
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo).hex()


async def test_enroll_generates_unexportable_keys_in_the_token(wallet: Wallet) -> None:
    answer = await wallet.enroll("phone-1")
    device = answer["device"]
    assert answer["user_number"] and device["name"] == "phone-1" and device["token_label"] == "phone-1"
    assert [c["kind"] for c in device["certificates"]] == ["signing", "authentication"]

    keys = {key["id"]: key for key in wallet.probe("phone-1")}
    stored = wallet.state()["devices"]["phone-1"]
    for kind in ("signing", "authentication"):
        credential = stored[kind]
        key = keys[credential["key"]["key_id"]]
        # generated on the token, never extractable, never readable
        assert key["local"] and key["token"] and key["private"]
        assert key["sensitive"] and key["always_sensitive"]
        assert not key["extractable"] and key["never_extractable"]
        assert key["readable"] == []
        # the certificate certifies exactly the token's key
        assert _spki(credential["certificate"]) == key["spki"]
    assert len(keys) == 2
    # The state file holds no private key and no PIN.
    text = wallet.state_file.read_text()
    assert "PRIVATE KEY" not in text and wallet.tokens["phone-1"].user_pin not in text
    assert oct(wallet.state_file.stat().st_mode & 0o777) == "0o600"


async def test_rsa_signing_key_on_the_token(wallet: Wallet) -> None:
    card = await wallet.new_card()
    stack_dir = str(wallet.stack.config.state_dir)
    answer = await wallet.ok(
        "enroll", "--card", card, "--token", "phone-1", "--stack", stack_dir, "--signing-alg", "RS256"
    )
    signing = answer["device"]["certificates"][0]
    assert signing["kind"] == "signing" and signing["algorithm"] == "RS256"
    key = next(
        k
        for k in wallet.probe("phone-1")
        if k["id"] == wallet.state()["devices"]["phone-1"]["signing"]["key"]["key_id"]
    )
    assert not key["extractable"] and key["readable"] == []


async def test_second_device_app_certificate_and_listings(wallet: Wallet) -> None:
    card = await wallet.new_card()
    first = await wallet.enroll("phone-1", card)
    stack_dir = str(wallet.stack.config.state_dir)
    second = await wallet.ok(
        "device", "add", "--card", card, "--token", "phone-2", "--name", "tablet", device="phone-2"
    )
    assert second["user_number"] == first["user_number"]
    assert second["device"]["device_id"] != first["device"]["device_id"]
    assert stack_dir  # the second device reuses the URLs saved at enrollment

    app = await wallet.ok("app-cert", "add", "clinic-app")
    assert app["device"] == "phone-1" and app["certificate"]["kind"] == "app"
    assert app["certificate"]["app_id"] == "clinic-app"
    app_key = wallet.state()["devices"]["phone-1"]["apps"]["clinic-app"]["key"]["key_id"]
    probed = {key["id"]: key for key in wallet.probe("phone-1")}
    assert not probed[app_key]["extractable"] and probed[app_key]["local"]

    devices = await wallet.ok("devices")
    assert devices["default_device"] == "phone-1"
    assert {(d["name"], d["status"]) for d in devices["devices"]} == {
        ("phone-1", "active"),
        ("tablet", "active"),
    }
    certs = await wallet.ok("certs", "--status")
    assert {(c["device"], c["kind"], c["status"]) for c in certs["certificates"]} == {
        ("phone-1", "signing", "good"),
        ("phone-1", "authentication", "good"),
        ("phone-1", "app", "good"),
        ("tablet", "signing", "good"),
        ("tablet", "authentication", "good"),
    }
    # Human output, Japanese by default and English on request.
    ja = await wallet.run("devices")
    assert ja.code == 0 and "利用者識別番号" in ja.stdout and "有効" in ja.stdout
    en = await wallet.run("devices", "--lang", "en")
    assert en.code == 0 and "user identification number" in en.stdout and "active" in en.stdout


async def test_lost_device_revokes_only_that_device(wallet: Wallet) -> None:
    card = await wallet.new_card()
    await wallet.enroll("phone-1", card)
    await wallet.ok("device", "add", "--card", card, "--token", "phone-2", device="phone-2")
    await wallet.ok("app-cert", "add", "clinic-app")
    lost_serials = {c["serial"] for c in (await wallet.ok("certs", "--device", "phone-1"))["certificates"]}

    # The lost phone cannot sign its own loss report; another device must.
    await wallet.fails("device", "lost", "phone-1", device="phone-1", exit_code=2, code="no-other-device")
    answer = await wallet.ok("device", "lost", "phone-1", device="phone-2")
    assert answer["signed_with"] == "phone-2" and set(answer["revoked"]) == lost_serials

    certs = await wallet.ok("certs", "--status")
    status = {(c["device"], c["kind"]): c["status"] for c in certs["certificates"]}
    assert status == {
        ("phone-1", "signing"): "revoked",
        ("phone-1", "authentication"): "revoked",
        ("phone-1", "app"): "revoked",
        ("phone-2", "signing"): "good",
        ("phone-2", "authentication"): "good",
    }
    devices = await wallet.ok("devices")
    assert devices["default_device"] == "phone-2"
    assert {d["name"]: d["status"] for d in devices["devices"]} == {"phone-1": "lost", "phone-2": "active"}
    # The lost device is not used again; a second report is refused.
    await wallet.fails("app-cert", "add", "other", device="phone-1", exit_code=2, code="device-lost")
    await wallet.fails("device", "lost", "phone-1", device="phone-2", exit_code=2, code="device-lost")
