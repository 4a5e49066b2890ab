"""Property-based fuzzing of /api/ against its own OpenAPI document (schemathesis 4).

Every operation in /api/schema/ gets generated requests, sent with a valid full-access key; the
checks are schemathesis' defaults: no 5xx, and every status, header, content type and body
matches the document (errors included: problem+json, Allow on 405, WWW-Authenticate on 401).
The last test sends a few cases per operation over HTTP to a real `keyvault serve`.
"""

from __future__ import annotations

import io

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation

from keyvault import create_app, service
from keyvault.api.signatures import HEADER_MAX
from tests.conftest import TEST_PEPPER, TEST_SECRET_KEY
from tests.test_secret_scanning import Signer, document

# The document depends on configuration only (scopes, prefix, limits), not on the database, so it
# is read once at import from an app that never connects; requests go to a per-test app below.
_DOCUMENT_APP = create_app({
    "TESTING": True,
    "SQLALCHEMY_DATABASE_URI": "sqlite://",
    "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY,
    "KEYVAULT_KEY_PEPPER": TEST_PEPPER,
})
schema = schemathesis.openapi.from_wsgi("/api/schema/", _DOCUMENT_APP)
# The same document, not bound to the app: its cases go over HTTP to a real server.
live_schema = schemathesis.openapi.from_dict(_DOCUMENT_APP.test_client().get("/api/schema/").json)


class Target:
    """The app under test, a full-access key to call it with, and a key of the same owner that
    generated requests may edit, roll or revoke."""

    def __init__(self, app, value: str, other_key_id: str):
        self.app = app
        self.headers = {"Authorization": f"Bearer {value}"}
        self.other_key_id = other_key_id


class TrustedReporter:
    """WSGI middleware that signs what the fuzzer sends to the leaked-key intake, as a trusted
    reporter (GitHub) would, so generated reports reach the code behind the signature check.

    Only a case that carries both signature headers, each within the document's limits, is
    signed (its header values replaced by a real signature of the exact body bytes): a case
    that leaves a header out or breaks its schema is passed on as it is, and must be refused.
    """

    HEADERS = ("HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER", "HTTP_GITHUB_PUBLIC_KEY_SIGNATURE")

    def __init__(self, wsgi_app, signer: Signer):
        self.wsgi_app, self.signer = wsgi_app, signer

    def __call__(self, environ, start_response):
        values = [environ.get(name) for name in self.HEADERS]
        if (environ["PATH_INFO"] == "/api/secret_scanning/"
                and all(v is not None and len(v) <= HEADER_MAX for v in values)):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ[self.HEADERS[0]] = self.signer.identifier
            environ[self.HEADERS[1]] = self.signer.signature(body)
        return self.wsgi_app(environ, start_response)


@pytest.fixture
def target(make_app, tmp_path) -> Target:
    signer = Signer()
    keys = tmp_path / "public_keys.json"
    keys.write_bytes(document(signer))
    app = make_app(KEYVAULT_SECRET_SCANNING_KEYS=str(keys))
    app.wsgi_app = TrustedReporter(app.wsgi_app, signer)
    with app.app_context():  # released before the requests: each gets its own context
        origin = service.Origin("127.0.0.1", "pytest")
        owner = service.sign_up("fuzz@example.com", "correct horse battery", origin)
        _, value = service.create_key(owner, label="fuzzer", scopes=["*"], origin=origin)
        other, _ = service.create_key(owner, label="fuzzed", scopes=["*"], origin=origin)
        return Target(app, value, other.public_id)


def schema_cannot_judge(case) -> bool:
    """True when the request holds a value whose validity no schema can state: an opaque cursor
    (only ones the API issued decode), an expiry (it must lie in the future) or an invitation's
    token (only ones mailed by this instance are signed), the services and organisations a
    key is restricted to (only ids that exist on the instance), or an address or range
    (`allowed_ips`, `client_ip`: a pattern can name the characters, not that 999.0.0.1 or
    "1::2::3" is no address), or a webhook's URL (it must resolve, now, to public addresses:
    the example's host does not resolve on a machine without DNS)."""
    body = case.body if isinstance(case.body, dict) else {}
    return ("cursor" in (case.query or {}) or body.get("expires_at") is not None
            or "invitation_token" in body or body.get("services") is not None
            or body.get("organizations") is not None or bool(body.get("allowed_ips"))
            or body.get("client_ip") is not None
            or (case.path == "/api/webhooks/" and body.get("url") is not None))


