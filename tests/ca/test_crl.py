"""CRL publication on the real stack: the first CRLs after the ceremony, revocations published on
change (the app's own loop, woken), the schedule, conditional GET, twin publishers, and a lint
failure that keeps the previous CRL served. The entry encoder is compared byte for byte with
``cryptography``'s CRL builder."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from tests.ca.conftest import CaHarness
from tsunagu.ca.domain.authorities import Authority
from tsunagu.ca.domain.crl_rfc5280 import (
    SERIAL_LIMIT,
    CrlPublisher,
    crl_builder,
    draft_crl_der,
    revoked_certificates_der,
)
from tsunagu.ca.domain.lint import CrlLintFailed, Linter, LintFinding
from tsunagu.ca.store import models
from tsunagu.ca.store.repository import CaRepository, RevokedColumns
from tsunagu.devstack.postgres import scratch_database
from tsunagu.wallet import Enrolled, enroll, revoke
from tsunagu.x509 import der

OPENSSL_TAIL = ("-CRLfile", "issuing.crl", "ee.pem")
QUIET = {"crl_check_interval_s": 3600.0}  # the schedule never runs by itself during a test
REASON_FLAGS = {
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}


# --- helpers ---------------------------------------------------------------------------------------


async def _crl(ca: CaHarness, authority_id: str = "issuing-1") -> x509.CertificateRevocationList:
    response = await ca.client.get(f"/crl/{authority_id}.crl")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(response.content)


def _number(crl: x509.CertificateRevocationList) -> int:
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def _reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


async def _until_listed(ca: CaHarness, serial: str, after: int) -> x509.CertificateRevocationList:
    """Poll the public URL (bounded) until a CRL newer than number ``after`` lists ``serial``."""
    for _ in range(200):
        crl = await _crl(ca)
        if _number(crl) > after and crl.get_revoked_certificate_by_serial_number(int(serial, 16)):
            return crl
        await asyncio.sleep(0.05)
    raise AssertionError(f"{serial} never appeared in a CRL after number {after}")


async def _revoked_at(ca: CaHarness, serial: str) -> datetime:
    rows = [row for row in await ca.rows("certificate") if row["serial"] == serial]
    revoked_at: datetime = rows[0]["revoked_at"]
    return revoked_at.replace(tzinfo=UTC, microsecond=0)


async def _operator_revokes(ca: CaHarness, serial: str, reason: str) -> None:
    response = await ca.client.post(
        f"/admin/v1/certificates/{serial}/revocation",
        json={"reason": reason, "comment": "test of CRL publication"},
        auth=ca.auth("operator"),
    )
    assert response.status_code == 200, response.text


def _openssl_verify(tmp_path: Path, enrolled: Enrolled, crl: x509.CertificateRevocationList) -> str:
    issuing, root = enrolled.authentication.chain
    files = {
        "root.pem": root,
        "issuing.pem": issuing,
        "ee.pem": enrolled.authentication.certificate_pem,
        "issuing.crl": crl.public_bytes(Encoding.PEM).decode(),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            *OPENSSL_TAIL,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    return f"rc={result.returncode} {result.stdout} {result.stderr}"


async def _add_revoked(ca: CaHarness, issuer_id: str, count: int, at: datetime) -> list[str]:
    """Revoked certificates written straight into the CA's database, as a revocation would leave
    them (the issuer's revocation count moved), to make a CRL larger than enrollments could."""
    serials = [format((0x5A << 150) + n, "x") for n in range(count)]
    reasons = ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "unspecified"]
    rows = [
        {
            "serial": serial,
            "issuer_id": issuer_id,
            "user_number": "T0000000000",
            "device_id": "bulk",
            "kind": "authentication",
            "identifier_name": f"bulk-{serial}",
            "spki_sha256": f"{n:064x}",
            "not_before": at - timedelta(days=1),
            "not_after": at + timedelta(days=365),
            "certificate_der": b"\x30\x00",
            "issued_at": at - timedelta(days=1),
            "revoked_at": at - timedelta(seconds=n),
            "revocation_reason": reasons[n % len(reasons)],
            "revoked_by": "operator:test",
        }
        for n, serial in enumerate(serials)
    ]
    async with ca.app.state.runtime.db.transaction() as session:
        await session.execute(models.certificate.insert(), rows)
        await CaRepository(session).bump_revocations([issuer_id])
    return serials


