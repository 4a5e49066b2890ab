"""KeyVaultClient and AsyncKeyVaultClient against the live KeyVault (`keyvault serve`), and against
real servers standing in for a KeyVault that is down, silent or broken: no verdict is ever made up."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from keyvault_client import (
    AsyncKeyVaultClient,
    KeyVaultClient,
    KeyVaultUnavailable,
    ServiceKeyRejected,
    UnexpectedAnswer,
    Verification,
    is_well_formed,
)

from keyvault import service, tokens
from tests.client.conftest import OTHER_SCOPE, SCOPE, expire_now, free_port, run_async

# ---------------------------------------------------------------- verdicts from the live KeyVault


def test_valid_key_comes_back_with_its_owner_and_scopes(kv, user, make_key):
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    key, value = make_key(user, label="billing", scopes=[SCOPE], expires_at=expires)
    verification = kv.verify(value, [SCOPE])
    assert verification.active is True and verification.code == "valid"
    assert (verification.key_id, verification.label, verification.scopes) == (key.public_id, "billing",
                                                                               (SCOPE,))
    assert (verification.user_id, verification.user_email) == (user.id, "alice@example.com")
    assert verification.expires_at == expires
    assert verification.expires_at.tzinfo is not None
    assert abs(verification.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert verification.rolled is False and verification.old_value_expires_at is None
    assert SCOPE in verification.effective_scopes
    assert verification.ends_at == expires
    assert verification.answer["token_type"] == "bearer"


def test_key_without_expiry_has_none(kv, user, make_key):
    _, value = make_key(user, scopes=["*"])
    verification = kv.verify(value)
    assert verification.active and verification.expires_at is None and verification.ends_at is None


@pytest.mark.parametrize(("state", "code"), [
    ("revoked", "revoked"),
    ("expired", "expired"),
    ("unknown", "not_found"),
    ("other_scope", "insufficient_scope"),
])
def test_inactive_keys_say_why(kv, keys, state, code):
    verification = kv.verify(getattr(keys, state), [SCOPE])
    assert verification == Verification(active=False, code=code)
    assert dict(verification.answer) == {"active": False, "code": code}


def test_revocation_counts_on_the_very_next_call(kv, user, make_key):
    """Nothing is cached: active, revoked, then the next call says revoked."""
    key, value = make_key(user)
    assert kv.verify(value).active
    service.revoke_key(user, key.public_id, service.Origin("127.0.0.1", "pytest"))
    assert kv.verify(value).code == "revoked"


def test_expiry_set_in_the_database_counts_at_once(kv, user, make_key):
    key, value = make_key(user, expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert kv.verify(value).active
    expire_now(key)
    assert kv.verify(value).code == "expired"


def test_scopes_are_checked_by_keyvault(kv, user, make_key):
    _, value = make_key(user, scopes=[SCOPE])
    assert kv.verify(value, [SCOPE]).active
    assert kv.verify(value, [SCOPE, OTHER_SCOPE]).code == "insufficient_scope"
    assert kv.verify(value, []).active


def test_one_string_of_scopes_is_refused(kv, keys):
    with pytest.raises(TypeError):
        kv.verify(keys.valid, SCOPE)


def test_async_client_gives_the_same_verdicts(async_kv_factory, keys):
    async def ask():
        async with async_kv_factory() as client:
            return [await client.verify(value, [SCOPE]) for value in keys]

    valid, other, revoked, expired, unknown = run_async(ask())
    assert valid.active and valid.scopes == (SCOPE,)
    assert [v.code for v in (other, revoked, expired, unknown)] == [
        "insufficient_scope", "revoked", "expired", "not_found"]


def test_one_connection_is_kept_for_many_calls(canned_keyvault, service_key):
    """Keep-alive: ten calls, one TCP connection (to a server that keeps connections open)."""
    server = canned_keyvault()
    with KeyVaultClient(server.url, service_key) as client:
        for _ in range(10):
            assert client.verify(tokens.generate()).code == "not_found"
    assert (server.connections, len(server.requests)) == (1, 10)
    sent = server.requests[0]
    assert sent["path"] == "/api/verify/"
    assert sent["headers"]["Authorization"] == f"Bearer {service_key}"


# ---------------------------------------------------------------- malformed keys: no request at all

MALFORMED = [
    "",
    "kv_",
    "not a key",
    "kv_" + "A" * 46,  # right length and alphabet, wrong checksum
    tokens.generate()[:-1],
    tokens.generate() + "0",
    tokens.generate().replace("_", "-"),
    "k v_" + tokens.generate()[3:],
    "kv_" + "é" * 46,
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_key_is_answered_without_a_request(canned_keyvault, service_key, value):
    server = canned_keyvault()
    with KeyVaultClient(server.url, service_key) as client:
        assert client.verify(value) == Verification(active=False, code="malformed")
        assert server.connections == 0
        client.verify(tokens.generate())  # the counter does see a well-formed key's request
    assert (server.connections, len(server.requests)) == (1, 1)


def test_async_malformed_key_is_answered_without_a_request(canned_keyvault, service_key):
    server = canned_keyvault()

    async def ask():
        async with AsyncKeyVaultClient(server.url, service_key) as client:
            return await client.verify("kv_" + "A" * 46)

    assert run_async(ask()).code == "malformed"
    assert server.connections == 0


def test_local_check_agrees_with_keyvault(live_server, service_key):
    """Many real keys pass the local checksum; any one changed character fails it, and the
    live KeyVault calls those changed keys malformed as well."""
    values = [tokens.generate() for _ in range(500)]
    assert all(is_well_formed(v) and is_well_formed(v, "kv") for v in values)
    assert not is_well_formed(values[0], "other")
    assert is_well_formed(tokens.generate("abc1"))
    for value in values[:5]:
        changed = value[:10] + ("B" if value[10] != "B" else "C") + value[11:]
        assert not is_well_formed(changed)
    # The server's own verdict on keys that fail the local check: malformed too.
    for value in ["kv_" + "A" * 46, changed]:
        answer = requests.post(f"{live_server.url}/api/verify/", json={"key": value},
                               headers={"Authorization": f"Bearer {service_key}"}, timeout=10)
        assert answer.json() == {"active": False, "code": "malformed"}


# ---------------------------------------------------------------- fail closed


def test_keyvault_down_raises_after_two_retries(down_url, service_key, caplog):
    with (KeyVaultClient(down_url, service_key) as client, caplog.at_level(logging.WARNING),
          pytest.raises(KeyVaultUnavailable, match="unreachable")):
        client.verify(tokens.generate())
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert [r.getMessage()[-12:] for r in retries] == ["retry 1 of 2", "retry 2 of 2"]


def test_a_connection_error_is_retried_until_keyvault_answers(service_key, canned_keyvault):
    """KeyVault comes up during the first retry's pause: the second attempt gets the answer."""
    port = free_port()

    class StartOnFirstRetry(logging.Handler):
        def emit(self, record):
            if "retry 1 of" in record.getMessage():
                canned_keyvault(200, {"active": False, "code": "revoked"}, port=port)

    handler = StartOnFirstRetry()
    logging.getLogger("keyvault_client").addHandler(handler)
    try:
        with KeyVaultClient(f"http://127.0.0.1:{port}", service_key) as client:
            assert client.verify(tokens.generate()).code == "revoked"
    finally:
        logging.getLogger("keyvault_client").removeHandler(handler)


