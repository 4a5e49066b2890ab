"""Issue 11's small things: HSTS in production, absolute links only from configuration (never
the client's Host), 404 for ids out of any row's range everywhere, CSRF tokens that expire
into a friendly page that changes nothing."""

from __future__ import annotations

import time as real_time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from keyvault import config, service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import (
    TEST_PEPPER,
    TEST_SECRET_KEY,
    AuthActions,
    FreshContextClient,
    csrf_from,
    once_token,
)

HSTS = "max-age=63072000; includeSubDomains"

# ---------------------------------------------------------------- HSTS


def _app_in(make_app, environment: str):
    app = make_app(KEYVAULT_ENV=environment, KEYVAULT_SECRET_KEY=TEST_SECRET_KEY,
                   KEYVAULT_KEY_PEPPER=TEST_PEPPER)
    app.test_client_class = FreshContextClient
    return app


def test_production_answers_carry_hsts_everywhere(make_app):
    app = _app_in(make_app, "production")
    client = app.test_client()
    answers = [
        client.get("/login"),
        client.get("/api/users/@me/"),  # 401 problem+json
        client.get("/no/such/page"),
        client.get("/healthz"),
        # the verify fast path answers without Flask
        client.post("/api/verify/", json={"key": "x"}, headers={"Authorization": "Bearer x"}),
    ]
    for answer in answers:
        assert answer.headers.get_all("Strict-Transport-Security") == [HSTS], answer.request.path


def test_development_sends_no_hsts(make_app):
    client = _app_in(make_app, "development").test_client()
    assert "Strict-Transport-Security" not in client.get("/login").headers
    answer = client.post("/api/verify/", json={"key": "x"}, headers={"Authorization": "Bearer x"})
    assert "Strict-Transport-Security" not in answer.headers


# ---------------------------------------------------------------- absolute URLs


@pytest.fixture
def two_pages(make_user, make_key):
    """A reader key whose owner has more keys than one page of 2 shows."""
    def build(app):
        with app.app_context():
            owner = make_user("pages@example.com")
            for n in range(4):
                make_key(owner, label=f"k{n}")
            return make_key(owner, label="reader",
                            scopes=["personal_api_key:read", "user:read"])[1]
    return build


def _next_link(client, reader: str, path: str = "/api/personal_api_keys/?limit=2",
               **headers) -> str:
    answer = client.get(path, headers={"Authorization": f"Bearer {reader}", **headers})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert "evil" not in answer.get_data(as_text=True)
    return answer.json["next"]


def test_without_a_base_url_links_are_relative_whatever_the_host(app, client, two_pages):
    reader = two_pages(app)
    for path in ("/api/personal_api_keys/?limit=2", "/api/users/@me/security_log/?limit=2"):
        link = _next_link(client, reader, path, Host="evil.com")
        assert link.startswith("/api/") and "://" not in link
    link = _next_link(client, reader, Host="evil.com")
    # a relative link works as it is: resolved against the URL that was called
    follow = client.get(link, headers={"Authorization": f"Bearer {reader}"})
    assert follow.status_code == 200 and follow.json["results"]


def test_links_use_the_configured_base_url_never_the_host(make_app, two_pages):
    app = make_app(KEYVAULT_BASE_URL="https://keys.example.com/")
    app.test_client_class = FreshContextClient
    reader = two_pages(app)
    client = app.test_client()
    link = _next_link(client, reader, Host="evil.com", X_Forwarded_Host="evil.com")
    assert link.startswith("https://keys.example.com/api/personal_api_keys/?")
    log = _next_link(client, reader, "/api/users/@me/security_log/?limit=2", Host="evil.com")
    assert log.startswith("https://keys.example.com/api/users/@me/security_log/?")
    parts = urlsplit(link)
    follow = client.get(f"{parts.path}?{parts.query}", headers={"Authorization": f"Bearer {reader}"})
    assert follow.status_code == 200 and follow.json["results"]


def test_a_base_url_with_a_path_prefix(make_app, two_pages):
    app = make_app(KEYVAULT_BASE_URL="https://example.com/keyvault")
    app.test_client_class = FreshContextClient
    reader = two_pages(app)
    link = _next_link(app.test_client(), reader, Host="evil.com")
    assert link.startswith("https://example.com/keyvault/api/personal_api_keys/?")


