"""The verify fast path answers exactly as the Flask view would, and hands it everything else."""

from __future__ import annotations

import math
import re
import time
from datetime import timedelta

import pytest
from flask import request
from sqlalchemy import select

from keyvault import service
from keyvault.api.schemas import VerifyResult
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import T0, base_overrides, verify

ORIGIN = service.Origin("127.0.0.1", "pytest")


@pytest.fixture
def service_key(make_user, make_key):
    _, value = make_key(make_user("service@example.com"), label="service", scopes=["key:verify"])
    return value


@pytest.fixture
def views_seen(app):
    """The requests that reached Flask's dispatch (the fast lane skips it)."""
    seen: list[str] = []

    @app.before_request
    def note():
        seen.append(request.path)

    return seen


def test_valid_call_takes_the_fast_lane_and_matches_the_view(client, user, make_key,
                                                             service_key, views_seen):
    """Bearer + JSON skips Flask; the same call with the key in the body goes through the view,
    and both answers are the same bytes with the same headers."""
    _, value = make_key(user, scopes=["user:read"])
    fast = client.post("/api/verify/", json={"key": value},
                       headers={"Authorization": f"Bearer {service_key}"})
    assert views_seen == []
    slow = client.post("/api/verify/", json={"key": value, "personal_api_key": service_key})
    assert views_seen == ["/api/verify/"]
    assert fast.status_code == slow.status_code == 200
    assert fast.get_data() == slow.get_data()
    for name in ("Content-Type", "Cache-Control", "X-Content-Type-Options"):
        assert fast.headers[name] == slow.headers[name], name
    assert fast.json["active"] is True and fast.json["scopes"] == ["user:read"]


@pytest.fixture
def flask_only(make_app):
    """A client of the same app without the fast path: every verify goes through Flask's view."""
    app = make_app()
    # wire.RefuseUnreadable(http.context.AroundRequest(fastlane.VerifyFastLane(Flask's app)))
    around = app.wsgi_app.wsgi_app
    around.wsgi_app = around.wsgi_app.wsgi_app
    return app.test_client()


def _comparable(response) -> tuple:
    """Status, body and headers, less the two that differ on every request (id, timing), and
    the seconds to the rate-limit window's end (the two requests may straddle a second)."""
    headers = sorted((name, re.sub(r";t=\d+$", ";t=…", value) if name == "RateLimit" else value)
                     for name, value in response.headers.items()
                     if name not in ("X-Request-Id", "Server-Timing"))
    return response.status_code, response.get_data(), headers


def _reset_seconds(response) -> int | None:
    found = re.search(r";t=(\d+)$", response.headers.get("RateLimit", ""))
    return int(found.group(1)) if found else None


FAST_CASES = {
    "valid": lambda value, caller, other: (dict(json={"key": value}, headers=caller), 200),
    "wrong caller": lambda value, caller, other: (
        dict(json={"key": value}, headers={"Authorization": "Bearer kv_nope"}), 401),
    "revoked caller": lambda value, caller, other: (
        dict(json={"key": value}, headers={"Authorization": f"Bearer {other['revoked']}"}), 401),
    "caller lacks scope": lambda value, caller, other: (
        dict(json={"key": value}, headers={"Authorization": f"Bearer {other['no_verify']}"}),
        403),
    "bad json": lambda value, caller, other: (
        dict(data="{nope", content_type="application/json", headers=caller), 400),
    "json null": lambda value, caller, other: (
        dict(data="null", content_type="application/json", headers=caller), 400),
    "no body": lambda value, caller, other: (
        dict(content_type="application/json", headers=caller), 400),
    "key not a string": lambda value, caller, other: (
        dict(json={"key": 5}, headers=caller), 400),
    "not an object": lambda value, caller, other: (dict(json=[value], headers=caller), 400),
    "token instead of key": lambda value, caller, other: (
        dict(json={"token": value}, headers=caller), 200),
    "basic auth": lambda value, caller, other: (
        dict(json={"key": value}, headers={"Authorization": "Basic eDp5"}), 401),
    "bad body, bad caller": lambda value, caller, other: (
        dict(data="{nope", content_type="application/json",
             headers={"Authorization": "Bearer kv_nope"}), 401),
    # keys restricted by address (allowed_ips): the caller's at the request's address, the
    # subject's at client_ip
    "client_ip inside": lambda value, caller, other: (
        dict(json={"key": other["restricted"], "client_ip": "203.0.113.5"}, headers=caller), 200),
    "client_ip outside": lambda value, caller, other: (
        dict(json={"key": other["restricted"], "client_ip": "::ffff:198.51.100.5"},
             headers=caller), 200),
    "no client_ip": lambda value, caller, other: (
        dict(json={"key": other["restricted"]}, headers=caller), 200),
    "client_ip not an address": lambda value, caller, other: (
        dict(json={"key": other["restricted"], "client_ip": "203.0.113.0/24"}, headers=caller),
        400),
    "caller outside its ranges": lambda value, caller, other: (
        dict(json={"key": value, "client_ip": "10.0.0.1"},
             headers={"Authorization": f"Bearer {other['far_caller']}"}), 403),
}


