"""POST /api/verify/: the answer services rely on, and what it costs the database."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from keyvault import clock, keystore, service, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey
from tests.conftest import bad_checksum

ACTIVE_FIELDS = {"active", "code", "key_id", "label", "scopes", "expires_at", "created_at", "user",
                 "owner", "rolled", "old_value_expires_at",
                 "sub", "username", "scope", "token_type", "exp", "iat"}  # RFC 7662's


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def service_key(make_user, make_key):
    """The calling service's own key, carrying key:verify, owned by another account."""
    _, value = make_key(make_user("service@example.com"), label="service", scopes=["key:verify"])
    return bearer(value)


@contextmanager
def recorded_sql():
    """Every statement the ORM/Core engine sends while the block runs."""
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


class _RecordingCursor:
    def __init__(self, cursor, trips: list):
        self._cursor, self._trips = cursor, trips

    def execute(self, sql, params=()):
        self._trips.append(sql)
        return self._cursor.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


@contextmanager
def hot_path_round_trips():
    """Every statement the verify hot path (keyvault.keystore) sends while the block runs."""
    store = keystore.keystore()
    connection, cursor = real = store.held()
    trips: list[str] = []
    store._local.held = (connection, _RecordingCursor(cursor, trips))
    try:
        yield trips
    finally:
        store._local.held = real


def situation(code: str, user, make_key, admin, monkeypatch) -> tuple[str, list[str]]:
    """A key (and scopes to demand) that verify should answer with `code`."""
    origin = service.Origin()
    if code == "valid":
        return make_key(user, scopes=["user:read"])[1], ["user:read"]
    if code == "malformed":
        return bad_checksum(make_key(user)[1]), []
    if code == "not_found":
        return tokens.generate(), []
    if code == "revoked":
        key, value = make_key(user)
        service.revoke_key(user, key.public_id, origin)
        return value, []
    if code == "expired":
        now = clock.now()
        _, value = make_key(user, expires_at=now + timedelta(seconds=2))
        monkeypatch.setattr(clock, "now", lambda: now + timedelta(seconds=3))
        return value, []
    if code == "user_inactive":
        value = make_key(user)[1]
        service.set_user_active(admin, user.id, False, origin)
        return value, []
    if code == "insufficient_scope":
        return make_key(user, scopes=["user:read"])[1], ["personal_api_key:write"]
    raise AssertionError(code)


