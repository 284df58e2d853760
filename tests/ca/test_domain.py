"""Fast domain rules of the CA: the user identification number, the key policy, signed requests."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tsunagu.ca.domain.csr_rfc2986 import check_key_policy, csr_public_key, spki_sha256
from tsunagu.ca.domain.errors import (
    CsrSignatureInvalid,
    InvalidCsr,
    InvalidSignedRequest,
    KeyPolicyViolation,
    SignedRequestStale,
)
from tsunagu.ca.domain.signed_request_jws import read_header, verify_request
from tsunagu.ca.domain.user_number import damm_digit, is_valid_user_number, new_user_number
from tsunagu.wallet import SoftwareKey
from tsunagu.wallet.keys import request_claims


def test_user_numbers_are_sixteen_digits_with_a_damm_check():
    numbers = [new_user_number() for _ in range(2000)]
    assert all(is_valid_user_number(n) and len(n) == 16 and n[0] != "0" for n in numbers)
    assert len(set(numbers)) == len(numbers)
    # not sequential: neighbours in issue order are far apart
    values = [int(n[:15]) for n in numbers]
    assert min(abs(a - b) for a, b in itertools.pairwise(values)) > 1000


def test_the_check_digit_catches_every_single_digit_error_and_adjacent_swap():
    number = new_user_number(random.Random(7).randrange)
    for position in range(16):
        for digit in "0123456789":
            if digit != number[position]:
                typo = number[:position] + digit + number[position + 1 :]
                assert not is_valid_user_number(typo)
    for position in range(15):
        if number[position] != number[position + 1]:
            swapped = number[:position] + number[position + 1] + number[position] + number[position + 2 :]
            assert not is_valid_user_number(swapped)
    assert damm_digit("572") == "4"  # the algorithm's published example


def test_key_policy():
    check_key_policy(ec.generate_private_key(ec.SECP256R1()).public_key())
    check_key_policy(ec.generate_private_key(ec.SECP384R1()).public_key())
    check_key_policy(rsa.generate_private_key(65537, 2048).public_key())
    for refused in (
        ec.generate_private_key(ec.SECP256K1()).public_key(),
        rsa.generate_private_key(65537, 1024).public_key(),
        rsa.generate_private_key(3, 2048).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
    ):
        with pytest.raises(KeyPolicyViolation):
            check_key_policy(refused)


def test_csr_proof_of_possession():
    key = SoftwareKey()
    pem = key.csr_pem()
    assert spki_sha256(csr_public_key(pem.encode())) == spki_sha256(key.private_key.public_key())
    with pytest.raises(InvalidCsr):
        csr_public_key(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----")
    with pytest.raises(InvalidCsr):
        csr_public_key(b"x" * 20_000)
    lines = pem.splitlines()
    body = "".join(lines[1:-1])
    tampered = body[:-8] + ("A" if body[-8] != "A" else "B") + body[-7:]
    try:
        result = csr_public_key(f"{lines[0]}\n{tampered}\n{lines[-1]}".encode())
    except (CsrSignatureInvalid, InvalidCsr):
        result = None
    assert result is None


def test_signed_requests():
    key = SoftwareKey()
    now = datetime.now(UTC)
    token = key.sign_jws(request_claims(op="x"), kid="ABC123")
    request = read_header(token)
    assert request.kid == "abc123" and request.algorithm == "ES256"
    claims = verify_request(request, key.private_key.public_key(), now=now, max_age=timedelta(minutes=5))
    assert claims["op"] == "x"
    with pytest.raises(InvalidSignedRequest):
        verify_request(request, SoftwareKey().private_key.public_key(), now=now, max_age=timedelta(minutes=5))
    with pytest.raises(InvalidSignedRequest):  # alg must match the certificate's key type
        verify_request(
            request, rsa.generate_private_key(65537, 2048).public_key(), now=now, max_age=timedelta(minutes=5)
        )
    with pytest.raises(SignedRequestStale):
        verify_request(
            request, key.private_key.public_key(), now=now + timedelta(hours=1), max_age=timedelta(minutes=5)
        )
    for bad in ("", "a.b", "a.b.c", "e30.e30.", token.replace(".", "", 1)):
        with pytest.raises(InvalidSignedRequest):
            verify_request(
                read_header(bad), key.private_key.public_key(), now=now, max_age=timedelta(minutes=5)
            )