@pytest.mark.parametrize("case", list(FAST_CASES))
def test_the_fast_path_answers_as_the_view_would(client, flask_only, user, make_key, make_user,
                                                 service_key, views_seen, case):
    """Every verify with an Authorization header and a JSON body is answered on the fast path,
    refusals and body errors included, with the very bytes and headers Flask's view sends."""
    _, value = make_key(user)
    other = make_user("other@example.com")
    _, no_verify = make_key(other, label="no verify", scopes=["user:read"])
    revoked, revoked_value = make_key(other, label="revoked", scopes=["key:verify"])
    service.revoke_key(other, revoked.public_id, ORIGIN)
    _, restricted = make_key(other, label="restricted", allowed_ips=["203.0.113.0/24"])
    _, far_caller = make_key(other, label="far caller", scopes=["key:verify"],
                             allowed_ips=["10.0.0.0/8"])
    request, status = FAST_CASES[case](
        value, {"Authorization": f"Bearer {service_key}"},
        {"no_verify": no_verify, "revoked": revoked_value, "restricted": restricted,
         "far_caller": far_caller})
    started = time.monotonic()
    fast = client.post("/api/verify/", **request)
    assert views_seen == []
    slow = flask_only.post("/api/verify/", **request)
    between = time.monotonic() - started  # the window's reset counts down meanwhile
    assert fast.status_code == status, fast.get_data(as_text=True)
    assert _comparable(fast) == _comparable(slow)
    if _reset_seconds(fast) is not None:  # whole seconds: less than `between` + 1 apart
        assert 0 <= _reset_seconds(fast) - _reset_seconds(slow) <= math.ceil(between)
    if status == 200:
        VerifyResult.validate_json(fast.get_data(), strict=True)  # what /api/schema/ promises
    else:
        assert fast.mimetype == "application/problem+json"
    if status == 401:
        assert fast.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("case", ["key in the body", "form body", "key in the query"])
def test_other_verify_calls_go_through_flask(client, user, make_key, service_key, views_seen,
                                             case):
    """A caller key in the body or the query, or a form body: Flask's view answers."""
    _, value = make_key(user)
    request = {
        "key in the body": dict(json={"key": value, "personal_api_key": service_key}),
        "form body": dict(data={"token": value},
                          headers={"Authorization": f"Bearer {service_key}"}),
        "key in the query": dict(json={"key": value},
                                 query_string={"personal_api_key": service_key}),
    }[case]
    response = client.post("/api/verify/", **request)
    assert views_seen == ["/api/verify/"]
    assert (response.status_code, response.json["active"]) == (200, True)