def bounded(case):
    """The revocation stream stays open until its `timeout`: a call that would hold it open
    longer than a second gets 0 s, so it answers its opening and ends. Values the document
    refuses (negative, not a number) are kept: their 400 is part of what is tested."""
    if case.path == "/api/verify/events" and isinstance(case.query, dict | None):
        query = dict(case.query or {})
        wanted = query.get("timeout")
        if isinstance(wanted, str) and wanted.isascii() and wanted.isdigit():
            wanted = int(wanted)  # the document's example, as the query string carries it
        if wanted is None or (isinstance(wanted, int) and not isinstance(wanted, bool)
                              and wanted > 1):
            query["timeout"] = 0
        case.query = query
    return case


# The document's own examples are sent by test_document_examples_are_answered_as_documented:
# schemathesis cannot combine them with @schema.given's extra argument.
GENERATED = [phase for phase in Phase if phase is not Phase.explicit]


@schema.given(use_real_id=st.booleans())
@schema.parametrize()
@settings(max_examples=50, deadline=None, phases=GENERATED,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_matches_its_document(case, use_real_id, target):
    """No generated request gets a 5xx, and every answer is exactly what the document says."""
    positive = case.meta is None or not case.meta.generation.mode.is_negative
    if use_real_id and positive and "public_id" in (case.path_parameters or {}):
        case.path_parameters["public_id"] = target.other_key_id
    excluded = [positive_data_acceptance] if schema_cannot_judge(case) else []
    headers = target.headers
    if removes_the_authorization_header(case):
        headers = {}  # the case is about a missing key: sending ours would defeat it
    bounded(case).call_and_validate(app=target.app, headers=headers, excluded_checks=excluded)


@schema.parametrize()
@settings(phases=[Phase.explicit], deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_document_examples_are_answered_as_documented(case, target):
    """Every example request in the document (the API reference's curl commands) gets an answer
    the document allows, with no 5xx."""
    excluded = [positive_data_acceptance] if schema_cannot_judge(case) else []
    bounded(case).call_and_validate(app=target.app, headers=target.headers,
                                    excluded_checks=excluded)


def removes_the_authorization_header(case) -> bool:
    """A negative case whose headers break the document by leaving out Authorization, which
    an operation that takes the key from that header alone (forward_auth) requires."""
    if case.meta is None:
        return False
    header = case.meta.components.get(ParameterLocation.HEADER)
    return (header is not None and header.mode.is_negative
            and "authorization" not in {name.lower() for name in case.headers or {}})


class LiveTarget:
    """The real server (`keyvault serve`) and a full-access key to call it with."""

    def __init__(self, url: str, value: str):
        self.url = url
        self.headers = {"Authorization": f"Bearer {value}"}


@pytest.fixture
def live_target(live_server, make_user, make_key) -> LiveTarget:
    _, value = make_key(make_user("fuzz@example.com"), label="fuzzer", scopes=["*"])
    return LiveTarget(live_server.url, value)


@pytest.mark.live_server
@live_schema.parametrize()
@settings(max_examples=10, deadline=None, phases=GENERATED,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_the_real_server_answers_as_documented(case, live_target):
    """The same fuzzing, a few cases per operation, sent over HTTP to `keyvault serve`: what
    the server does to bytes (the test client skips it) must not turn any into a 5xx."""
    excluded = [positive_data_acceptance] if schema_cannot_judge(case) else []
    headers = {} if removes_the_authorization_header(case) else live_target.headers
    bounded(case).call_and_validate(base_url=live_target.url, headers=headers, excluded_checks=excluded,
                           timeout=10)