def test_behind_trusted_proxies_links_ignore_the_forwarded_host(make_app, two_pages):
    """A proxy relays the Host the client wrote (nginx's `$host`): links stay relative."""
    app = make_app(KEYVAULT_TRUSTED_PROXIES="1")
    app.test_client_class = FreshContextClient
    reader = two_pages(app)
    link = _next_link(app.test_client(), reader, Host="internal:5000",
                      X_Forwarded_Host="evil.example", X_Forwarded_Proto="https",
                      X_Forwarded_For="203.0.113.9")
    assert link.startswith("/api/personal_api_keys/?")


@pytest.mark.parametrize("raw", ["keys.example.com", "ftp://keys.example.com",
                                 "https://keys.example.com/?a=1", "https://u:p@keys.example.com",
                                 "https://keys.example.com:http/", "https:///nohost"])
def test_a_base_url_that_is_not_one_is_refused(tmp_path, raw):
    with pytest.raises(config.ConfigError, match="KEYVAULT_BASE_URL"):
        config.load(tmp_path, {"KEYVAULT_BASE_URL": raw})


def test_base_url_is_optional_and_normalised(tmp_path):
    assert config.load(tmp_path, {})["KEYVAULT_BASE_URL"] is None
    assert config.load(tmp_path, {"KEYVAULT_BASE_URL": " https://k.example.com:8443/a/ "})[
        "KEYVAULT_BASE_URL"] == "https://k.example.com:8443/a"


# ---------------------------------------------------------------- ids out of range

OUT_OF_RANGE = ["99999999999999999999", "-1", "-99999999999999999999", "2147483648",
                "9223372036854775808", "0"]


def _rows():
    return (db.session.scalar(select(func.count(ApiKey.id))),
            db.session.scalar(select(func.count(SecurityEvent.id))))


def test_out_of_range_ids_are_404_on_every_page_and_api_route(app, client, make_user, make_key):
    admin = make_user("root@example.com", is_admin=True)
    _, value = make_key(admin, label="writer", scopes=["*"])
    before = _rows()
    auth = AuthActions(client)
    assert auth.login("root@example.com").status_code == 302
    token = auth.csrf("/settings/api-keys")
    api = {"Authorization": f"Bearer {value}"}
    for ident in OUT_OF_RANGE:
        answers = {
            "admin activate": client.post(f"/admin/users/{ident}/activate",
                                          data={"csrf_token": token}),
            "admin deactivate": client.post(f"/admin/users/{ident}/deactivate",
                                            data={"csrf_token": token}),
            "admin revoke": client.post(f"/admin/keys/{ident}/revoke", data={"csrf_token": token}),
            "edit page": client.get(f"/settings/api-keys/{ident}/edit"),
            "edit": client.post(f"/settings/api-keys/{ident}/edit",
                                data={"csrf_token": token, "label": "x"}),
            "roll": client.post(f"/settings/api-keys/{ident}/roll",
                                data={"csrf_token": token, "grace": "0"}),
            "revoke": client.post(f"/settings/api-keys/{ident}/revoke",
                                  data={"csrf_token": token}),
            "api get": client.get(f"/api/personal_api_keys/{ident}/", headers=api),
            "api patch": client.patch(f"/api/personal_api_keys/{ident}/", json={"label": "x"},
                                      headers=api),
            "api delete": client.delete(f"/api/personal_api_keys/{ident}/", headers=api),
            "api roll": client.post(f"/api/personal_api_keys/{ident}/roll/", json={},
                                    headers=api),
        }
        for what, answer in answers.items():
            assert answer.status_code == 404, (what, ident, answer.get_data(as_text=True)[:300])
            if what.startswith("api"):
                assert answer.mimetype == "application/problem+json"
    assert _rows()[0] == before[0]  # nothing created, nothing half-written
    assert service.find_user("root@example.com").is_active


def test_out_of_range_ids_on_the_command_line(app):
    runner = app.test_cli_runner()
    for ident in OUT_OF_RANGE:
        result = runner.invoke(args=["keys", "revoke", "--", ident])  # "--": "-1" is no option
        assert result.exit_code == 1, (ident, result.output)
        assert "No such API key." in result.output
        assert "Traceback" not in result.output


