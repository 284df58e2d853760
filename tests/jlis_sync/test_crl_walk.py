"""The streaming CRL walk agrees with cryptography's parser entry by entry, and refuses junk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tsunagu.jlis_sync.domain.crl_der_walk import count_entries, matching_entries
from tsunagu.jlis_sync.domain.crl_rfc5280 import revoked_entries
from tsunagu.jlis_sync.domain.errors import CrlRejected
from tsunagu.sandbox.jlis import JlisSandbox

EVERYTHING = type("Everything", (), {"__contains__": lambda self, item: True})()


def _crl(entries: list[tuple[int, datetime, x509.ReasonFlags | None]]) -> bytes:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime(2026, 4, 1, tzinfo=UTC)
    revoked = []
    for serial, when, reason in entries:
        builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason is not None:
            builder = builder.add_extension(x509.CRLReason(reason), critical=False)
        revoked.append(builder.build())
    crl = (
        x509.CertificateRevocationListBuilder(
            issuer_name=name,
            last_update=now,
            next_update=now + timedelta(days=1),
            revoked_certificates=revoked,
        )
        .add_extension(x509.CRLNumber(7), critical=False)
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(Encoding.DER)


def _reference(der: bytes) -> list[tuple[str, datetime, str]]:
    return [(e.serial, e.revoked_at, e.reason) for e in revoked_entries(x509.load_der_x509_crl(der))]


def test_every_reason_date_form_and_serial_size_decodes_like_cryptography():
    reasons = [None, *x509.ReasonFlags.__members__.values()]
    reasons = [r for r in reasons if r not in (x509.ReasonFlags.unspecified,)]
    entries = [
        (serial, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(days=n), reason)
        for n, (serial, reason) in enumerate(
            zip([1, 127, 128, 255, 2**64, 2**150 + 3, 99, 42], reasons, strict=False)
        )
    ]
    entries.append(
        (2**158, datetime(2051, 7, 1, tzinfo=UTC), x509.ReasonFlags.affiliation_changed)
    )  # GeneralizedTime
    der = _crl(entries)
    walked = [(e.serial, e.revoked_at, e.reason) for e in matching_entries(der, EVERYTHING)]
    assert walked == _reference(der)
    assert count_entries(der) == len(entries)
    only = [e.serial for e in matching_entries(der, {128, 2**158})]
    assert only == [format(128, "x"), format(2**158, "x")]


def test_a_sandbox_crl_after_life_events_walks_the_same(tmp_path: Path):
    from datetime import date

    sandbox = JlisSandbox(None)
    people = [sandbox.create_card(f"住民 {n}", "前橋市", date(1980, 1, 1 + n), "1") for n in range(4)]
    sandbox.move(people[0].person_id, "江別市")
    sandbox.die(people[1].person_id)
    sandbox.lose(people[2].person_id)
    sandbox.renew(people[3].person_id)
    der = sandbox.crl("signing").der
    walked = [(e.serial, e.revoked_at, e.reason) for e in matching_entries(der, EVERYTHING)]
    assert walked == _reference(der) and len(walked) == 4
    assert {e[2] for e in walked} == {
        "affiliationChanged",
        "cessationOfOperation",
        "keyCompromise",
        "superseded",
    }
    large = tmp_path / "large.crl"
    sandbox.generate_large_crl(large, entries=20_000)
    big = large.read_bytes()
    assert count_entries(big) == 20_000
    assert [(e.serial, e.revoked_at, e.reason) for e in matching_entries(big, EVERYTHING)] == _reference(big)


def test_an_empty_crl_has_no_entries():
    der = _crl([])
    assert count_entries(der) == 0 and list(matching_entries(der, EVERYTHING)) == []


@pytest.mark.parametrize("junk", [b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x03\x02\x01"])
def test_junk_is_a_refused_crl(junk: bytes):
    with pytest.raises(CrlRejected):
        list(matching_entries(junk, EVERYTHING))


def test_a_truncated_crl_is_refused():
    der = _crl([(n, datetime(2026, 1, 1, tzinfo=UTC), None) for n in range(1, 50)])
    with pytest.raises(CrlRejected):
        list(matching_entries(der[:-400], EVERYTHING))