@pytest.mark.parametrize(
    "code",
    [
        "valid",
        "malformed",
        "not_found",
        "revoked",
        "expired",
        "user_inactive",
        "insufficient_scope",
    ],
)
def test_each_code(client, user, make_user, make_key, service_key, monkeypatch, code):
    """Every situation answers 200 with its own code; only `valid` is active."""
    admin = make_user("admin@example.com", is_admin=True)
    value, scopes = situation(code, user, make_key, admin, monkeypatch)
    response = client.post(
        "/api/verify/", json={"key": value, "scopes": scopes}, headers=service_key
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["code"] == code
    assert response.json["active"] is (code == "valid")
    assert response.headers["Cache-Control"] == "no-store"
    if code != "valid":
        assert response.json == {"active": False, "code": code}


@pytest.mark.parametrize(
    "value", ["", "kv_", "hello", "kv_" + "a" * 46, "xx_" + "a" * 46, "kv_" + "!" * 46]
)
def test_garbage_is_malformed(client, service_key, value):
    """Wrong length, prefix, alphabet or checksum: `malformed`."""
    response = client.post("/api/verify/", json={"key": value}, headers=service_key)
    assert response.json == {"active": False, "code": "malformed"}


def test_active_answer_carries_the_keys_facts(client, user, make_key, service_key):
    """An active answer has key_id, label, scopes, expires_at, created_at and user {id, email}."""
    expires = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    key, value = make_key(
        user, label="billing", scopes=["user:read", "key:verify"], expires_at=expires
    )
    answer = client.post("/api/verify/", json={"key": value}, headers=service_key).json
    assert set(answer) == ACTIVE_FIELDS
    assert answer["key_id"] == key.public_id
    assert answer["label"] == "billing"
    assert answer["scopes"] == ["user:read", "key:verify"]
    assert answer["expires_at"] == expires.isoformat().replace("+00:00", "Z")
    assert datetime.fromisoformat(answer["created_at"]) == key.created_at
    assert (answer["rolled"], answer["old_value_expires_at"]) == (False, None)
    assert answer["user"] == {"id": user.id, "email": "alice@example.com"}
    assert answer["owner"] == {"type": "user", "id": user.id, "email": "alice@example.com"}


def test_malformed_key_costs_no_query(client, user, make_key, service_key):
    """A bad checksum is judged without the database: verify's one round trip is the caller's."""
    _, value = make_key(user)
    subject = bad_checksum(value)
    client.post("/api/verify/", json={"key": value}, headers=service_key)  # last_used written
    with recorded_sql() as statements, hot_path_round_trips() as trips:
        answer = client.post("/api/verify/", json={"key": subject}, headers=service_key).json
    assert answer["code"] == "malformed"
    assert statements == []
    assert len(trips) == 1

    with recorded_sql() as statements, hot_path_round_trips() as trips:
        assert service.verify_key(subject).code == "malformed"
    assert statements == [] and trips == []


def test_malformed_key_is_answered_with_the_database_down(database_url):
    """Proof by outage: with no reachable database a malformed key is still judged."""
    from keyvault import create_app
    from tests.conftest import base_overrides

    broken = create_app(
        {
            **base_overrides(database_url),
            "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://x:pw@127.0.0.1:1/none",
        }
    )
    with broken.app_context():
        value = tokens.generate()
        assert service.verify_key(bad_checksum(value)).code == "malformed"
        assert service.verify_key("kv_short").code == "malformed"
        with pytest.raises(OperationalError):
            service.verify_key(value)


def test_caller_and_subject_take_one_round_trip(client, user, make_key, service_key):
    """Verify looks up the caller's key and the presented key in a single statement."""
    _, value = make_key(user)
    client.post("/api/verify/", json={"key": value}, headers=service_key)  # last_used written
    with recorded_sql() as statements, hot_path_round_trips() as trips:
        assert client.post("/api/verify/", json={"key": value}, headers=service_key).json["active"]
    assert statements == []
    assert len(trips) == 1


def test_caller_needs_key_verify(client, user, make_key):
    """A caller key without key:verify is 403 insufficient_scope."""
    _, caller = make_key(user, scopes=["personal_api_key:write", "user:read"])
    _, subject = make_key(user)
    response = client.post("/api/verify/", json={"key": subject}, headers=bearer(caller))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert "active" not in response.json


@pytest.mark.parametrize(("caller", "challenge_error"), [(None, False), ("wrong", True)])
def test_caller_must_present_a_valid_key(client, user, make_key, caller, challenge_error):
    """No caller key is 401 with a bare challenge; a wrong one is 401 invalid_token."""
    _, subject = make_key(user)
    headers = bearer(tokens.generate()) if caller else {}
    response = client.post("/api/verify/", json={"key": subject}, headers=headers)
    assert response.status_code == 401
    assert ('error="invalid_token"' in response.headers["WWW-Authenticate"]) is challenge_error
    assert subject not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"token": "{value}"}, "valid"),
        ({"token": "{value}", "scopes": "user:read"}, "valid"),
        ({"token": "{value}", "scope": "user:read key:verify"}, "insufficient_scope"),
        ({"key": "{value}"}, "valid"),
        ({"token": "nonsense"}, "malformed"),
    ],
)
def test_rfc7662_form_body(client, user, make_key, service_key, form, code):
    """A form body with token= (RFC 7662 introspection style) is accepted too."""
    _, value = make_key(user, scopes=["user:read"])
    data = {name: field.format(value=value) for name, field in form.items()}
    response = client.post("/api/verify/", data=data, headers=service_key)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["code"] == code
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"scopes": []},
        {"key": None},
        {"key": 5},
        {"key": "kv_x", "scopes": "user:read"},
        {"key": "kv_x", "scopes": [5]},
        {"key": "kv_x", "token": 5},
    ],
)
def test_bad_requests_are_400(client, service_key, body):
    """A request that is not well-formed is a 400, not a verdict."""
    response = client.post("/api/verify/", json=body, headers=service_key)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_revoke_takes_effect_on_the_next_call(client, user, make_key, service_key):
    """Revoking through the API: the very next verify answers revoked."""
    key, value = make_key(user, scopes=["*"])
    assert client.post("/api/verify/", json={"key": value}, headers=service_key).json["active"]
    assert (
        client.delete(f"/api/personal_api_keys/{key.public_id}/", headers=bearer(value)).status_code
        == 204
    )
    answer = client.post("/api/verify/", json={"key": value}, headers=service_key).json
    assert answer == {"active": False, "code": "revoked"}


def test_roll_takes_effect_on_the_next_call(client, user, make_key, service_key):
    """After a roll without grace the old value is dead and the new one valid, at once."""
    key, old = make_key(user, scopes=["*"])
    assert client.post("/api/verify/", json={"key": old}, headers=service_key).json["active"]
    new = client.post(f"/api/personal_api_keys/{key.public_id}/roll/", headers=bearer(old)).json[
        "value"
    ]
    assert client.post("/api/verify/", json={"key": old}, headers=service_key).json == {
        "active": False,
        "code": "not_found",
    }
    answer = client.post("/api/verify/", json={"key": new}, headers=service_key).json
    assert answer["active"] is True and answer["key_id"] == key.public_id


def test_expiry_takes_effect_at_the_instant(client, user, make_key, service_key, monkeypatch):
    """A key valid just before its expires_at answers expired once the clock reaches it."""
    start = clock.now()
    expires = start + timedelta(seconds=2)
    _, value = make_key(user, expires_at=expires)
    monkeypatch.setattr(clock, "now", lambda: expires - timedelta(microseconds=1))
    assert client.post("/api/verify/", json={"key": value}, headers=service_key).json["active"]
    monkeypatch.setattr(clock, "now", lambda: expires)
    answer = client.post("/api/verify/", json={"key": value}, headers=service_key).json
    assert answer == {"active": False, "code": "expired"}