def test_a_refused_caller_leaves_the_subject_untouched(client, user, make_key, make_user,
                                                       service_key, frozen):
    """A caller without key:verify (403), or an unknown one (401), learns nothing and changes
    nothing: the subject key's last_used_at stays unset and no event is logged for it, even for
    an expired subject (whose use a permitted caller's verify does log)."""
    key, value = make_key(user, scopes=["user:read"])
    expired, expired_value = make_key(user, label="expiring", scopes=["user:read"],
                                      expires_at=T0 + timedelta(hours=1))
    _, no_verify = make_key(make_user("nosy@example.com"), scopes=["user:read"])
    frozen.at = T0 + timedelta(hours=2)
    events_before = db.session.scalars(select(SecurityEvent.event)).all()
    for caller, status in ((no_verify, 403), ("kv_nope", 401)):
        for subject in (value, expired_value):
            for body in (dict(json={"key": subject}),  # the fast path
                         dict(data={"token": subject})):  # the Flask view
                response = client.post("/api/verify/", headers={"Authorization": f"Bearer {caller}"},
                                       **body)
                assert response.status_code == status
    db.session.expire_all()
    assert (db.session.get(ApiKey, key.id).last_used_at,
            db.session.get(ApiKey, expired.id).last_used_at) == (None, None)
    assert db.session.scalars(select(SecurityEvent.event)).all() == events_before
    # The same calls from a permitted caller do leave their marks: the test can fail.
    verify(client, service_key, value)
    verify(client, service_key, expired_value)
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).last_used_at == frozen.at
    assert db.session.scalars(select(SecurityEvent.event).where(
        SecurityEvent.key_id == expired.id, SecurityEvent.event == "key.expired_use")).all() == [
        "key.expired_use"]


def test_a_database_failure_is_a_503_with_retry_after(database_url, make_user, make_key,
                                                      service_key):
    """When the database is gone the fast path fails closed as the view does: 503
    problem+json with Retry-After, never a verdict, never a traceback."""
    from keyvault import create_app

    broken = create_app({**base_overrides(database_url),
                         "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://x:pw@127.0.0.1:1/none"})
    for body in (dict(json={"key": service_key}), dict(data={"token": service_key})):
        response = broken.test_client().post(
            "/api/verify/", headers={"Authorization": f"Bearer {service_key}"}, **body)
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert int(response.headers["Retry-After"]) > 0
        assert "active" not in response.get_data(as_text=True)
        assert "Traceback" not in response.get_data(as_text=True)


def test_the_body_limit_holds_on_the_fast_lane(make_app, user, make_key, make_user):
    """A body over KEYVAULT_MAX_BODY_BYTES is refused (413) however it arrives."""
    small = make_app(KEYVAULT_MAX_BODY_BYTES="2048")
    with small.app_context():
        _, caller = make_key(make_user("svc2@example.com"), scopes=["key:verify"])
    response = small.test_client().post(
        "/api/verify/", json={"key": "x" * 4000}, headers={"Authorization": f"Bearer {caller}"})
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_an_expired_key_is_answered_and_logged_on_the_fast_lane(client, user, make_key,
                                                                 service_key, views_seen, frozen):
    """The fast lane runs without Flask's app context, yet a use of an expired key still lands
    in the owner's security log, once, with the caller's address."""
    key, value = make_key(user, scopes=["user:read"], expires_at=T0 + timedelta(hours=1))
    frozen.at = T0 + timedelta(hours=2)
    client.environ_base.update(REMOTE_ADDR="203.0.113.7")
    for _ in range(2):
        answer = verify(client, service_key, value)
        assert (answer["active"], answer["code"]) == (False, "expired")
    assert views_seen == []
    events = db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.key_id == key.id, SecurityEvent.event == "key.expired_use")).all()
    assert [(e.user_id, e.ip_address) for e in events] == [(user.id, "203.0.113.7")]


def test_the_fast_path_is_decided_once_per_request():
    """keyvault serve's bridge asks whether the fast path takes a request, then VerifyFastLane
    asks again: the second reads the first's decision instead of deciding anew."""
    from keyvault.api.fastlane import TAKEN, takes

    environ = {"PATH_INFO": "/api/verify/", "REQUEST_METHOD": "POST",
               "HTTP_AUTHORIZATION": "Bearer x", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": "2"}
    assert takes(environ) is True and environ[TAKEN] is True
    environ["PATH_INFO"] = "/api/users/@me/"  # not looked at again
    assert takes(environ) is True
    assert takes({"PATH_INFO": "/api/users/@me/", "REQUEST_METHOD": "GET"}) is False
