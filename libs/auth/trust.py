"""The public keys of the services we accept calls from (the trust file)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from tsunagu.auth.keys import ALGORITHM


@dataclass(frozen=True)
class TrustedKey:
    """One verification key and the service it belongs to."""

    service: str
    kid: str
    key: ECKey


def _import_jwk(service: str, jwk: Any) -> TrustedKey:
    where = f"trust store, service {service!r}"
    if not isinstance(jwk, Mapping):
        raise ValueError(f"{where}: a key must be a JWK object")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError(f"{where}: only EC P-256 keys are supported")
    if "d" in jwk:
        # A private key in a file every service reads is a leak, not a configuration choice.
        raise ValueError(f"{where}: the trust file must hold public keys only")
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        raise ValueError(f"{where}: keys must be for ES256 signatures")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise ValueError(f"{where}: x and y must be base64url strings")
    try:
        key = ECKey.import_key({"kty": "EC", "crv": "P-256", "x": x, "y": y})
        # Materialise now so an off-curve or truncated point fails at start-up, not on first use.
        if not isinstance(key.public_key, ec.EllipticCurvePublicKey):
            raise ValueError("not an EC public key")
    except (ValueError, TypeError, JoseError) as exc:
        raise ValueError(f"{where}: invalid EC public key") from exc
    kid = jwk.get("kid") or key.thumbprint()
    if not isinstance(kid, str):
        raise ValueError(f"{where}: kid must be a string")
    return TrustedKey(service=service, kid=kid, key=key)


class TrustStore:
    """Maps key ids to the service that owns them; several keys per service allow rotation."""

    def __init__(self, keys: Mapping[str, TrustedKey]) -> None:
        self._by_kid = dict(keys)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustStore:
        """Build from ``{"services": {"<name>": {"keys": [<public JWK>, ...]}}}``."""
        services = data.get("services")
        if not isinstance(services, Mapping):
            raise ValueError("trust store: 'services' must be an object")
        by_kid: dict[str, TrustedKey] = {}
        for name, entry in services.items():
            keys = entry.get("keys") if isinstance(entry, Mapping) else None
            if not isinstance(name, str) or not isinstance(keys, list):
                raise ValueError(f"trust store: service {name!r} needs a 'keys' list")
            for jwk in keys:
                trusted = _import_jwk(name, jwk)
                if trusted.kid in by_kid:
                    # One kid naming two services would make the owner of a signature ambiguous.
                    raise ValueError(f"trust store: duplicate kid {trusted.kid!r}")
                by_kid[trusted.kid] = trusted
        return cls(by_kid)

    @classmethod
    def from_file(cls, path: Path | str) -> TrustStore:
        """Load a trust file as written by :func:`tsunagu.auth.keys.provision_service_credentials`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def key_for(self, kid: str) -> TrustedKey | None:
        """The trusted key with this ``kid``, or ``None``."""
        return self._by_kid.get(kid)

    @property
    def services(self) -> frozenset[str]:
        """The names of all services that have at least one trusted key."""
        return frozenset(k.service for k in self._by_kid.values())
