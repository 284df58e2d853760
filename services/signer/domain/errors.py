"""Why the signer refuses a request (mapped once to problem+json by the chassis)."""

from tsunagu.errors import Conflict, DomainError, Forbidden, NotFound, PayloadTooLarge


class UnknownKey(NotFound):
    code = "unknown-key"
    title = "No such signing key"


class NoActiveKey(NotFound):
    code = "no-active-key"
    title = "No active key for this purpose"


class KeyNotActive(Conflict):
    code = "key-not-active"
    title = "Only an active key signs"


class KeyNotAllowed(Forbidden):
    code = "key-not-allowed"
    title = "The caller may not use this key"


class AlgorithmMismatch(DomainError):
    code = "algorithm-mismatch"
    title = "The algorithm does not match the key"
    status = 422


class DigestNotAllowed(DomainError):
    code = "digest-not-allowed"
    title = "This algorithm signs data, not a digest"
    status = 422


class InvalidDigest(DomainError):
    code = "invalid-digest"
    title = "A digest must be 32 bytes of SHA-256"
    status = 422


class InvalidKeySpec(DomainError):
    code = "invalid-key-spec"
    title = "This key cannot be created"
    status = 422


class InvalidTransition(Conflict):
    code = "invalid-key-transition"
    title = "The key is not in a state that allows this"


class GracePeriodRunning(Conflict):
    code = "grace-period-running"
    title = "A retired key is kept until its grace period ends"


class ItemTooLarge(PayloadTooLarge):
    code = "item-too-large"
    title = "A payload to sign is larger than allowed"


class BatchTooLarge(PayloadTooLarge):
    code = "batch-too-large"
    title = "Too many items in one batch"