def test_last_used_at_is_written_at_most_once_a_minute(
    client, user, make_key, service_key, monkeypatch
):
    """Verify records last_used_at; within the minute no UPDATE at all; after it, again."""
    key, value = make_key(user)
    start = clock.now()

    def last_used():
        db.session.expire_all()
        return db.session.get(ApiKey, key.id).last_used_at

    assert last_used() is None
    monkeypatch.setattr(clock, "now", lambda: start)
    with hot_path_round_trips() as first:
        client.post("/api/verify/", json={"key": value}, headers=service_key)
    assert len(first) == 3  # the lookup, then one UPDATE each for the caller's and the user's key
    assert [sql.split()[0] for sql in first] == ["SELECT", "UPDATE", "UPDATE"]
    assert last_used() == start

    monkeypatch.setattr(clock, "now", lambda: start + timedelta(seconds=59))
    with hot_path_round_trips() as second, recorded_sql() as statements:
        assert client.post("/api/verify/", json={"key": value}, headers=service_key).json["active"]
    assert len(second) == 1 and statements == []  # the lookup only: no write
    assert last_used() == start

    later = start + timedelta(seconds=61)
    monkeypatch.setattr(clock, "now", lambda: later)
    with hot_path_round_trips() as third:
        client.post("/api/verify/", json={"key": value}, headers=service_key)
    assert len(third) == 3
    assert last_used() == later


def test_api_use_updates_last_used_at(client, user, make_key, monkeypatch):
    """Authenticating any API call counts as a use, shown through the API itself."""
    _, value = make_key(user, scopes=["*"])
    now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: now)
    current = client.get("/api/personal_api_keys/@current/", headers=bearer(value)).json
    assert current["last_used_at"] == now.isoformat().replace("+00:00", "Z")


def test_hot_path_reconnects_after_the_database_drops_its_connections(
    client, user, make_key, service_key, database_url
):
    """A server restart (or a killed backend) costs no failed verify: the connection is renewed."""
    _, value = make_key(user)
    assert client.post("/api/verify/", json={"key": value}, headers=service_key).json["active"]
    store = keystore.keystore()
    if database_url.startswith("postgresql"):
        with db.engine.connect() as conn:  # what a restart does to every pooled connection
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        assert killed >= 1
    else:
        store.held()[0].dbapi_connection.close()  # the connection dies behind our back
    answer = client.post("/api/verify/", json={"key": value}, headers=service_key).json
    assert answer["active"] is True


@pytest.mark.parametrize(
    "body",
    [
        dict(json={}),
        dict(json=[1]),
        dict(data="{x", content_type="application/json"),
        dict(data="plain", content_type="text/plain"),
    ],
)
def test_a_wrong_caller_hears_401_before_any_complaint_about_the_body(client, body):
    """Authentication is judged first: a bad caller learns nothing about body validation."""
    response = client.post("/api/verify/", headers=bearer(tokens.generate()), **body)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_caller_without_key_verify_hears_403_before_body_errors(client, user, make_key):
    _, value = make_key(user, scopes=["user:read"])
    response = client.post("/api/verify/", headers=bearer(value), json={})
    assert response.status_code == 403


def test_a_good_caller_with_a_bad_body_gets_400(client, service_key):
    response = client.post("/api/verify/", headers=service_key, json={"scopes": []})
    assert response.status_code == 400
    assert response.json["field"] == "key"


@pytest.mark.parametrize(("user_name", "status"), [("flags-service", 200), ("", 200)])
def test_the_caller_may_send_its_key_as_http_basic_password(client, user, make_key, service_key,
                                                            user_name, status):
    """RFC 7662 §2.1: an introspection client authenticates with client credentials; the
    service's key is the password, any user name. On the fast path (JSON) and in Flask (form)."""
    import base64

    caller = service_key["Authorization"].removeprefix("Bearer ")
    _, value = make_key(user)
    basic = {"Authorization": "Basic " + base64.b64encode(
        f"{user_name}:{caller}".encode()).decode()}
    for body in (dict(json={"key": value}), dict(data={"token": value})):
        response = client.post("/api/verify/", headers=basic, **body)
        assert response.status_code == status and response.json["active"] is True


@pytest.mark.parametrize("credentials", ["x:kv_wrong", "no-colon", "%%%"])
def test_a_wrong_basic_password_is_401(client, user, make_key, credentials):
    import base64

    _, value = make_key(user)
    encoded = base64.b64encode(credentials.encode()).decode() if credentials != "%%%" else "%%%"
    response = client.post("/api/verify/", json={"key": value},
                           headers={"Authorization": f"Basic {encoded}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_basic_is_for_verify_only(client, user, make_key):
    """Elsewhere a key travels as Bearer: Basic is not a credential for the rest of the API."""
    import base64

    _, value = make_key(user, scopes=["*"])
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{value}".encode()).decode()}
    assert client.get("/api/users/@me/", headers=basic).status_code == 401
    assert client.get("/api/forward_auth/", headers=basic).status_code == 401
