"""Messages in people's words, and JSON sent with the wrong Content-Type told so."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent

FORM = "application/x-www-form-urlencoded"  # what `curl -d` sends unless told otherwise


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def rows():
    db.session.expire_all()
    return (db.session.scalar(select(func.count()).select_from(ApiKey)),
            db.session.scalar(select(func.count()).select_from(SecurityEvent)))


@pytest.fixture
def caller(user, make_key):
    return make_key(user, label="caller", scopes=["*"])


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/personal_api_keys/", {"label": "deploy", "scopes": ["user:read"]}),
    ("PATCH", "/api/personal_api_keys/{id}/", {"label": "renamed"}),
    ("POST", "/api/personal_api_keys/{id}/roll/", {"grace_period_seconds": 60}),
    ("POST", "/api/verify/", {"key": "{value}"}),
    ("POST", "/api/verify/", [{"key": "{value}"}]),
])
@pytest.mark.parametrize("spacing", ["", "\n  "])
def test_json_sent_as_a_form_is_a_400_that_says_which_header_to_send(client, caller, method,
                                                                     path, body, spacing):
    """`curl -d '{"label": …}'` types the body as a form: the answer is a 400 that says to send
    Content-Type: application/json, not a complaint about a field named after the whole body;
    nothing changes."""
    key, value = caller
    text = spacing + json.dumps(body).replace("{value}", value)
    before = rows()
    response = client.open(path.format(id=key.public_id), method=method, data=text,
                           content_type=FORM, headers=bearer(value))
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    detail = response.json["detail"]
    assert "looks like JSON" in detail
    assert "Content-Type: application/json" in detail
    assert value not in response.get_data(as_text=True)
    assert rows() == before
    # The same body with the right header is served.
    right = client.open(path.format(id=key.public_id), method=method, data=text,
                        content_type="application/json", headers=bearer(value))
    assert right.status_code in (200, 201) or (path == "/api/verify/" and right.status_code == 400)


@pytest.mark.parametrize("path", ["/api/personal_api_keys/", "/api/verify/"])
def test_json_without_any_content_type_says_which_header_to_send(client, caller, path):
    """No Content-Type at all: 415, and the answer names the header to send."""
    key, value = caller
    response = client.post(path, data=json.dumps({"label": "x", "key": value}),
                           headers=bearer(value))
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json["detail"]


def test_real_forms_still_work(client, caller, make_key):
    """A real form body (not JSON-looking) is still read as a form: verify's RFC 7662 `token=`
    and a create by form fields."""
    key, value = caller
    _, subject = make_key(caller[0].user, label="subject")
    answer = client.post("/api/verify/", data={"token": subject}, headers=bearer(value))
    assert answer.status_code == 200 and answer.json["active"] is True
    made = client.post("/api/personal_api_keys/", headers=bearer(value),
                       data={"label": "by form", "scopes": ["user:read", "key:verify"]})
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.json["scopes"] == ["user:read", "key:verify"]  # one field per scope
    unscoped = client.post("/api/personal_api_keys/", data={"label": "by form"},
                           headers=bearer(value))
    assert unscoped.status_code == 400 and unscoped.json["field"] == "scopes"


@pytest.mark.parametrize(("body", "field", "detail"), [
    ({"label": "ok", "scopes": []}, "scopes", "Choose at least one scope, or * for full access."),
    ({"label": "ok", "scopes": ["bogus:thing"]}, "scopes",
     "There is no scope called “bogus:thing”. The scopes are: *, personal_api_key:read, "
     "personal_api_key:write, user:read, key:verify, metrics:read, organization:read, "
     "organization:write, webhook:read, webhook:write."),
    ({"label": "ok", "scopes": ["*"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at",
     "That expiry has already passed: choose a moment in the future."),
    ({"label": "ok", "scopes": ["*"], "expires_at": "next week"}, "expires_at",
     "The expiry must be a date and time in ISO 8601 form, such as 2030-01-31T00:00:00Z."),
    ({"label": "   "}, "label", "Give the key a label, such as what it is for."),
    ({"label": 5}, "label", "The label must be text."),
    ({}, "label", "The label is missing."),
    ({"label": "ok", "colour": "red"}, "colour", "This request does not take “colour”: leave it "
     "out."),
])
def test_api_refusals_point_at_the_field_and_speak_plainly(client, caller, body, field, detail):
    """problem+json's `field` names the field; `detail` says what to do, in words."""
    _, value = caller
    response = client.post("/api/personal_api_keys/", json=body, headers=bearer(value))
    assert response.status_code == 400
    assert (response.json["field"], response.json["detail"]) == (field, detail)


def test_roll_refusal_speaks_of_the_grace_period(client, caller):
    key, value = caller
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/",
                           json={"grace_period_seconds": 604801}, headers=bearer(value))
    assert response.status_code == 400
    assert response.json["field"] == "grace_period_seconds"
    assert response.json["detail"] == ("The grace period can be from 0 seconds (the old value "
                                       "stops at once) to 7 days (604800 seconds).")