# --- the encoder, against cryptography --------------------------------------------------------------


def _authority() -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Issuing CA")])
    now = datetime(2025, 1, 1, tzinfo=UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority("issuing-1", "issuing", None, "kid", "ES256", certificate, "current")


def test_entries_are_written_byte_for_byte_as_cryptography_writes_them() -> None:
    jst = timezone(timedelta(hours=9))
    serials = [1, 0x7F, 0x80, 0xFF, 0x100, 0x8000, SERIAL_LIMIT - 1, 0x1234_5678_9ABC_DEF0 << 90]
    dates = [
        datetime(1950, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2050, 1, 1, tzinfo=UTC),  # GeneralizedTime from here on
        datetime(2025, 6, 1, 9, 0, 0, tzinfo=jst),  # not UTC: 00:00 UTC
        datetime(2025, 6, 1, 12, 30, 15),  # naive: taken as UTC, as cryptography does
    ]
    reasons = ["unspecified", *REASON_FLAGS]
    rows = [
        (serial, dates[n % len(dates)], reasons[n % len(reasons)])
        for n, serial in enumerate(serials * len(reasons))
    ]
    entries = []
    for serial, revoked_at, reason in rows:
        builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        if reason != "unspecified":
            builder = builder.add_extension(x509.CRLReason(REASON_FLAGS[reason]), critical=False)
        entries.append(builder.build())
    authority, now, validity = _authority(), datetime(2025, 7, 1, 12, tzinfo=UTC), timedelta(days=1)
    expected = crl_builder(authority, 7, now, validity, entries).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()
    )
    columns = RevokedColumns(
        [format(s, "x") for s, _, _ in rows], [d for _, d, _ in rows], [r for _, _, r in rows]
    )
    written = draft_crl_der(authority, 7, revoked_certificates_der(columns), now, validity)
    assert der.sequence_items(written)[0] == expected.tbs_certlist_bytes
    empty = draft_crl_der(authority, 7, revoked_certificates_der(RevokedColumns([], [], [])), now, validity)
    assert (
        der.sequence_items(empty)[0]
        == crl_builder(authority, 7, now, validity)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .tbs_certlist_bytes
    )
    for bad in (0, SERIAL_LIMIT):
        with pytest.raises(ValueError, match="outside"):
            revoked_certificates_der(RevokedColumns([format(bad, "x")], [now], ["superseded"]))


# --- on the stack -------------------------------------------------------------------------------------


async def test_the_ceremony_publishes_empty_first_crls_that_lint_clean_and_verify(ca: CaHarness) -> None:
    hierarchy = ca.services.ca.hierarchy
    for authority_id in ("root-1", "issuing-1"):
        crl = await _crl(ca, authority_id)
        certificate = hierarchy.get(authority_id).certificate
        assert _number(crl) == 1 and len(crl) == 0
        assert crl.issuer == certificate.subject
        assert crl.is_signature_valid(certificate.public_key())
        assert crl.next_update_utc - crl.last_update_utc == timedelta(days=1)
        assert Linter().lint_crl(crl.public_bytes(Encoding.DER)) == []
    assert sorted((r["issuer_id"], r["number"]) for r in await ca.rows("crl")) == [
        ("issuing-1", 1),
        ("root-1", 1),
    ]