def test_async_keyvault_down_raises(down_url, service_key):
    async def ask():
        async with AsyncKeyVaultClient(down_url, service_key) as client:
            await client.verify(tokens.generate())

    with pytest.raises(KeyVaultUnavailable):
        run_async(ask())


def test_keyvault_slower_than_the_timeout_raises_and_is_not_retried(silent_server, service_key):
    with KeyVaultClient(silent_server.url, service_key, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(KeyVaultUnavailable, match="timed out"):
            client.verify(tokens.generate())
    assert time.monotonic() - started < 2
    assert len(silent_server.accepted) == 1


def test_async_timeout_raises(silent_server, service_key):
    async def ask():
        async with AsyncKeyVaultClient(silent_server.url, service_key, timeout=0.3) as client:
            await client.verify(tokens.generate())

    with pytest.raises(KeyVaultUnavailable, match="timed out"):
        run_async(ask())
    assert len(silent_server.accepted) == 1


@pytest.mark.parametrize(("status", "body", "error"), [
    (500, {"detail": "boom"}, KeyVaultUnavailable),
    (502, "<html>bad gateway</html>", KeyVaultUnavailable),
    (503, {}, KeyVaultUnavailable),
    (429, {"detail": "slow down"}, KeyVaultUnavailable),
    (400, {"detail": "key is required"}, UnexpectedAnswer),
    (404, {"detail": "no such page"}, UnexpectedAnswer),
    (302, {}, UnexpectedAnswer),
    (200, "not json at all", UnexpectedAnswer),
    (200, {"active": "yes", "code": "valid"}, UnexpectedAnswer),
    (200, {"active": True, "code": "revoked"}, UnexpectedAnswer),
    (200, {"active": True, "code": "valid"}, UnexpectedAnswer),  # active, without its fields
    (200, {"active": False}, UnexpectedAnswer),
    (200, [True], UnexpectedAnswer),
])
def test_answers_outside_the_contract_raise_and_are_not_retried(canned_keyvault, service_key, status,
                                                                 body, error):
    server = canned_keyvault(status, body)
    with KeyVaultClient(server.url, service_key) as client, pytest.raises(error):
        client.verify(tokens.generate())
    assert len(server.requests) == 1


def test_an_active_answer_with_a_naive_time_is_not_trusted(canned_keyvault, service_key, kv, keys):
    answer = dict(kv.verify(keys.valid).answer)
    server = canned_keyvault(200, answer)
    with KeyVaultClient(server.url, service_key) as client:
        assert client.verify(tokens.generate()).active  # the live answer, replayed, parses
    naive = canned_keyvault(200, {**answer, "created_at": "2030-01-01T00:00:00"})
    with KeyVaultClient(naive.url, service_key) as client, pytest.raises(UnexpectedAnswer):
        client.verify(tokens.generate())


# ---------------------------------------------------------------- the service's own key refused


def test_unknown_service_key_is_rejected_with_401(live_server, keys):
    with (KeyVaultClient(live_server.url, tokens.generate(), timeout=10) as client,
          pytest.raises(ServiceKeyRejected) as raised):
        client.verify(keys.valid)
    assert raised.value.status == 401


def test_revoked_service_key_is_rejected_with_401(live_server, make_user, make_key, keys):
    owner = make_user("service@example.com")
    key, value = make_key(owner, scopes=["key:verify"])
    service.revoke_key(owner, key.public_id, service.Origin("127.0.0.1", "pytest"))
    with (KeyVaultClient(live_server.url, value, timeout=10) as client,
          pytest.raises(ServiceKeyRejected) as raised):
        client.verify(keys.valid)
    assert raised.value.status == 401


def test_service_key_without_key_verify_is_rejected_with_403(live_server, make_user, make_key, keys):
    _, value = make_key(make_user("service@example.com"), scopes=["user:read"])
    with (KeyVaultClient(live_server.url, value, timeout=10) as client,
          pytest.raises(ServiceKeyRejected) as raised):
        client.verify(keys.valid)
    assert raised.value.status == 403
    assert "key:verify" in raised.value.detail


def test_async_service_key_rejected(live_server, keys):
    async def ask():
        async with AsyncKeyVaultClient(live_server.url, tokens.generate(), timeout=10) as client:
            await client.verify(keys.valid)

    with pytest.raises(ServiceKeyRejected):
        run_async(ask())


def test_client_needs_a_url_and_a_service_key():
    for url, key in [("", "kv_x"), ("http://127.0.0.1:1", "")]:
        with pytest.raises(ValueError):
            KeyVaultClient(url, key)

