"""GET /api/forward_auth/: the verify pipeline for gateways (nginx auth_request, Traefik, Caddy),
answering in headers, on the API blueprint.

Gateways forward the client's own URL and headers, so nothing the client controls may weaken
the check: the key is read from the Authorization header only (never from the forwarded query
string), and the scopes required are the union of the `scopes` query parameter and the
X-KeyVault-Required-Scopes header, so a client's `?scopes=` can add to what the gateway demands
but never replace it.

A gateway in front of a registered service says which one (`X-KeyVault-Service: <audience>`)
and authenticates as it with one of the service's own verify keys
(`X-KeyVault-Service-Key`): the client's key is then judged as verify judges it for that
service (restrictions, its scopes only, the e-mail rule). Without them the gateway is no
service, and a key restricted to services is refused there (`wrong_service`), as at verify.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from flask import Response, request

from .. import metrics, service
from ..http import gate
from ..http.context import origin
from ..http.credentials import WrongScheme, bearer_value
from ..http.problems import problem, respond, unauthorized
from ..service.scopes import VERIFY
from .limits import header_cost
from .views import bp, no_store

# RFC 6750 scope-token characters: printable ASCII but space, '"' and '\\'.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_SCOPE_SEPARATORS = re.compile(r"[ ,]+")
NO_KEY = "This endpoint needs an API key in the Authorization header."
SERVICE = "X-KeyVault-Service"
SERVICE_KEY = "X-KeyVault-Service-Key"


def _scope_list(text: str) -> list[str]:
    """Scopes separated by spaces or commas, nothing else: a tab or another control character
    is not a separator (str.split would make it one), so it is refused as part of a name."""
    return [scope for scope in _SCOPE_SEPARATORS.split(text) if scope]


def _as_service(audience: str, credential, required: list[str]) -> gate.Admission | Response:
    """The gateway's service key admitted (key:verify), the client's key judged at its service;
    a gateway that names a service without its key (401), or with another service's key
    (403), is refused: never a pass."""
    if not request.headers.get(SERVICE_KEY):
        return respond(unauthorized(f"{SERVICE} needs the service's own verify key in "
                                    f"{SERVICE_KEY}.", key_presented=False))
    gateway = bearer_value("Bearer " + request.headers[SERVICE_KEY])
    if credential is None or isinstance(credential, WrongScheme):
        return respond(unauthorized(NO_KEY if credential is None else credential.detail,
                                    key_presented=False))
    client = origin()  # the gateway's forwarded client (KEYVAULT_TRUSTED_PROXIES): the key's user
    cost = header_cost(request.headers.get("X-KeyVault-Cost"))
    admission = gate.admit(gateway, [VERIFY], client, subject=(credential, required, cost),
                           door="verify", presented="caller", subject_ip=client.ip_address)
    if admission.refusal is None and admission.caller.service_audience != audience:
        return respond(problem(403, "Forbidden", f"{SERVICE_KEY} is not a verify key of the "
                                                 f"service “{audience}”."))
    return admission


@bp.get("/forward_auth/")
def forward_auth():
    """The same check as verify, for gateways: answers in headers (see the module)."""
    from_query = _scope_list(request.args.get("scopes", ""))
    from_header = _scope_list(request.headers.get("X-KeyVault-Required-Scopes", ""))
    header = request.headers.get("Authorization")
    credential = bearer_value(header) if header is not None else None
    bad = [scope for scope in (*from_query, *from_header) if not SCOPE_TOKEN.fullmatch(scope)]
    if bad and credential is not None:
        raise service.InvalidInput(f"Not a scope name: {bad[0]!r}.", "scopes")
    required = list(dict.fromkeys([*from_header, *from_query]))
    audience = request.headers.get(SERVICE)
    if audience is None:
        admission = gate.admit(credential, required, origin(), door="verify", missing=NO_KEY,
                               presented="gateway",
                               cost=header_cost(request.headers.get("X-KeyVault-Cost")))
        verdict = admission.caller
        refused = admission.refusal
    else:
        admission = _as_service(audience, credential, required)
        if isinstance(admission, Response):
            return admission
        verdict = admission.subject
        refused = admission.refusal or gate.refusal(verdict, required)
    metrics.record_verify("forward_auth", verdict.code if verdict else "no_key")
    if refused is not None:
        return respond(refused)
    response = Response(status=200, headers=list(admission.rate_limit_headers()))
    response.headers.update({
        "X-KeyVault-Owner-Type": verdict.owner_type,
        "X-KeyVault-Key-Id": verdict.public_id,
        "X-KeyVault-Scopes": " ".join(verdict.scopes),
    })
    if verdict.audience is not None:
        response.headers["X-KeyVault-Audience"] = verdict.audience
    if verdict.service_account_id is not None:
        response.headers.update({
            "X-KeyVault-Service-Account-Id": verdict.service_account_id,
            "X-KeyVault-Organization-Id": verdict.organization_id,
        })
    elif verdict.user_id is not None:
        response.headers["X-KeyVault-User-Id"] = str(verdict.user_id)
        if verdict.shows_email:  # header values are Latin-1: an address travels percent-encoded
            response.headers["X-KeyVault-User-Email"] = quote(verdict.user_email,
                                                              safe="@+!#$&'*=?^`{|}~")
    return no_store(response)


forward_auth.required_scope = None
