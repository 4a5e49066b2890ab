"""Client for KeyVault's `POST /api/verify/`: is this personal API key valid, and whose is it?

Guards live in their own modules and import their framework only there:
`keyvault_client.flask`, `keyvault_client.wsgi`, `keyvault_client.asgi`, `keyvault_client.fastapi`.
"""

from .client import AsyncKeyVaultClient, KeyVaultClient
from .errors import KeyVaultError, KeyVaultUnavailable, ServiceKeyRejected, UnexpectedAnswer
from .keys import is_well_formed
from .verification import INACTIVE_CODES, Owner, Verification

__all__ = [
    "INACTIVE_CODES", "AsyncKeyVaultClient", "KeyVaultClient", "KeyVaultError", "KeyVaultUnavailable",
    "Owner", "ServiceKeyRejected", "UnexpectedAnswer", "Verification", "is_well_formed",
]
