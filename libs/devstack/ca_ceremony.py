"""The CA key ceremony of the dev stack: CA keys made inside the HSM, then the hierarchy.

In production an operator runs the same two steps by hand (docs/operations.md): create and
activate the ``ca-root``, ``ca-issuing`` and ``ocsp`` keys in the signer, then ask the CA to build
its hierarchy from them. Here it runs once, the first time the stack starts; later starts find the
hierarchy and do nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.clients.signer import SignerClient

OPERATOR = "operator"


async def initialise_ca(
    signer_url: str, ca_url: str, credentials_dir: Path, algorithm: str = "ES256"
) -> list[Any]:
    """Return the CA's authorities, creating keys and hierarchy if there are none yet."""
    issuer = ServiceTokenIssuer(OPERATOR, load_private_key(credentials_dir / f"{OPERATOR}.key.pem"))
    async with httpx.AsyncClient(base_url=ca_url, auth=ServiceTokenAuth(issuer, "ca"), timeout=120) as ca:
        existing = (await ca.get("/admin/v1/authorities")).raise_for_status().json()
        if existing:
            return list(existing)
        signer = SignerClient(signer_url, issuer)
        try:
            keys = {}
            for purpose in ("ca-root", "ca-issuing", "ocsp"):
                created = await signer.create_key(purpose, algorithm)
                keys[purpose] = (await signer.transition(created["kid"], "activate"))["kid"]
        finally:
            await signer.aclose()
        response = await ca.post(
            "/admin/v1/hierarchy",
            json={
                "root_key_id": keys["ca-root"],
                "issuing_key_id": keys["ca-issuing"],
                "ocsp_key_id": keys["ocsp"],
            },
        )
        if response.is_error:
            raise RuntimeError(f"the CA refused its hierarchy: {response.status_code} {response.text[:2000]}")
        return list(response.json())


# The idp signs ID tokens and access tokens ES256 by default and RS256 for the clients that
# register ``id_token_signed_response_alg=RS256``: one active key of each.
ID_TOKEN_KEYS = (("id-token", "ES256"), ("id-token", "RS256"))
# consent countersigns every recorded decision (the citizen's receipt) with a ``receipt`` key.
RECEIPT_KEYS = (("receipt", "ES256"),)
# The broker's key for provider requests and webhooks.
EXCHANGE_KEYS = (("exchange", "ES256"),)


async def ensure_active_keys(
    signer_url: str,
    credentials_dir: Path,
    purposes: tuple[tuple[str, str], ...] = ID_TOKEN_KEYS + RECEIPT_KEYS + EXCHANGE_KEYS,
) -> dict[tuple[str, str], str]:
    """An active signer key for each (purpose, algorithm) that has none: the idp's ID-token keys,
    consent's receipt key and the like. Returns (purpose, algorithm) → active key id."""
    issuer = ServiceTokenIssuer(OPERATOR, load_private_key(credentials_dir / f"{OPERATOR}.key.pem"))
    signer = SignerClient(signer_url, issuer)
    try:
        active: dict[tuple[str, str], str] = {}
        for purpose, algorithm in purposes:
            keys = await signer.keys(purpose=purpose)
            found = [k for k in keys if k["state"] == "active" and k["algorithm"] == algorithm]
            if found:
                active[purpose, algorithm] = found[0]["kid"]
                continue
            created = await signer.create_key(purpose, algorithm)
            active[purpose, algorithm] = (await signer.transition(created["kid"], "activate"))["kid"]
        return active
    finally:
        await signer.aclose()
