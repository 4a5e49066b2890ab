"""What can go wrong when asking KeyVault: every one of these means "no answer", never "valid"."""

from __future__ import annotations


class KeyVaultError(Exception):
    """KeyVault gave no usable answer; treat the key as not verified (fail closed)."""


class KeyVaultUnavailable(KeyVaultError):
    """KeyVault could not be reached, was slower than the timeout, or answered 5xx (or 429)."""


class ServiceKeyRejected(KeyVaultError):
    """KeyVault refused this service's own key: 401 (unknown, revoked, expired) or 403 (it lacks
    the `key:verify` scope). A configuration problem of the service, not of the presented key."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"KeyVault refused the service key ({status}): {detail}")
        self.status = status
        self.detail = detail


class UnexpectedAnswer(KeyVaultError):
    """KeyVault answered something outside its contract (a 400, a redirect, a body of the wrong
    shape): the answer is not trusted."""
