"""A Flask view decorator: `@require_key(client, scopes=[...])`.

The view runs only for an active key holding the scopes; its Verification is then on
`flask.g.keyvault_verification`. Otherwise the view is not called and the client of the app
hears 401/403 problem+json (503 when KeyVault cannot be asked).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from flask import current_app, g, request

from .client import KeyVaultClient
from .guard import Refusal, check, find_key, needs_body, require_client, scope_tuple

G_ATTRIBUTE = "keyvault_verification"


def require_key(client: KeyVaultClient, scopes: Iterable[str] | None = None, *,
                realm: str = "api", cache_seconds: float | None = None,
                ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a view so that it runs only for a request presenting an active key."""
    require_client(client, KeyVaultClient, "require_key", cache_seconds)
    needed = scope_tuple(scopes)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            authorization = request.headers.get("Authorization")
            body = (request.get_data(cache=True)
                    if needs_body(authorization, request.content_type) else b"")
            presented = find_key(authorization, request.content_type, body,
                                 request.query_string.decode("latin-1"))
            result = check(client, presented, needed, realm, request.remote_addr)
            if isinstance(result, Refusal):
                return current_app.response_class(result.body, status=result.status,
                                                  headers=list(result.headers))
            setattr(g, G_ATTRIBUTE, result)
            return view(*args, **kwargs)

        return guarded

    return decorate