def test_get_user_and_set_user_active_say_no_such_user(app, make_user):
    admin = make_user("root@example.com", is_admin=True)
    origin = service.Origin("127.0.0.1", "pytest")
    for ident in (10**20, -1, 0, 2**31, 2**63, True):
        assert service.get_user(ident) is None
        with pytest.raises(service.UserNotFound):
            service.set_user_active(admin, ident, False, origin)


# ---------------------------------------------------------------- CSRF tokens expire


class ItsdangerousClock:
    """Moves the clock that signs and checks CSRF tokens (itsdangerous' timestamps) only."""

    def __init__(self):
        self.offset = 0.0

    def time(self) -> float:
        return real_time.time() + self.offset


@pytest.fixture
def token_clock(monkeypatch):
    clock = ItsdangerousClock()
    monkeypatch.setattr("itsdangerous.timed.time", clock)  # Flask-WTF signs with itsdangerous
    return clock


def test_csrf_tokens_have_a_configurable_lifetime(tmp_path):
    assert config.load(tmp_path, {})["WTF_CSRF_TIME_LIMIT"] == 12 * 3600
    loaded = config.load(tmp_path, {"KEYVAULT_CSRF_MINUTES": "30"})
    assert loaded["WTF_CSRF_TIME_LIMIT"] == 1800 and loaded["KEYVAULT_CSRF_MINUTES"] == 30
    with pytest.raises(config.ConfigError, match="KEYVAULT_CSRF_MINUTES"):
        config.load(tmp_path, {"KEYVAULT_CSRF_MINUTES": "0"})


def _key_count() -> int:
    return db.session.scalar(select(func.count(ApiKey.id)))


def test_an_expired_form_gets_a_friendly_page_and_changes_nothing(app, client, user, token_clock):
    auth = AuthActions(client)
    assert auth.login().status_code == 302
    page = client.get("/settings/api-keys").get_data(as_text=True)
    form = {"label": "late", "expiry": "30", "preset": "full", "csrf_token": csrf_from(page),
            "once": once_token(page)}
    events = db.session.scalar(select(func.count(SecurityEvent.id)))

    token_clock.offset = 12 * 3600 + 60  # the page stayed open past the token's lifetime
    answer = client.post("/settings/api-keys", data=form)
    assert answer.status_code == 400
    text = answer.get_data(as_text=True)
    assert "This form has expired" in text
    assert "more than 12 hours" in text and "nothing was changed" in text
    assert _key_count() == 0
    assert db.session.scalar(select(func.count(SecurityEvent.id))) == events

    # Reloading the page gives a fresh token, and the same action works.
    page = client.get("/settings/api-keys").get_data(as_text=True)
    form.update(csrf_token=csrf_from(page), once=once_token(page))
    answer = client.post("/settings/api-keys", data=form)
    assert answer.status_code in (200, 302)
    assert _key_count() == 1


def test_a_form_within_its_lifetime_still_works(app, client, user, token_clock):
    auth = AuthActions(client)
    assert auth.login().status_code == 302
    page = client.get("/settings/api-keys").get_data(as_text=True)
    token_clock.offset = 12 * 3600 - 60
    answer = client.post("/settings/api-keys", data={
        "label": "in time", "expiry": "30", "preset": "full", "csrf_token": csrf_from(page),
        "once": once_token(page)})
    assert answer.status_code in (200, 302)
    assert _key_count() == 1


def test_an_expired_login_form_says_so(make_app, token_clock):
    app = make_app(KEYVAULT_CSRF_MINUTES="45")
    app.test_client_class = FreshContextClient
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    token_clock.offset = 46 * 60
    answer = client.post("/login", data={"email": "a@example.com", "password": "x" * 10,
                                         "csrf_token": token})
    assert answer.status_code == 400
    assert "more than 45 minutes" in answer.get_data(as_text=True)


def test_prune_with_an_absurd_number_of_days_is_refused_not_a_crash(app):
    result = app.test_cli_runner().invoke(args=["keys", "prune", "--unused-days",
                                                "99999999999999999999", "--dry-run"])
    assert result.exit_code == 2
    assert "--unused-days" in result.output and "Traceback" not in result.output
