"""Work for every request (http.context.AroundRequest) reaches every route, the verify fast
path included: a request id, a timing, nosniff."""

from __future__ import annotations

import logging
import re

import pytest
from flask import request

from tests.conftest import base_overrides, verify


@pytest.fixture
def service_key(make_user, make_key):
    _, value = make_key(make_user("service@example.com"), label="service", scopes=["key:verify"])
    return value


def _requests(client, service_key, value):
    bearer = {"Authorization": f"Bearer {service_key}"}
    return {
        "verify, fast path": lambda **kw: client.post("/api/verify/", json={"key": value},
                                                      headers=bearer, **kw),
        "verify, refused on the fast path": lambda **kw: client.post(
            "/api/verify/", json={"key": value}, headers={"Authorization": "Bearer kv_no"}, **kw),
        "verify, Flask view": lambda **kw: client.post("/api/verify/", data={"token": value},
                                                       headers=bearer, **kw),
        "API route": lambda **kw: client.get("/api/users/@me/", headers=bearer, **kw),
        "API 404": lambda **kw: client.get("/api/nothing/", **kw),
        "page": lambda **kw: client.get("/login", **kw),
        "health": lambda **kw: client.get("/healthz", **kw),
    }


def test_every_answer_carries_an_id_a_timing_and_nosniff(client, user, make_key, service_key):
    _, value = make_key(user)
    seen = set()
    for name, send in _requests(client, service_key, value).items():
        response = send()
        ident = response.headers.get("X-Request-Id", "")
        assert re.fullmatch(r"[0-9a-f]{16}", ident), name
        assert re.fullmatch(r"app;dur=\d+\.\d\d", response.headers["Server-Timing"]), name
        assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"], name
        seen.add(ident)
    assert len(seen) == len(_requests(client, service_key, value))  # a new id each time


@pytest.mark.parametrize(("incoming", "kept"), [
    ("req-2030.03.10:abc_DEF", True),
    ("x" * 64, True),
    ("x" * 65, False),
    ("has space", False),
    ("new\nline", False),
    ("<script>", False),
])
def test_a_sane_incoming_request_id_is_kept(client, user, make_key, service_key, incoming, kept):
    """A proxy's X-Request-Id carries through (fast path and Flask alike); anything that is not
    a plain token is replaced, so it cannot forge log lines or headers."""
    _, value = make_key(user)
    for name, send in _requests(client, service_key, value).items():
        # Set in the WSGI environ: werkzeug's test client refuses a header with a line break.
        response = send(environ_overrides={"HTTP_X_REQUEST_ID": incoming})
        assert (response.headers["X-Request-Id"] == incoming) is kept, name


def test_a_database_outage_is_logged_once_with_the_request_id(database_url, caplog):
    """With the database unreachable, verify on the fast path and an API route in Flask both
    answer 503 problem+json; the log gets one line for the outage, naming the first request
    that met it (an operator finds it from the client's X-Request-Id), with no traceback and no
    SQL (whose parameters hold key digests), not one line per request."""
    from keyvault import create_app, tokens

    broken = create_app({**base_overrides(database_url),
                         "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://x:pw@127.0.0.1:1/none"})
    client = broken.test_client()
    value = tokens.generate()
    with caplog.at_level(logging.INFO, logger="keyvault"):
        answers = [client.post("/api/verify/", json={"key": value},
                               headers={"Authorization": f"Bearer {value}"}),
                   client.get("/api/users/@me/", headers={"Authorization": f"Bearer {value}"}),
                   client.post("/api/verify/", json={"key": value},
                               headers={"Authorization": f"Bearer {value}"})]
    for response in answers:
        assert response.status_code == 503 and response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"] == "5"
    lines = [record for record in caplog.records if record.name == "keyvault"]
    assert len(lines) == 1, [record.getMessage() for record in lines]
    assert f"(request {answers[0].headers['X-Request-Id']})" in lines[0].getMessage()
    assert lines[0].exc_info is None and "SELECT" not in lines[0].getMessage()


def test_verify_still_works_through_the_middleware(client, user, make_key, service_key):
    _, value = make_key(user)
    assert verify(client, service_key, value)["active"] is True


@pytest.mark.parametrize("incoming", ["caf\xe9", "caf\xc3\xa9", "id\x00"])
def test_a_request_id_that_cannot_be_read_is_refused(client, user, make_key, service_key,
                                                     incoming, caplog):
    """Non-ASCII (as a server hands it over: latin-1 of the bytes) or a control character in
    X-Request-Id: 400 on every route, the fast path included, one log line, a fresh id."""
    _, value = make_key(user)
    for name, send in _requests(client, service_key, value).items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="keyvault"):
            response = send(environ_overrides={"HTTP_X_REQUEST_ID": incoming})
        assert response.status_code == 400, name
        assert "X-Request-Id header" in response.get_data(as_text=True), name
        assert re.fullmatch(r"[0-9a-f]{16}", response.headers["X-Request-Id"]), name
        refusals = [r for r in caplog.records if r.getMessage().startswith("refused")]
        assert len(refusals) == 1 and not refusals[0].exc_info, name


def test_a_forwarded_address_that_cannot_be_read_is_refused(make_app, caplog):
    """Behind a trusted proxy, an X-Forwarded-For with a byte that is no address is refused,
    never taken as the client's address; a plain one is used."""
    app = make_app(KEYVAULT_TRUSTED_PROXIES="1")
    client = app.test_client()
    seen = {}

    @app.before_request
    def remember():
        seen["address"] = request.remote_addr

    assert client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    assert seen["address"] == "203.0.113.9"
    seen.clear()
    response = client.get("/healthz", environ_overrides={"HTTP_X_FORWARDED_FOR": "203.0.113.\xb9"})
    assert response.status_code == 400
    assert "X-Forwarded-For header" in response.get_data(as_text=True)
    assert seen == {}  # refused before any other hook