async def test_revocations_are_published_on_change_with_their_reason_and_date(
    make_ca, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    async with make_ca(**QUIET) as ca:
        card, _ = await ca.new_card()
        phone, other_phone = await enroll(ca.client, card), await enroll(ca.client, card)
        numbers = [1]

        # the citizen (wallet) and an operator revoke; each is published at once by the woken loop
        await revoke(ca.client, phone, serials=[phone.signing.serial], reason="keyCompromise")
        crl = await _until_listed(ca, phone.signing.serial, numbers[-1])
        numbers.append(_number(crl))
        await revoke(ca.client, other_phone, serials=[other_phone.signing.serial], reason="unspecified")
        crl = await _until_listed(ca, other_phone.signing.serial, numbers[-1])
        numbers.append(_number(crl))
        await _operator_revokes(ca, phone.authentication.serial, "privilegeWithdrawn")
        crl = await _until_listed(ca, phone.authentication.serial, numbers[-1])
        numbers.append(_number(crl))

        assert numbers == sorted(set(numbers)) and len(crl) == 3
        expected = {
            phone.signing.serial: x509.ReasonFlags.key_compromise,
            other_phone.signing.serial: None,  # unspecified: no reason code (RFC 5280 §5.3.1)
            phone.authentication.serial: x509.ReasonFlags.privilege_withdrawn,
        }
        for serial, reason in expected.items():
            entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
            assert entry is not None and _reason(entry) == reason
            assert entry.revocation_date_utc == await _revoked_at(ca, serial)
        assert crl.is_signature_valid(ca.services.ca.hierarchy.get("issuing-1").certificate.public_key())

        refused = _openssl_verify(tmp_path, phone, crl)
        assert "certificate revoked" in refused and "rc=0" not in refused, refused
        accepted = _openssl_verify(tmp_path, other_phone, crl)
        assert accepted.startswith("rc=0") and "ee.pem: OK" in accepted, accepted


async def test_conditional_get_and_cache_headers(ca: CaHarness) -> None:
    response = await ca.client.get("/crl/issuing-1.crl")
    crl = x509.load_der_x509_crl(response.content)
    etag, headers = response.headers["etag"], response.headers
    assert headers["expires"] == format_datetime(crl.next_update_utc, usegmt=True)
    assert headers["last-modified"] == format_datetime(crl.last_update_utc, usegmt=True)
    cache_control = [directive.strip() for directive in headers["cache-control"].split(",")]
    max_age = next(int(d.removeprefix("max-age=")) for d in cache_control if d.startswith("max-age="))
    assert "public" in cache_control and 0 < max_age <= 300

    for condition in (
        {"if-none-match": etag},
        {"if-none-match": f'"other", W/{etag}'},
        {"if-none-match": "*"},
        {"if-modified-since": headers["last-modified"]},
    ):
        not_modified = await ca.client.get("/crl/issuing-1.crl", headers=condition)
        assert not_modified.status_code == 304 and not_modified.content == b"", condition
        assert not_modified.headers["etag"] == etag and not_modified.headers["expires"] == headers["expires"]
    for condition in (
        {"if-none-match": '"other"'},
        {"if-modified-since": format_datetime(crl.last_update_utc - timedelta(seconds=1), usegmt=True)},
        {"if-modified-since": "not a date"},
        {"if-none-match": '"other"', "if-modified-since": headers["last-modified"]},  # ETag decides
    ):
        assert (await ca.client.get("/crl/issuing-1.crl", headers=condition)).status_code == 200, condition


@pytest.mark.parametrize("authority_id", ["nobody", "ocsp-1", "issuing-9"])
async def test_an_unknown_ca_is_a_problem_404(ca: CaHarness, authority_id: str) -> None:
    response = await ca.client.get(f"/crl/{authority_id}.crl")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:tsunagu:problem:certificate-not-found"


async def test_a_new_crl_after_half_its_validity_without_revocations(make_ca) -> None:  # type: ignore[no-untyped-def]
    async with make_ca(crl_validity_s=600, **QUIET) as ca:
        first = {r["issuer_id"]: r for r in await ca.rows("crl")}
        this_update = first["issuing-1"]["this_update"].replace(tzinfo=UTC)
        crls = ca.services.crls

        ca.services.ca.clock = lambda: this_update + timedelta(seconds=299)
        assert await crls.publish_due() == []
        later = this_update + timedelta(seconds=301)
        ca.services.ca.clock = lambda: later
        made = await crls.publish_due()

        assert sorted((p.issuer_id, p.number) for p in made) == [("issuing-1", 2), ("root-1", 2)]
        crl = await _crl(ca)
        assert _number(crl) == 2 and len(crl) == 0
        assert crl.last_update_utc == later.replace(microsecond=0)
        assert crl.next_update_utc == (later + timedelta(seconds=600)).replace(microsecond=0)
        assert await crls.publish_due() == []  # not due again until half of the new one passed


class _BarrierLinter(Linter):
    """The real linter, but its first ``parties`` CRL checks wait for each other: the twin
    publishers have then both chosen their number before either stores it."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self._barrier, self._waits = threading.Barrier(parties, timeout=30), parties

    def check_crl(self, der_bytes: bytes, *, max_entries_linted: int | None = None) -> list[LintFinding]:
        if self._waits > 0:
            self._waits -= 1
            self._barrier.wait()
        return super().check_crl(der_bytes, max_entries_linted=max_entries_linted)


async def test_twin_publishers_leave_exactly_one_crl_per_number(make_ca) -> None:  # type: ignore[no-untyped-def]
    async with scratch_database("tsunagu_ca") as url, make_ca(url, **QUIET) as ca:
        card, _ = await ca.new_card()
        phone = await enroll(ca.client, card)
        await ca.services.revocations.by_operator(phone.signing.serial, "keyCompromise", "twins", "test")
        ca.services.ca.linter = _BarrierLinter(2)
        twins = [CrlPublisher(ca.services.ca, timedelta(hours=1)) for _ in range(2)]

        made = await asyncio.gather(*(twin.publish_due() for twin in twins))

        assert sorted(len(m) for m in made) == [0, 1]  # the same number was built twice, stored once
        winner = next(m[0] for m in made if m)
        assert (winner.issuer_id, winner.number) == ("issuing-1", 2)
        rows = sorted((r["issuer_id"], r["number"]) for r in await ca.rows("crl"))
        assert rows == [("issuing-1", 1), ("issuing-1", 2), ("root-1", 1)]
        served = [await twin.current("issuing-1") for twin in twins]
        assert served[0].der == served[1].der == winner.der
        listed = x509.load_der_x509_crl(winner.der)
        assert listed.get_revoked_certificate_by_serial_number(int(phone.signing.serial, 16))

        # the loser carries on with the next number
        await ca.services.revocations.by_operator(phone.authentication.serial, "superseded", "twins", "test")
        assert [(p.issuer_id, p.number) for p in await twins[1].publish_due()] == [("issuing-1", 3)]
        assert await twins[0].publish_due() == []


async def test_a_lint_failure_blocks_publication_and_the_previous_crl_stays_served(make_ca) -> None:  # type: ignore[no-untyped-def]
    async with make_ca(**QUIET) as ca:
        card, _ = await ca.new_card()
        phone = await enroll(ca.client, card)
        before = (await ca.client.get("/crl/issuing-1.crl")).content
        crls = ca.services.crls
        crls.validity = timedelta(seconds=-600)  # misconfigured: nextUpdate before thisUpdate

        # revoked without waking the loop: this test alone decides when publication is tried
        await ca.services.revocations.by_operator(phone.signing.serial, "keyCompromise", "lint", "test")
        with pytest.raises(CrlLintFailed) as failed:
            await crls.publish_due()

        assert {f.code for f in failed.value.findings} == {"pkix.crl_negative_validity_period"}
        assert (await ca.client.get("/crl/issuing-1.crl")).content == before
        assert [r["number"] for r in await ca.rows("crl") if r["issuer_id"] == "issuing-1"] == [1]

        crls.validity = timedelta(days=1)
        crls.wake()  # the app's loop publishes it
        crl = await _until_listed(ca, phone.signing.serial, 1)
        assert _number(crl) == 2


async def test_a_crl_beyond_the_signer_payload_limit_is_signed_and_lints_clean_in_full(make_ca) -> None:  # type: ignore[no-untyped-def]
    async with make_ca(**QUIET) as ca:
        now = datetime.now(UTC).replace(microsecond=0)
        serials = await _add_revoked(ca, "issuing-1", 3000, now)  # ≈ 150 KB: over the 64 KiB limit

        made = await ca.services.crls.publish_due()

        assert [(p.issuer_id, p.number) for p in made] == [("issuing-1", 2)]
        der_bytes = made[0].der
        crl = x509.load_der_x509_crl(der_bytes)
        assert len(der_bytes) > 65_536 and len(crl) == 3000
        assert crl.is_signature_valid(ca.services.ca.hierarchy.get("issuing-1").certificate.public_key())
        assert {format(entry.serial_number, "x") for entry in crl} == set(serials)
        assert Linter().lint_crl(der_bytes) == []  # every entry, not only the sample
        async with ca.app.state.runtime.db.sessions() as session:
            stored = (await session.execute(select(models.crl.c.der, models.crl.c.entries))).all()
        assert (der_bytes, 3000) in [tuple(row) for row in stored]
