"""The CA hierarchy as the service holds it in memory: root, issuing CAs, OCSP responders.

The keys are in the signer; an :class:`Authority` knows its key id and algorithm and carries its
certificate. The newest issuing CA (state ``current``) issues; older ones stay ``active`` — their
CRLs and OCSP answers are still signed — so a rollover never breaks an existing chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.ca.domain.errors import CaNotInitialised
from tsunagu.ca.domain.profiles import Issuer


@dataclass(frozen=True)
class Authority:
    id: str
    kind: str  # root | issuing | ocsp
    parent_id: str | None
    key_id: str
    algorithm: str
    certificate: x509.Certificate
    state: str
    revocation_count: int = 0

    @property
    def issuer(self) -> Issuer:
        return Issuer(self.id, self.certificate)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode()


@dataclass
class Hierarchy:
    """Every authority by id, plus the lookups the issuing and OCSP paths need."""

    authorities: dict[str, Authority] = field(default_factory=dict)

    @classmethod
    def of(cls, authorities: Iterable[Authority]) -> Hierarchy:
        return cls({authority.id: authority for authority in authorities})

    @property
    def initialised(self) -> bool:
        return any(a.kind == "issuing" and a.state == "current" for a in self.authorities.values())

    def get(self, authority_id: str) -> Authority | None:
        return self.authorities.get(authority_id)

    def root(self) -> Authority:
        roots = [a for a in self.authorities.values() if a.kind == "root" and a.state != "retired"]
        if not roots:
            raise CaNotInitialised("no root CA")
        return roots[-1]

    def current_issuing(self) -> Authority:
        for authority in self.authorities.values():
            if authority.kind == "issuing" and authority.state == "current":
                return authority
        raise CaNotInitialised("no issuing CA")

    def issuing(self) -> list[Authority]:
        return [a for a in self.authorities.values() if a.kind == "issuing" and a.state != "retired"]

    def crl_issuers(self) -> list[Authority]:
        """Every CA that publishes a CRL: the root (for its issuing CAs) and each issuing CA."""
        return [
            a for a in self.authorities.values() if a.kind in ("root", "issuing") and a.state != "retired"
        ]

    def ocsp_responder(self, issuing_id: str) -> Authority | None:
        for authority in self.authorities.values():
            if (
                authority.kind == "ocsp"
                and authority.parent_id == issuing_id
                and authority.state != "retired"
            ):
                return authority
        return None

    def chain(self, issuer_id: str) -> list[Authority]:
        """The issuer and its parents up to the root, issuer first."""
        chain: list[Authority] = []
        current = self.authorities.get(issuer_id)
        while current is not None:
            chain.append(current)
            current = self.authorities.get(current.parent_id) if current.parent_id else None
        return chain

    def next_number(self, kind: str) -> int:
        return 1 + sum(1 for a in self.authorities.values() if a.kind == kind)
