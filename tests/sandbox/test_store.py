"""State survives a restart: the hierarchy, cards and their keys, revocations, links, CRL numbers."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.sandbox.checks import load
from tests.sandbox.conftest import CardFactory, FakeClock
from tsunagu.sandbox.jlis import JlisSandbox


def test_a_new_sandbox_on_the_same_state_dir_continues(
    state_dir: Path, jlis: JlisSandbox, issue_card: CardFactory, clock: FakeClock
) -> None:
    card = issue_card()
    jlis.subscribe("http://jlis-sync/push")
    moved = jlis.move(card.person_id, "兵庫県神戸市中央区加納町6-5-1")
    first_crl = jlis.crl("signing")
    state = json.loads((state_dir / "state.json").read_text())
    assert card.signing_serial in state["certificates"]

    restarted = JlisSandbox(state_dir, clock)
    assert restarted.certificate_pem("root") == jlis.certificate_pem("root")
    view = restarted.card(card.card_id)
    assert (view.signing_serial, view.auth_serial) == (moved.new_serial, card.auth_serial)
    old = restarted.store.certificate(card.signing_serial)
    assert old is not None and (old.reason, old.replaced_by) == ("affiliationChanged", moved.new_serial)
    assert restarted.crl("signing").der == first_crl.der  # served from the file, not rebuilt
    assert [d.notification_id for d in restarted.store.state.deliveries] == [
        d.notification_id for d in jlis.store.state.deliveries
    ]
    # the card key was read back from its file
    signature, record = restarted.sign_with_card(card.card_id, b"challenge")
    public_key = load(record.pem).public_key()

    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, b"challenge", padding.PKCS1v15(), hashes.SHA256())
    # and the CRL numbering continues
    restarted.lose(card.person_id)
    crl = x509.load_der_x509_crl(restarted.crl("signing").der)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == first_crl.number + 1
    assert len(crl) == 2


def test_keys_are_private_files(state_dir: Path, issue_card: CardFactory) -> None:
    issue_card()
    keys = list((state_dir / "cards").glob("*.key")) + list((state_dir / "pki").glob("*.key"))
    assert len(keys) == 2 + 6
    assert {key.stat().st_mode & 0o777 for key in keys} == {0o600}


def test_in_memory_sandbox_writes_nothing(tmp_path: Path, clock: FakeClock, jlis: JlisSandbox) -> None:
    memory = JlisSandbox(None, clock, hierarchy=jlis.hierarchy)
    card = memory.create_card("メモリ 太郎", "どこか", date(2000, 1, 1), "1")
    memory.move(card.person_id, "ほか")
    assert memory.crl("signing").number == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "jlis"]  # only the fixture's directory
