"""Which calling service may use which internal operation: deny unless granted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tsunagu.auth.errors import CallerNotAllowed
from tsunagu.auth.tokens import ServicePrincipal


class AccessPolicy:
    """Permission name (``"signer:sign"``) → the service names allowed to use it.

    There are no wildcards: every grant names its callers, so a new service gets nothing until
    someone decides it should.
    """

    def __init__(self, grants: Mapping[str, Iterable[str]] | None = None) -> None:
        self._grants: dict[str, frozenset[str]] = {}
        for permission, callers in (grants or {}).items():
            if isinstance(callers, str):
                # "ca" would otherwise become the grants {"c", "a"}.
                raise TypeError(f"grants for {permission!r} must be a list of names, not a string")
            self._grants[permission] = frozenset(callers)

    @property
    def grants(self) -> Mapping[str, frozenset[str]]:
        """A copy of the grants."""
        return dict(self._grants)

    def allows(self, caller: str, permission: str) -> bool:
        """Whether ``caller`` holds ``permission``."""
        return caller in self._grants.get(permission, frozenset())

    def check(self, principal: ServicePrincipal, permission: str) -> None:
        """Raise :class:`CallerNotAllowed` unless the principal holds ``permission``."""
        if not self.allows(principal.name, permission):
            raise CallerNotAllowed(f"service {principal.name!r} lacks permission {permission!r}")

    def merge(self, other: AccessPolicy | Mapping[str, Iterable[str]]) -> AccessPolicy:
        """A new policy with the grants of both (e.g. built-in policy + ``auth.extra_grants``)."""
        extra = other if isinstance(other, AccessPolicy) else AccessPolicy(other)
        merged = dict(self._grants)
        for permission, callers in extra._grants.items():
            merged[permission] = merged.get(permission, frozenset()) | callers
        return AccessPolicy(merged)
