"""Verify answers the RFC 7662 members an off-the-shelf introspection client reads: sub,
username, scope, token_type, exp and iat, with their types and meanings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keyvault import service, tokens
from tests.conftest import T0, verify

ORIGIN = service.Origin("127.0.0.1", "pytest")
CATALOGUE = "feature_flag:read,feature_flag:write,billing:read"


@pytest.fixture
def app(make_app):
    """An instance whose catalogue has a service's own scopes besides KeyVault's."""
    app = make_app(KEYVAULT_SCOPES=CATALOGUE)
    with app.app_context():
        yield app


@pytest.fixture
def service_key(make_user, make_key):
    _, value = make_key(make_user("service@example.com"), label="service", scopes=["key:verify"])
    return value


def _epoch(moment) -> int:
    return int(moment.timestamp())


def test_members_and_their_types(client, user, make_key, service_key, frozen):
    key, value = make_key(user, scopes=["feature_flag:read"], expires_at=T0 + timedelta(days=30))
    answer = verify(client, service_key, value)
    assert answer["sub"] == str(user.id) and isinstance(answer["sub"], str)
    assert answer["username"] == user.email
    assert answer["token_type"] == "bearer"
    assert answer["scope"] == "feature_flag:read"
    assert type(answer["exp"]) is int and answer["exp"] == _epoch(T0 + timedelta(days=30))
    assert type(answer["iat"]) is int and answer["iat"] == _epoch(key.created_at)
    # today's fields stay beside them
    assert (answer["user"], answer["scopes"]) == ({"id": user.id, "email": user.email},
                                                  ["feature_flag:read"])


@pytest.mark.parametrize(("granted", "spelled_out"), [
    (["*"], ["personal_api_key:read", "personal_api_key:write", "user:read", "key:verify",
             "metrics:read", "organization:read", "organization:write", "webhook:read",
             "webhook:write", "feature_flag:read", "feature_flag:write", "billing:read", "*"]),
    (["feature_flag:write"], ["feature_flag:read", "feature_flag:write"]),
    (["personal_api_key:write", "billing:read"],
     ["personal_api_key:read", "personal_api_key:write", "billing:read"]),
    (["user:read"], ["user:read"]),
])
def test_scope_spells_out_what_the_key_holds(client, user, make_key, service_key, granted,
                                             spelled_out):
    """A literal check of one scope name in `scope` agrees with KeyVault's own rules: `*`
    holds the whole catalogue, `x:write` holds `x:read`."""
    _, value = make_key(user, scopes=granted)
    answer = verify(client, service_key, value)
    assert answer["scope"].split(" ") == spelled_out
    assert answer["scopes"] == granted
    for scope in CATALOGUE.split(",") + list(service.scope_catalogue()):
        literal = scope in answer["scope"].split(" ")
        assert literal == service.has_scope(granted, scope), scope


def test_exp_is_absent_for_a_key_that_never_expires(client, user, make_key, service_key):
    _, value = make_key(user, scopes=["user:read"])
    answer = verify(client, service_key, value)
    assert "exp" not in answer and type(answer["iat"]) is int


def test_a_rolled_value_is_issued_at_the_roll_and_the_old_one_ends_with_the_grace(
        client, user, make_key, service_key, frozen):
    key, old = make_key(user, scopes=["user:read"], expires_at=T0 + timedelta(days=30))
    frozen.at = T0 + timedelta(days=1)
    _, new = service.roll_key(user, key.public_id, origin=ORIGIN, grace_period_seconds=3600)
    fresh, previous = verify(client, service_key, new), verify(client, service_key, old)
    assert fresh["iat"] == _epoch(T0 + timedelta(days=1))
    assert fresh["exp"] == _epoch(T0 + timedelta(days=30))
    assert previous["rolled"] is True and "iat" not in previous
    assert previous["exp"] == _epoch(T0 + timedelta(days=1, hours=1))  # the grace, not the key


@pytest.mark.parametrize("state", ["revoked", "unknown", "malformed"])
def test_an_inactive_answer_says_only_that(client, user, make_key, service_key, state):
    """RFC 7662 §2.2: an inactive token's answer carries nothing about it."""
    key, value = make_key(user, scopes=["user:read"])
    if state == "revoked":
        service.revoke_key(user, key.public_id, ORIGIN)
    presented = {"revoked": value, "unknown": tokens.generate(), "malformed": "kv_nope"}[state]
    answer = verify(client, service_key, presented)
    assert answer == {"active": False, "code": {"unknown": "not_found"}.get(state, state)}
