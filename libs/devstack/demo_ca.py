"""Demo chapter: a citizen proves who they are once with the My Number Card and gets certificates
on two phones, one user identification number; a lost phone is revoked from the other; the CRL
and OCSP say so; J-LIS's death notice revokes the rest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.wallet import SandboxCard, enroll, request_app_certificate, revoke


def _pem(text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode())


async def _ocsp_status(ca: httpx.AsyncClient, pem: str, issuer_pem: str) -> str:
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(_pem(pem), _pem(issuer_pem), hashes.SHA1())  # noqa: S303 - CertID, as clients send
        .build()
    )
    response = await ca.post(
        "/ocsp",
        content=request.public_bytes(serialization.Encoding.DER),
        headers={"content-type": "application/ocsp-request"},
    )
    answer = ocsp.load_der_ocsp_response(response.content)
    return answer.certificate_status.name.lower()


async def run_ca_chapter(
    jlis_url: str, ca_url: str, credentials_dir: Path, say: Callable[[str], None], timeout_s: float = 60.0
) -> bool:
    idp = ServiceTokenAuth(ServiceTokenIssuer("idp", load_private_key(credentials_dir / "idp.key.pem")), "ca")
    async with (
        httpx.AsyncClient(base_url=jlis_url, timeout=30) as jlis,
        httpx.AsyncClient(base_url=ca_url, timeout=30) as ca,
    ):
        issued = (
            await jlis.post(
                "/cards",
                json={
                    "name": "数字 花子",
                    "address": "群馬県前橋市大手町一丁目1番1号",
                    "birth_date": "1990-04-01",
                    "sex": "2",
                },
            )
        ).json()
        card = SandboxCard(jlis, issued["card_id"])
        say("8. スマホでカードを読み取り利用者登録 / a phone enrolls: the card signs the CA's challenge")
        phone = await enroll(ca, card)
        signing = _pem(phone.signing.certificate_pem)
        say(f"   ✓ user identification number {phone.user_number} (random, check digit; not the My Number)")
        say(
            f"   ✓ signing certificate {phone.signing.serial[:12]}… and "
            f"authentication certificate {phone.authentication.serial[:12]}…"
        )
        say(f"     subject: {signing.subject.rfc4514_string()} — no name, no address")
        tablet = await enroll(ca, card)
        app = await request_app_certificate(ca, tablet, "maebashi-library")
        same = "✓" if tablet.user_number == phone.user_number else "✗"
        say(f"9. 2台目の端末 / a second device enrolls with the card again: {same} same number")
        say(f"   ✓ a per-app certificate for maebashi-library ({app.serial[:12]}…), asked with the auth key")
        issuer_pem = phone.authentication.chain[0]
        before = await _ocsp_status(ca, phone.authentication.certificate_pem, issuer_pem)
        revoked = await revoke(ca, tablet, device_id=phone.device_id, reason="keyCompromise")
        say(f"10. 端末を紛失 / the first phone is lost: revoked from the second ({len(revoked)} certs)")
        after = await _ocsp_status(ca, phone.authentication.certificate_pem, issuer_pem)
        say(f"   ✓ OCSP: {before} → {after}")
        deadline = time.monotonic() + timeout_s
        listed = False
        while not listed and time.monotonic() < deadline:
            crl = x509.load_der_x509_crl((await ca.get("/crl/issuing-1.crl")).content)
            listed = (
                crl.get_revoked_certificate_by_serial_number(int(phone.authentication.serial, 16)) is not None
            )
            if not listed:
                await asyncio.sleep(0.2)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        say(f"   {'✓' if listed else '✗'} the CRL lists it (CRL number {number})")
        if tablet.user_number != phone.user_number or after != "revoked" or not listed:
            return False
        (await jlis.post(f"/persons/{issued['person_id']}/die")).raise_for_status()
        say("11. J-LIS が死亡を通知 / J-LIS reports the citizen's death (push → jlis-sync → Kafka → ca)")
        while time.monotonic() < deadline:
            status = (await ca.get(f"/internal/v1/certificates/{tablet.signing.serial}", auth=idp)).json()
            if status["status"] == "revoked":
                say(f"   ✓ the remaining certificates are revoked ({status['revocation_reason']})")
                return True
            await asyncio.sleep(0.2)
    say("   ✗ the death notice did not revoke the certificates")
    return False
