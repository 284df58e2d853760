"""CRLs: signature, CRL number, regeneration rules, HTTP caching; the benchmark CRL."""

from __future__ import annotations

from email.utils import format_datetime
from pathlib import Path

import httpx
from cryptography import x509

from tests.sandbox.conftest import CardFactory, FakeClock
from tsunagu.sandbox.jlis import JlisSandbox


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


async def test_crl_is_signed_numbered_and_cached_over_http(
    client: httpx.AsyncClient, jlis: JlisSandbox, issue_card: CardFactory, clock: FakeClock
) -> None:
    first = await client.get("/crl/signing.crl")
    assert first.status_code == 200 and first.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(first.content)
    assert crl.is_signature_valid(jlis.hierarchy.signing.key.public_key())
    assert not crl.is_signature_valid(jlis.hierarchy.user_auth.key.public_key())
    assert crl.issuer == jlis.hierarchy.signing.certificate.subject
    assert (crl.last_update_utc, crl.next_update_utc) == (clock.now, clock.now.replace(day=2))
    assert _number(crl) == 1
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert modified == format_datetime(clock.now, usegmt=True)
    # nothing revoked: the same CRL again, and 304 for a client that has it
    clock.advance(minutes=10)
    assert (await client.get("/crl/signing.crl", headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get("/crl/signing.crl", headers={"If-Modified-Since": modified})).status_code == 304
    assert (await client.get("/crl/signing.crl")).content == first.content
    # a revocation makes the next fetch build CRL number 2
    card = issue_card()
    jlis.move(card.person_id, "沖縄県那覇市泉崎1-2-2")
    second = await client.get("/crl/signing.crl", headers={"If-None-Match": etag})
    assert second.status_code == 200 and second.headers["etag"] != etag
    crl2 = x509.load_der_x509_crl(second.content)
    assert (
        _number(crl2) == 2
        and len(crl2) == 1
        and crl2.is_signature_valid(jlis.hierarchy.signing.key.public_key())
    )
    # publishing builds both anew
    published = await client.post("/crl/publish")
    # (the user-auth CRL had never been asked for, so this is its first)
    assert published.json() == {"signing_crl_number": 3, "user_auth_crl_number": 1}
    assert _number(x509.load_der_x509_crl((await client.get("/crl/user-auth.crl")).content)) == 1
    assert (await client.get("/crl/other.crl")).status_code == 404


def test_an_expired_crl_is_rebuilt(jlis: JlisSandbox, clock: FakeClock) -> None:
    assert jlis.crl("signing").number == 1
    clock.advance(hours=23)
    assert jlis.crl("signing").number == 1
    clock.advance(hours=1)
    assert jlis.crl("signing").number == 2


def test_large_crl_is_signed_and_complete(jlis: JlisSandbox, tmp_path: Path) -> None:
    path = tmp_path / "large.crl"
    report = jlis.generate_large_crl(path, entries=20_000)
    crl = x509.load_der_x509_crl(path.read_bytes())
    assert len(crl) == 20_000 and report.size_bytes == path.stat().st_size
    assert crl.is_signature_valid(jlis.hierarchy.signing.key.public_key())
    assert _number(crl) == 1
    reasons = {
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason for entry in list(crl)[:8]
    }
    assert x509.ReasonFlags.affiliation_changed in reasons and len(reasons) == 4
