"""A FastAPI/Starlette dependency: `Depends(RequireKey(async_client, scopes=[...]))`.

The endpoint receives the Verification. A refused request raises KeyRefused, an HTTPException
with the right status and WWW-Authenticate header; call `add_problem_handler(app)` once so the
body is the problem+json answer too (without it FastAPI answers `{"detail": ...}`).
"""

# No `from __future__ import annotations`: FastAPI reads RequireKey.__call__'s annotations at
# run time, and a callable instance gives it no module globals to resolve strings in.
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .client import AsyncKeyVaultClient
from .guard import Refusal, check_async, find_key, needs_body, require_client, scope_tuple
from .verification import Verification


class KeyRefused(HTTPException):
    """The request presented no active key (401/403), or KeyVault could not be asked (503)."""

    def __init__(self, refusal: Refusal):
        headers = {name: value for name, value in refusal.headers if name != "Content-Type"}
        super().__init__(refusal.status, "API key refused", headers=headers)
        self.refusal = refusal


class RequireKey:
    """A dependency that returns the Verification of an active key holding `scopes`."""

    def __init__(self, client: AsyncKeyVaultClient, scopes: Iterable[str] | None = None, *,
                 realm: str = "api", cache_seconds: float | None = None):
        require_client(client, AsyncKeyVaultClient, "RequireKey", cache_seconds)
        self.client = client
        self.scopes = scope_tuple(scopes)
        self.realm = realm

    async def __call__(self, request: Request) -> Verification:
        authorization = request.headers.get("authorization")
        content_type = request.headers.get("content-type")
        body = await request.body() if needs_body(authorization, content_type) else b""
        presented = find_key(authorization, content_type, body,
                             request.scope.get("query_string", b"").decode("latin-1"))
        result = await check_async(self.client, presented, self.scopes, self.realm,
                                   request.client.host if request.client else None)
        if isinstance(result, Refusal):
            raise KeyRefused(result)
        return result


async def problem_response(request: Request, refused: Exception) -> Response:
    """The exception handler that answers KeyRefused with its problem+json body."""
    assert isinstance(refused, KeyRefused)
    refusal = refused.refusal
    return Response(refusal.body, status_code=refusal.status, headers=dict(refusal.headers))


def add_problem_handler(app) -> None:
    """Answer KeyRefused as problem+json in this FastAPI/Starlette app."""
    app.add_exception_handler(KeyRefused, problem_response)
