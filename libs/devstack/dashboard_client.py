"""The citizen dashboard's registration at the dev stack's idp.

The dashboard (served by consent at ``/dashboard``) is an ordinary OpenID Connect relying party of
the idp, registered by the operator in a platform tenant with ``user_number_legal_basis`` (the ID
token's ``user_number`` says whose dashboard it is) and ``private_key_jwt`` with a key kept in the
credentials folder. The first start registers it; later starts reuse the registration while the
idp still knows the client.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key

OPERATOR = "operator"
TENANT = {"id": "tsunagu", "name_ja": "Tsunagu 運営", "name_en": "Tsunagu operator"}
LEGAL_BASIS = "本人による自己の同意状況の確認 (dev stack)"


def _key(path: Path) -> ECKey:
    if not path.exists():
        private = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
    key = ECKey.import_key(path.read_bytes())
    key.ensure_kid()
    return key


async def ensure_dashboard_client(idp_url: str, consent_url: str, credentials_dir: Path) -> dict[str, str]:
    """Register (once) the dashboard at the idp; the consent service's ``DASHBOARD__*`` settings."""
    key_file = credentials_dir / "dashboard-client.key.pem"
    saved = credentials_dir / "dashboard-client.json"
    redirect_uri = f"{consent_url}/dashboard/callback"
    key = _key(key_file)
    operator = ServiceTokenAuth(
        ServiceTokenIssuer(OPERATOR, load_private_key(credentials_dir / f"{OPERATOR}.key.pem")), "idp"
    )
    async with httpx.AsyncClient(base_url=idp_url, auth=operator, timeout=30) as idp:
        known = json.loads(saved.read_text()) if saved.exists() else {}
        client_id = known.get("client_id") if known.get("redirect_uri") == redirect_uri else None
        if client_id is None or (await idp.get(f"/admin/v1/clients/{client_id}")).status_code != 200:
            tenant = await idp.post("/admin/v1/tenants", json=TENANT)
            if tenant.status_code not in (201, 409):
                tenant.raise_for_status()
            registered = await idp.post(
                f"/admin/v1/tenants/{TENANT['id']}/clients",
                json={
                    "redirect_uris": [redirect_uri],
                    "client_name": "Tsunagu consent dashboard",
                    "client_name#ja": "Tsunagu 同意の管理",
                    "client_name#en": "Tsunagu consent dashboard",
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": {"keys": [key.as_dict(private=False)]},
                    "user_number_legal_basis": LEGAL_BASIS,
                },
            )
            registered.raise_for_status()
            client_id = registered.json()["client_id"]
            saved.write_text(json.dumps({"client_id": client_id, "redirect_uri": redirect_uri}))
    return {
        "DASHBOARD__ISSUER": idp_url,
        "DASHBOARD__CLIENT_ID": str(client_id),
        "DASHBOARD__CLIENT_KEY_FILE": str(key_file.resolve()),
        "DASHBOARD__REDIRECT_URI": redirect_uri,
    }
