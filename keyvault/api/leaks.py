"""POST /api/secret_scanning/: the leaked-key intake, on the API blueprint. A report is
signed (signatures), parsed (leak_schemas), and its keys judged and revoked (service.leaks)."""

from __future__ import annotations

import hashlib

from flask import current_app, request
from werkzeug.exceptions import NotFound, UnsupportedMediaType

from .. import metrics, service
from ..http.context import origin
from ..http.credentials import parse_json
from ..http.problems import problem, respond
from . import signatures
from .leak_schemas import TokenLabels, parse_report
from .views import bp, no_store


@bp.post("/secret_scanning/")
def secret_scanning():
    """A signed report of tokens found in public (GitHub's secret scanning partner program):
    ours are revoked, and each token is labelled. Off (404) unless the operator configured the
    keys that sign reports; nothing in the body is read before its signature is checked."""
    if not current_app.config["KEYVAULT_SECRET_SCANNING_KEYS"]:
        raise NotFound()
    body = request.get_data(cache=True)  # the raw bytes that were signed; 413 past the limit
    try:
        signatures.check(current_app, body, request.headers.get(signatures.IDENTIFIER_HEADER),
                         request.headers.get(signatures.SIGNATURE_HEADER))
    except signatures.SignatureRefused as refused:
        return respond(problem(401, "Unauthorized", str(refused),
                               {"WWW-Authenticate": signatures.CHALLENGE}))
    except signatures.KeysUnavailable:
        return respond(problem(
            503, "Service Unavailable", "The keys that sign reports cannot be read right now; "
            "nothing was decided. Try again later.",
            {"Retry-After": str(signatures.RETRY_AFTER_SECONDS)}))
    if not request.is_json:
        raise UnsupportedMediaType("Send the report as JSON, with the header Content-Type: "
                                   "application/json.")
    found = parse_report(parse_json(body))
    ours = service.report_found_tokens(
        [service.FoundToken(m.token, m.type, m.url, m.source) for m in found], origin())
    labels = []
    for match, true_positive in zip(found, ours, strict=True):
        label = "true_positive" if true_positive else "false_positive"
        metrics.record_reported_token(label)
        labels.append({"token_hash": hashlib.sha256(match.token.encode()).hexdigest(),
                       "token_type": match.type, "label": label})
    return no_store(current_app.response_class(TokenLabels.dump_json(labels),
                                                mimetype="application/json"))
