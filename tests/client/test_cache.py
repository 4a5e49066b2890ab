"""keyvault-client's verdict cache (`cache_seconds`) against a real `keyvault serve`: answers
from memory, keyed by a hash (never the key), fail safe when the revocation stream is gone, and
the same option on every guard. (A revoked key refused within a second across two instances:
tests/test_verify_stream.py.)"""

import time

import pytest
from keyvault_client import AsyncKeyVaultClient, KeyVaultClient, KeyVaultUnavailable
from keyvault_client.asgi import KeyVaultASGIMiddleware
from keyvault_client.cache import slot_of
from keyvault_client.fastapi import RequireKey
from keyvault_client.flask import require_key
from keyvault_client.wsgi import KeyVaultMiddleware

from keyvault import service
from tests.client.conftest import SCOPE, run_async
from tests.conftest import start_server, stop_server


def wait_until_heard(client) -> None:
    deadline = time.monotonic() + 10
    while client.cache.ticket() is None:
        assert time.monotonic() < deadline, "the revocation stream never came up"
        time.sleep(0.02)


def test_verdicts_come_from_memory_and_stop_when_the_stream_is_down(database_url, tmp_path,
                                                                     service_key, keys):
    server = start_server(database_url, tmp_path / "serve.log", workers=1)
    try:
        client = KeyVaultClient(server.url, service_key, timeout=2, retries=0, cache_seconds=30)
        wait_until_heard(client)
        valid, refused = client.verify(keys.valid, [SCOPE]), client.verify(keys.revoked, [SCOPE])
        assert client.verify(keys.valid, [SCOPE]) is valid  # no request: the same object
        assert client.verify(keys.revoked, [SCOPE]) is refused and refused.code == "revoked"
        assert client.verify(keys.valid, []) is not valid  # per (key, required scopes)
        assert keys.valid not in repr(client.cache._entries)  # a hash, never the key
    finally:
        stop_server(server)
    time.sleep(2.3)  # the stream has been down for more than 2 s
    with pytest.raises(KeyVaultUnavailable):  # asked KeyVault again, which is gone
        client.verify(keys.valid, [SCOPE])
    client.close()


def test_an_answer_overtaken_by_an_event_is_not_kept(live_server, service_key, user, make_key):
    """The race a ticket closes: verify reads the key as valid, the key is revoked, the
    revocation's event reaches the cache, and only then does the valid answer arrive. Kept, it
    would be served for cache_seconds after the revocation."""
    key, value = make_key(user, label="overtaken", scopes=[SCOPE])
    client = KeyVaultClient(live_server.url, service_key, timeout=10, cache_seconds=60)
    plain = KeyVaultClient(live_server.url, service_key, timeout=10)
    try:
        wait_until_heard(client)
        cache, slot = client.cache, slot_of(value, [SCOPE])
        ticket = cache.ticket()
        answer = plain.verify(value, [SCOPE])  # the answer on its way: valid
        assert answer.active
        service.revoke_key(user, key.public_id, service.Origin("127.0.0.1", "pytest"))
        deadline = time.monotonic() + 10
        while cache.ticket() == ticket:  # the revocation's event is heard
            assert time.monotonic() < deadline, "the revocation was never heard"
            time.sleep(0.02)
        assert cache.ticket() is not None, "the stream dropped: no event was heard"
        cache.put(slot, answer, ticket)  # the answer arrives after its event
        assert cache.get(slot) is None
        assert client.verify(value, [SCOPE]).code == "revoked"
        _, other = make_key(user, label="kept", scopes=[SCOPE])
        kept = plain.verify(other, [SCOPE])
        for _ in range(5):  # with no event since its ticket (another test's key may expire)
            fresh = cache.ticket()
            cache.put(slot_of(other, [SCOPE]), kept, fresh)
            if cache.ticket() == fresh:
                break
        assert cache.get(slot_of(other, [SCOPE])) is kept  # an answer is kept
    finally:
        client.close()
        plain.close()


@pytest.mark.parametrize("cache_seconds", [-1, 301])
def test_cache_seconds_is_at_most_300(live_server, service_key, cache_seconds):
    with pytest.raises(ValueError, match="cache_seconds"):
        KeyVaultClient(live_server.url, service_key, cache_seconds=cache_seconds)


@pytest.mark.parametrize("make_guard, client_class", [
    (lambda c: require_key(c, [SCOPE], cache_seconds=5), KeyVaultClient),
    (lambda c: KeyVaultMiddleware(lambda e, s: [], c, [SCOPE], cache_seconds=5), KeyVaultClient),
    (lambda c: KeyVaultASGIMiddleware(None, c, [SCOPE], cache_seconds=5), AsyncKeyVaultClient),
    (lambda c: RequireKey(c, [SCOPE], cache_seconds=5), AsyncKeyVaultClient),
])
def test_every_guard_takes_cache_seconds(live_server, service_key, keys, make_guard,
                                         client_class):
    async def build_and_check():
        client = client_class(live_server.url, service_key, timeout=10)
        make_guard(client)
        wait_until_heard(client)
        first = client.verify(keys.valid, [SCOPE])
        first = await first if client_class is AsyncKeyVaultClient else first
        again = client.verify(keys.valid, [SCOPE])
        again = await again if client_class is AsyncKeyVaultClient else again
        closing = client.aclose() if client_class is AsyncKeyVaultClient else None
        if closing is not None:
            await closing
        else:
            client.close()
        return client.cache.seconds, first, again

    seconds, first, again = run_async(build_and_check())
    assert seconds == 5 and first.active and again is first
