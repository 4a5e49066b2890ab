"""The verify fast lane answers exactly as the Flask view would, and hands it everything else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import request
from sqlalchemy import select

from keyvault.extensions import db
from keyvault.models import SecurityEvent
from tests.conftest import T0, base_overrides, verify


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


@pytest.mark.parametrize("case", ["wrong caller", "caller lacks scope", "bad json", "no body",
                                  "form body", "key not a string", "basic auth"])
def test_anything_else_falls_through_to_the_view(client, user, make_key, make_user, service_key,
                                                 views_seen, case):
    """Refusals and unusual requests are answered by the Flask view, with its status and words."""
    _, value = make_key(user)
    _, no_verify = make_key(make_user("other@example.com"), scopes=["user:read"])
    bearer = {"Authorization": f"Bearer {service_key}"}
    request, status = {
        "wrong caller": (dict(json={"key": value}, headers={"Authorization": "Bearer kv_nope"}),
                         401),
        "caller lacks scope": (dict(json={"key": value},
                                    headers={"Authorization": f"Bearer {no_verify}"}), 403),
        "bad json": (dict(data="{nope", content_type="application/json", headers=bearer), 400),
        "no body": (dict(content_type="application/json", headers=bearer), 400),
        "form body": (dict(data={"token": value}, headers=bearer), 200),
        "key not a string": (dict(json={"key": 5}, headers=bearer), 400),
        "basic auth": (dict(json={"key": value}, headers={"Authorization": "Basic eDp5"}), 401),
    }[case]
    response = client.post("/api/verify/", **request)
    assert views_seen == ["/api/verify/"]
    assert response.status_code == status
    if status != 200:
        assert response.mimetype == "application/problem+json"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_database_failure_is_the_views_problem_json_500(database_url, make_user, make_key,
                                                          service_key):
    """When the database is gone the fast lane steps aside and the view answers problem+json."""
    from keyvault import create_app

    broken = create_app({**base_overrides(database_url),
                         "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://x:pw@127.0.0.1:1/none"})
    response = broken.test_client().post("/api/verify/", json={"key": service_key},
                                         headers={"Authorization": f"Bearer {service_key}"})
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
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
