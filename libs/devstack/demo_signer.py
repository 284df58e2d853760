"""Demo chapter: keys live in the HSM; a CA certificate is signed there, through the signer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tsunagu.auth import ServiceTokenIssuer, load_private_key
from tsunagu.clients import UpstreamError
from tsunagu.clients.signer import SignerClient
from tsunagu.x509 import sign_certificate


def _client(url: str, credentials_dir: Path, name: str) -> SignerClient:
    return SignerClient(url, ServiceTokenIssuer(name, load_private_key(credentials_dir / f"{name}.key.pem")))


async def run_signer_chapter(url: str, credentials_dir: Path, say: Callable[[str], None]) -> bool:
    operator, ca, idp = (_client(url, credentials_dir, name) for name in ("operator", "ca", "idp"))
    try:
        say("4. 運用者が HSM 内に CA 鍵を生成・有効化 / the operator creates a CA key inside the HSM")
        key = await operator.create_key("ca-root", "ES256")
        await operator.transition(key["kid"], "activate")
        say(f"   key {key['kid'][:16]}… (ES256, usable by: {', '.join(key['allowed_callers'])})")
        public_key = serialization.load_pem_public_key(key["public_key_pem"].encode())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tsunagu Demo Root CA")])
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        )
        certificate = await sign_certificate(
            builder,
            ca.remote_signer(key_id=key["kid"], algorithm="ES256"),
            issuer_public_key=public_key,  # type: ignore[arg-type]
        )
        certificate.verify_directly_issued_by(certificate)
        say(
            f"5. ca が署名サービス経由でルート証明書を発行 / ca issued a root certificate through the signer "
            f"(serial {certificate.serial_number:x}, verified)"
        )
        try:
            await idp.sign(b"not yours", key_id=key["kid"])
            say("   ✗ idp could sign with the CA key")
            return False
        except UpstreamError as refused:
            say(f"   ✓ idp may not use the CA key ({refused.status} {refused.problem.get('type', '')})")
        return True
    finally:
        for client in (operator, ca, idp):
            await client.aclose()
