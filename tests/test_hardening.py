"""Holes a review found: keys in logs, 500s on odd input, sessions outliving logout, and the
fast lane and the view disagreeing. Each test fails on the code before its fix."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from keyvault import service, tokens
from keyvault.redact import scrub
from tests.conftest import AuthActions


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


@pytest.mark.parametrize("template", [
    "GET /api/users/@me/?personal_api_key={k} HTTP/1.1",
    "GET /api/users/@me/?personal%5Fapi%5Fkey={k} HTTP/1.1",
    "GET /api/users/@me/?a=1&PERSONAL_API_KEY={k}&b=2 HTTP/1.1",
    "GET /api/users/@me/?x={k} HTTP/1.1",
    "https://example.com/page?token={k}",
])
def test_scrub_hides_a_key_however_the_url_spells_it(template):
    """Percent-encoded names, other parameter names, anything key-shaped: all redacted."""
    key = tokens.generate()
    line = template.format(k=key)
    assert key not in scrub(line)
    assert "[redacted]" in scrub(line)


def test_scrub_leaves_ordinary_parameters_alone():
    assert scrub("GET /x?monkey=1&scopes=user:read HTTP/1.1") == (
        "GET /x?monkey=1&scopes=user:read HTTP/1.1")


def test_a_percent_encoded_key_name_stays_out_of_the_access_log(live_server, user, make_key):
    _, value = make_key(user, scopes=["user:read"])
    response = requests.get(f"{live_server.url}/api/users/@me/?personal%5Fapi%5Fkey={value}",
                            timeout=5)
    assert response.status_code == 200
    probe = requests.get(f"{live_server.url}/healthz?probe={value[-8:]}", timeout=5)
    assert probe.status_code == 200
    for _ in range(50):  # the access log is written after the response
        if value[-8:] in live_server.log():
            break
        time.sleep(0.1)
    assert value not in live_server.log()


def test_forward_auth_with_an_internationalised_email_under_the_real_server(live_server, make_user,
                                                                     make_key):
    """Header values are Latin-1: the email is percent-encoded, never a 500."""
    owner = make_user("łukasz@example.com")
    _, value = make_key(owner, scopes=["user:read"])
    response = requests.get(f"{live_server.url}/api/forward_auth/", headers=bearer(value),
                            timeout=5)
    assert response.status_code == 200
    assert response.headers["X-KeyVault-User-Email"] == "%C5%82ukasz@example.com"


def test_forward_auth_refuses_scope_names_it_could_not_echo(client, user, make_key):
    _, value = make_key(user)
    response = client.get("/api/forward_auth/", query_string={"scopes": "ł:read"},
                          headers=bearer(value))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("expires_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_extreme_expiry_offsets_are_a_400(client, user, make_key, expires_at):
    _, value = make_key(user)
    response = client.post("/api/personal_api_keys/", headers=bearer(value),
                           json={"label": "x", "scopes": ["*"], "expires_at": expires_at})
    assert response.status_code == 400
    assert response.json["field"] == "expires_at"


def _cursor(raw) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("raw", [
    json.dumps(["0001-01-01T00:00:00+01:00", 1, "n"]),
    json.dumps(["2030-01-01T00:00:00+00:00", 10**30, "n"]),
    json.dumps(["2030-01-01T00:00:00+00:00", True, "n"]),
    "[" * 2000,
])
def test_crafted_cursors_are_a_400(client, user, make_key, auth, raw):
    _, value = make_key(user)
    response = client.get("/api/personal_api_keys/", query_string={"cursor": _cursor(raw)},
                          headers=bearer(value))
    assert response.status_code == 400
    auth.login()
    assert client.get("/settings/security-log",
                      query_string={"cursor": _cursor(raw)}).status_code == 400


def test_control_characters_in_an_email_are_never_a_500(client, auth, user, make_user):
    """Login, sign-up and the admin filter with a NUL in the address (PostgreSQL refuses NUL)."""
    assert auth.login("a\x00b@example.com").status_code == 400
    assert auth.signup("c\x00d@example.com").status_code == 400
    make_user("root@example.com", is_admin=True)
    admin = AuthActions(client)
    admin.login("root@example.com")
    assert client.get("/admin/keys", query_string={"user": "a\x00b"}).status_code == 200


def test_cli_refuses_an_absurd_lifetime(app, user):
    result = app.test_cli_runner().invoke(
        args=["keys", "create", user.email, "--label", "x", "--scope", "*",
              "--expires-in-days", "5000000"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_copied_session_cookie_dies_with_logout(app, auth, client, user):
    """Signed cookies can't be recalled, so logging out ends every session of the user."""
    auth.login()
    cookie = client.get_cookie("session").value
    assert auth.logout().status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", cookie)
    response = replay.get("/settings/api-keys")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_fast_lane_and_view_agree_on_what_json_is(client, user, make_key, make_user):
    _, caller = make_key(make_user("svc@example.com"), scopes=["key:verify"])
    _, value = make_key(user)
    response = client.post("/api/verify/", data=json.dumps({"key": value}),
                           content_type="application/jsonfoo", headers=bearer(caller))
    assert response.status_code == 415
    vendor = client.post("/api/verify/", data=json.dumps({"key": value}),
                         content_type="application/vnd.api+json", headers=bearer(caller))
    assert vendor.status_code == 200 and vendor.json["active"] is True


def test_key_wins_over_token_in_json_and_in_a_form(client, user, make_key, make_user):
    _, caller = make_key(make_user("svc@example.com"), scopes=["key:verify"])
    live_key, live = make_key(user, label="live")
    gone_key, gone = make_key(user, label="gone")
    service.revoke_key(user, gone_key.public_id, service.Origin())
    as_json = client.post("/api/verify/", json={"key": live, "token": gone},
                          headers=bearer(caller)).json
    as_form = client.post("/api/verify/", data={"key": live, "token": gone},
                          headers=bearer(caller)).json
    assert as_json["code"] == as_form["code"] == "valid"


@pytest.mark.parametrize("path", ["/api/verify/", "/api/personal_api_keys/"])
def test_no_key_and_broken_json_is_401_first(client, path):
    response = client.post(path, data="{bad", content_type="application/json")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_missing_trailing_slash_is_served_not_redirected(client, user, make_key):
    """No 308 whose Location would repeat a key from the query string."""
    _, value = make_key(user, scopes=["user:read"])
    response = client.get(f"/api/users/@me?personal_api_key={value}")
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert value not in response.get_data(as_text=True)
