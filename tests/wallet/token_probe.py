"""Run in its own process (``SOFTHSM2_CONF`` in its environment): what a token holds, read with
python-pkcs11 directly — not through the wallet's code — so the tests check the wallet's claims
against the token itself. Prints JSON: per private key its id, label, protection attributes,
whether its value could be read, and the SPKI (hex) of the matching public key.

    python -m tests.wallet.token_probe MODULE LABEL PIN
"""

from __future__ import annotations

import json
import sys

import pkcs11
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from tsunagu.pkcs11 import to_cryptography_public_key

# Read here with python-pkcs11 itself, independently of the wallet's code.
FLAGS = (
    Attribute.SENSITIVE,
    Attribute.EXTRACTABLE,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE,
    Attribute.LOCAL,
    Attribute.TOKEN,
    Attribute.PRIVATE,
)


def probe(module: str, label: str, pin: str) -> list[dict[str, object]]:
    token = pkcs11.lib(module).get_token(token_label=label)
    keys: list[dict[str, object]] = []
    with token.open(user_pin=pin) as session:
        for private in list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
            key_id = bytes(private[Attribute.ID])
            readable = []
            for secret in (Attribute.VALUE, Attribute.PRIVATE_EXPONENT):
                try:
                    private[secret]
                    readable.append(secret.name)
                except (p11e.AttributeSensitive, p11e.AttributeTypeInvalid):
                    pass
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key_id)
            spki = to_cryptography_public_key(public).public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo
            )
            keys.append(
                {
                    "id": key_id.hex(),
                    "label": str(private[Attribute.LABEL]),
                    **{flag.name.lower(): bool(private[flag]) for flag in FLAGS},
                    "readable": readable,
                    "spki": spki.hex(),
                }
            )
    return keys


if __name__ == "__main__":
    print(json.dumps(probe(*sys.argv[1:4])))
