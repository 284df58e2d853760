"""The CA's way of signing, across real processes: the signer service (SoftHSM2 token provisioned
by the dev stack) signs a root, an issuing CA certificate and a CRL for `ca` over authenticated
HTTP; openssl, which knows nothing of Tsunagu, accepts the chain and the CRL."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tsunagu.auth import ServiceTokenIssuer, load_private_key
from tsunagu.clients.signer import SignerClient
from tsunagu.devstack.ports import free_port_block, free_port_outside
from tsunagu.devstack.stack import StackConfig, start_stack
from tsunagu.x509 import sign_certificate, sign_crl


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_builder(subject: str, issuer: str, public_key, days: int) -> x509.CertificateBuilder:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC) - timedelta(minutes=1)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


async def test_ca_chain_and_crl_signed_by_the_signer_process_verify_with_openssl(tmp_path: Path):
    base = free_port_block()
    kafka = free_port_outside(base)
    config = StackConfig(
        state_dir=tmp_path / "stack",
        kafka_port=kafka,
        base_port=base,
        jlis_port=free_port_outside(base, kafka),
    )
    stack = await asyncio.to_thread(start_stack, config, lambda _message: None)
    credentials = config.state_dir / "credentials"

    def client(name: str) -> SignerClient:
        return SignerClient(
            stack.urls["signer"], ServiceTokenIssuer(name, load_private_key(credentials / f"{name}.key.pem"))
        )

    operator, ca = client("operator"), client("ca")
    try:
        keys = {}
        for purpose, algorithm in (("ca-root", "ES256"), ("ca-issuing", "PS256")):
            created = await operator.create_key(
                purpose, algorithm, key_size=3072 if algorithm == "PS256" else None
            )
            keys[purpose] = await operator.transition(created["kid"], "activate")
        public = {p: serialization.load_pem_public_key(k["public_key_pem"].encode()) for p, k in keys.items()}
        root_signer = ca.remote_signer(key_id=keys["ca-root"]["kid"], algorithm="ES256")
        issuing_signer = ca.remote_signer(key_id=keys["ca-issuing"]["kid"], algorithm="PS256")

        root = await sign_certificate(
            _ca_builder("Root", "Root", public["ca-root"], 3650),
            root_signer,
            issuer_public_key=public["ca-root"],
        )  # type: ignore[arg-type]
        issuing = await sign_certificate(
            _ca_builder("Issuing", "Root", public["ca-issuing"], 1825),
            root_signer,
            issuer_public_key=public["ca-root"],
        )  # type: ignore[arg-type]
        now = datetime.now(UTC) - timedelta(minutes=1)
        revoked = [
            x509.RevokedCertificateBuilder().serial_number(n).revocation_date(now).build()
            for n in range(1, 1001)
        ]
        crl_builder = x509.CertificateRevocationListBuilder(
            issuer_name=_name("Issuing"),
            last_update=now,
            next_update=now + timedelta(days=1),
            revoked_certificates=revoked,
        ).add_extension(x509.CRLNumber(1), critical=False)
        crl = await sign_crl(crl_builder, issuing_signer, issuer_public_key=public["ca-issuing"])  # type: ignore[arg-type]
    finally:
        for each in (operator, ca):
            await each.aclose()
        await asyncio.to_thread(stack.stop)

    files = {"root.pem": root, "issuing.pem": issuing}
    for file_name, certificate in files.items():
        (tmp_path / file_name).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "issuing.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    chain = subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "root.pem", tmp_path / "issuing.pem"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert chain.returncode == 0 and chain.stdout.strip().endswith("OK"), chain.stdout + chain.stderr
    crl_check = subprocess.run(
        [
            "openssl",
            "crl",
            "-in",
            tmp_path / "issuing.crl",
            "-noout",
            "-CAfile",
            tmp_path / "issuing.pem",
            "-verify",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert crl_check.returncode == 0 and "verify OK" in crl_check.stdout + crl_check.stderr, crl_check.stderr
    assert len(list(crl)) == 1000
