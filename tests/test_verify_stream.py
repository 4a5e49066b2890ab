"""GET /api/verify/events, the revocation stream: who may read it (test client), and what it
says on the wire under `keyvault serve` — events as they happen, resuming with Last-Event-ID,
heartbeats, expiries found by time — and a cached keyvault-client refusing a revoked key
within a second. On PostgreSQL across two instances; on SQLite across one's two workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from keyvault_client import KeyVaultClient

from keyvault import service
from keyvault.extensions import db
from keyvault.models import User

from .conftest import start_server, stop_server

POSTGRES = bool(os.environ.get("KEYVAULT_TEST_DATABASE_URL"))
ORIGIN = service.Origin("127.0.0.1", "pytest")


@pytest.fixture(scope="module")
def servers(database_url, tmp_path_factory):
    """Two doors onto one database: two instances on PostgreSQL, one instance's two workers on
    SQLite (one file: instances side by side would be one machine anyway)."""
    env = {"KEYVAULT_STREAM_HEARTBEAT_SECONDS": "1", "KEYVAULT_STREAM_POLL_MS": "50"}
    logs = tmp_path_factory.mktemp("stream")
    if POSTGRES:
        started = [start_server(database_url, logs / f"serve{n}.log", workers=1, extra_env=env)
                   for n in (1, 2)]
    else:
        started = [start_server(database_url, logs / "serve.log", workers=2, extra_env=env)]
    yield [server.url for server in started] * (2 // len(started))
    for server in started:
        stop_server(server)


@pytest.fixture
def verifier_key(make_user, make_key) -> str:
    return make_key(make_user("service@example.com"), label="verifier", scopes=["key:verify"])[1]


# ---------------------------------------------------------------- who may read it


@pytest.mark.parametrize("credential, status", [
    (None, 401),
    ("kv_" + "A" * 46, 401),
    ("user:read", 403),
])
def test_the_stream_needs_a_verify_key(client, make_user, make_key, credential, status):
    if credential == "user:read":
        credential = make_key(make_user("other@example.com"), scopes=["user:read"])[1]
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    answer = client.get("/api/verify/events?timeout=0", headers=headers)
    assert answer.status_code == status
    assert answer.mimetype == "application/problem+json"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_last_event_id_is_400(client, verifier_key):
    answer = client.get("/api/verify/events", headers={"Authorization": f"Bearer {verifier_key}",
                                                       "Last-Event-ID": "yesterday"})
    assert answer.status_code == 400
    assert "Last-Event-ID" in answer.json["detail"]


def test_any_wsgi_server_answers_a_bounded_stream(client, verifier_key, user, make_key):
    """Without keyvault serve's bridge the same view reads the database itself, until timeout."""
    key, _ = make_key(user, scopes=["user:read"])
    service.revoke_key(user, key.public_id, ORIGIN)
    answer = client.get("/api/verify/events?timeout=1", headers={
        "Authorization": f"Bearer {verifier_key}", "Last-Event-ID": "0"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    assert [event["event"] for _, event in events_in(answer.data) if event["key_id"]
            == key.public_id] == ["revoked"]


def test_a_wsgi_stream_ends_when_its_callers_key_is_revoked(app, client, make_user, make_key,
                                                             user):
    """The bounded stream of another WSGI server: the caller's own revocation is its last
    frame, long before the timeout; another key's change before it does not end it."""
    owner = make_user("service2@example.com")
    caller, value = make_key(owner, label="verifier", scopes=["key:verify"])
    other, _ = make_key(user, scopes=["user:read"])
    owner_id, user_id = owner.id, user.id

    def revoke_both() -> None:
        time.sleep(0.5)
        with app.app_context():
            service.revoke_key(db.session.get(User, user_id), other.public_id, ORIGIN)
            time.sleep(0.5)
            service.revoke_key(db.session.get(User, owner_id), caller.public_id, ORIGIN)

    revoker = threading.Thread(target=revoke_both)
    started = time.monotonic()
    revoker.start()
    answer = client.get("/api/verify/events?timeout=20",
                        headers={"Authorization": f"Bearer {value}"})
    body = answer.get_data()  # read to its end: the stream is a generator
    revoker.join()
    assert answer.status_code == 200 and time.monotonic() - started < 10
    assert [(e["key_id"], e["event"]) for _, e in events_in(body)] == [
        (other.public_id, "revoked"), (caller.public_id, "revoked")]


def test_a_stream_ends_when_its_callers_own_key_is_revoked(servers, make_user, make_key, user):
    """Under keyvault serve: a verifier whose key is revoked hears that last, then the stream
    ends; reconnecting is refused. Another key's revocation before it changes nothing."""
    owner = make_user("leaving@example.com")
    caller, value = make_key(owner, label="verifier", scopes=["key:verify"])
    other, _ = make_key(user, label="other", scopes=["user:read"])
    live = Stream(servers[0], value)
    try:
        live.read_until(b": connected", 5)
        service.revoke_key(user, other.public_id, ORIGIN)
        live.read_until(other.public_id.encode(), 3)  # still open after someone else's change
        service.revoke_key(owner, caller.public_id, ORIGIN)
        text = live.read_until(caller.public_id.encode(), 3)
        assert [e["event"] for _, e in events_in(text) if e["key_id"] == caller.public_id] \
            == ["revoked"]
        rest = live.read_to_end(3)  # heartbeats come every second while a stream is open
        assert b"heartbeat" not in rest, rest
    finally:
        live.close()
    again = requests.get(f"{servers[0]}/api/verify/events",
                         headers={"Authorization": f"Bearer {value}"}, timeout=5)
    assert again.status_code == 401


def test_a_last_event_id_past_every_id_is_a_whole_empty_stream(servers, client, verifier_key):
    """3000000000 fits no PostgreSQL `integer`: no event lies after it, and the stream is whole
    (it was cut short without its last chunk when the database refused the comparison)."""
    raw = Stream(servers[0], verifier_key, last_event_id="3000000000", query="?timeout=0")
    try:  # raw bytes to keyvault serve, the chunked answer read to its last chunk
        body = raw.read_to_end(5)
    finally:
        raw.close()
    assert events_in(body) == [] and b": connected" in body
    answer = client.get("/api/verify/events?timeout=0", headers={
        "Authorization": f"Bearer {verifier_key}", "Last-Event-ID": "3000000000"})
    assert answer.status_code == 200
    body = answer.get_data()
    assert events_in(body) == [] and b": connected" in body


# ---------------------------------------------------------------- on the wire


class Stream:
    """A raw HTTP/1.1 client reading the stream as it comes (chunked encoding taken apart)."""

    def __init__(self, url: str, key: str, last_event_id: str | None = None, query: str = ""):
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        self.sock.sendall(f"GET /api/verify/events{query} HTTP/1.1\r\nHost: {host}\r\n"
                          f"Authorization: Bearer {key}\r\n{extra}\r\n".encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n", time.monotonic() + 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        self.text = b""

    def _until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            assert data, "the server closed the stream"
            self.buffer += data
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    def read_until(self, wanted: bytes, seconds: float) -> bytes:
        """The stream's text up to and including the frame that holds `wanted`."""
        deadline = time.monotonic() + seconds
        while wanted not in self.text:
            size = int(self._until(b"\r\n", deadline), 16)
            while len(self.buffer) < size + 2:
                self.buffer += self.sock.recv(65536)
            self.text += self.buffer[:size]
            self.buffer = self.buffer[size + 2:]
        return self.text

    def read_to_end(self, seconds: float) -> bytes:
        """The rest of the stream, up to its last (empty) chunk: the response is complete. Fails
        when that does not come within `seconds` (the connection stays open: keep-alive)."""
        deadline, rest = time.monotonic() + seconds, b""
        while size := int(self._until(b"\r\n", deadline), 16):
            while len(self.buffer) < size + 2:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                self.buffer += self.sock.recv(65536)
            rest += self.buffer[:size]
            self.buffer = self.buffer[size + 2:]
        return rest

    def close(self) -> None:
        self.sock.close()


def events_in(text: bytes) -> list[tuple[int, dict]]:
    found = []
    for block in text.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line
                      and not line.startswith(b":"))
        if b"data" in fields:
            found.append((int(fields[b"id"]), json.loads(fields[b"data"])))
    return found


def test_events_resume_heartbeat_and_expiry_on_the_real_server(servers, verifier_key, user,
                                                               make_key):
    first, second = servers
    revoked, _ = make_key(user, label="revoked", scopes=["user:read"])
    expiring, _ = make_key(user, label="expiring", scopes=["user:read"],
                           expires_at=datetime.now(UTC) + timedelta(seconds=2))
    live = Stream(first, verifier_key)
    try:
        assert b": connected" in live.read_until(b": connected", 5)
        service.revoke_key(user, revoked.public_id, ORIGIN)
        text = live.read_until(revoked.public_id.encode(), 3)
        (event_id, event), = events_in(text)
        assert event == {"key_id": revoked.public_id, "event": "revoked", "at": event["at"]}
        assert b": heartbeat" in live.read_until(b": heartbeat", 2.5)  # 1 s in this module
        text = live.read_until(expiring.public_id.encode(), 6)  # nothing is written at expiry
        assert [e["event"] for _, e in events_in(text) if e["key_id"] == expiring.public_id] \
            == ["expired"]
    finally:
        live.close()
    resumed = Stream(second, verifier_key, last_event_id=str(event_id - 1))
    try:
        text = resumed.read_until(expiring.public_id.encode(), 3)
        assert [(e["key_id"], e["event"]) for _, e in events_in(text)] == [
            (revoked.public_id, "revoked"), (expiring.public_id, "expired")]
    finally:
        resumed.close()


def test_a_cached_client_refuses_a_revoked_key_within_a_second(servers, verifier_key, user,
                                                               make_key):
    """The client's cache on one door; the DELETE through the other."""
    first, second = servers
    subject, value = make_key(user, label="subject", scopes=["user:read"])
    _, manager = make_key(user, label="manager", scopes=["personal_api_key:write"])
    with KeyVaultClient(first, verifier_key, timeout=10, cache_seconds=60) as client:
        deadline = time.monotonic() + 5
        while client.cache.ticket() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        warm = client.verify(value, ["user:read"])
        assert warm.active and client.verify(value, ["user:read"]) is warm  # from memory
        answer = requests.delete(f"{second}/api/personal_api_keys/{subject.public_id}/",
                                 headers={"Authorization": f"Bearer {manager}"}, timeout=10)
        assert answer.status_code == 204
        revoked_at = time.monotonic()
        while client.verify(value, ["user:read"]).active:
            assert time.monotonic() - revoked_at < 1.0, "still valid a second after DELETE"
            time.sleep(0.005)
        assert client.verify(value, ["user:read"]).code == "revoked"


def test_a_worker_reads_the_events_from_its_start_not_from_its_first_read(app, user,
                                                                          make_key):
    """The worker's reader takes its position as the worker starts, before any stream opens:
    a change committed before its first read (a worker slow to make it, under load) still
    reaches the streams. Before, the first read took the newest id as its start and skipped it."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from keyvault.server.stream import Broadcaster

    key, _ = make_key(user, label="revoked early", scopes=["user:read"])
    broadcaster = Broadcaster(app)

    def start_as_a_worker() -> None:  # a loop of its own, in a thread: Playwright's sync API
        loop = asyncio.new_event_loop()  # may hold one in the main thread (client conftest)
        broadcaster.start(loop)  # the reading task is made, never run
        broadcaster._task.cancel()
        loop.run_until_complete(asyncio.gather(broadcaster._task, return_exceptions=True))
        loop.close()

    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(start_as_a_worker).result()
        service.revoke_key(user, key.public_id, ORIGIN)
        assert [(c.key_id, c.event) for c in broadcaster._step()] == [
            (key.public_id, "revoked")]
    finally:
        broadcaster.stop()


def test_a_cached_client_hears_when_a_keys_addresses_are_narrowed(servers, verifier_key, user,
                                                                   make_key):
    """The cache keys a verdict on the client address it was asked for; narrowing the key's
    allowed addresses (through the other door) drops it within a second."""
    first, second = servers
    subject, value = make_key(user, label="office", scopes=["user:read"],
                              allowed_ips=["203.0.113.0/24"])
    _, manager = make_key(user, label="manager", scopes=["personal_api_key:write"])
    with KeyVaultClient(first, verifier_key, timeout=10, cache_seconds=60) as client:
        deadline = time.monotonic() + 5
        while client.cache.ticket() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        warm = client.verify(value, ["user:read"], client_ip="203.0.113.7")
        assert warm.active and client.verify(value, ["user:read"],
                                             client_ip="203.0.113.7") is warm
        answer = requests.patch(f"{second}/api/personal_api_keys/{subject.public_id}/",
                                json={"allowed_ips": ["203.0.113.128/25"]},
                                headers={"Authorization": f"Bearer {manager}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        narrowed_at = time.monotonic()
        while client.verify(value, ["user:read"], client_ip="203.0.113.7").active:
            assert time.monotonic() - narrowed_at < 1.0, "still valid a second after the change"
            time.sleep(0.005)
        assert client.verify(value, ["user:read"],
                             client_ip="203.0.113.7").code == "ip_not_allowed"


def test_a_cached_refusal_goes_when_the_key_is_widened_or_its_owner_activated(
        servers, verifier_key, make_user, make_key):
    """A refusal names no key, so the cache drops every refusal on any event; scopes added
    and an owner activated again are events (scopes_widened, owner_activated)."""
    owner = make_user("widened@example.com")
    subject, value = make_key(owner, label="narrow", scopes=["user:read"])
    with KeyVaultClient(servers[0], verifier_key, timeout=10, cache_seconds=60) as client:
        deadline = time.monotonic() + 5
        while client.cache.ticket() is None and time.monotonic() < deadline:
            time.sleep(0.02)

        def comes_true(check, what: str) -> None:
            changed_at = time.monotonic()
            while not check():
                assert time.monotonic() - changed_at < 1.0, f"still refused a second after {what}"
                time.sleep(0.005)

        refused = client.verify(value, ["personal_api_key:read"])
        assert refused.code == "insufficient_scope"
        assert client.verify(value, ["personal_api_key:read"]) is refused  # from memory
        service.update_key(owner, subject.public_id, origin=ORIGIN, may_widen=True,
                           scopes=["user:read", "personal_api_key:read"])
        comes_true(lambda: client.verify(value, ["personal_api_key:read"]).active,
                   "the scope was added")

        service.set_user_active(None, owner.id, False, ORIGIN)
        comes_true(lambda: client.verify(value, ["user:read"]).code == "user_inactive",
                   "the owner was deactivated")
        assert client.verify(value, ["user:read"]).code == "user_inactive"
        service.set_user_active(None, owner.id, True, ORIGIN)
        comes_true(lambda: client.verify(value, ["user:read"]).active, "the owner was activated")


def test_limits_and_restrictions_set_on_keys_and_pools_are_told(app, make_user, make_key):
    from keyvault.service import key_changes
    from keyvault.service.limit_terms import RateTerms

    owner = make_user("owner@example.com")
    organization = service.organizations.create_organization(owner, "Acme", ORIGIN).organization
    account = service.service_accounts.create_service_account(
        owner, organization.public_id, ORIGIN, name="bot")
    bot_key, _ = service.service_accounts.create_account_key(
        owner, organization.public_id, account.public_id, ORIGIN, label="bot",
        scopes=["user:read"])
    person_key, _ = make_key(owner, label="mine", scopes=["user:read"])
    since = key_changes.latest_id()
    service.key_limits.set_key_limits(owner, person_key.public_id, origin=ORIGIN,
                                      rate_limit=RateTerms(5, 60))
    db.session.commit()
    service.update_key(owner, person_key.public_id, origin=ORIGIN, label="renamed")
    service.service_accounts.update_service_account(
        owner, organization.public_id, account.public_id, ORIGIN, rate_limit=RateTerms(9, 60))
    told = [(c.key_id, c.event) for c in key_changes.read_after(since)]
    assert told == [(person_key.public_id, "restrictions_changed"),  # a rename tells nothing
                    (bot_key.public_id, "restrictions_changed")]


@pytest.mark.parametrize("last_event_id", ["4611686018427387905", "9999999999999999999"])
def test_every_last_event_id_the_document_allows_is_taken(client, verifier_key, last_event_id):
    """The document allows any 19 digits (past 2**62, past PostgreSQL's bigint too): each
    resumes after every event, where it was 400 (schemathesis found it)."""
    answer = client.get("/api/verify/events?timeout=0", headers={
        "Authorization": f"Bearer {verifier_key}", "Last-Event-ID": last_event_id})
    assert answer.status_code == 200
    assert events_in(answer.get_data()) == []
    too_long = client.get("/api/verify/events?timeout=0", headers={
        "Authorization": f"Bearer {verifier_key}", "Last-Event-ID": last_event_id + "0"})
    assert too_long.status_code == 400
    assert "9999999999999999999" in too_long.json["detail"]


def test_sigterm_ends_open_streams_and_the_server_exits_in_seconds(database_url, tmp_path,
                                                                    verifier_key):
    """An open stream never ends by itself and granian waits for open requests before a worker
    stops: each worker ends its streams when told to stop (on uvloop too, whose handlers no one
    can read), so SIGTERM stops the server in seconds, not at granian's 30 s kill timeout, each
    stream ends whole (its last chunk: the client reconnects elsewhere), and each is logged."""
    server = start_server(database_url, tmp_path / "serve.log", workers=2)
    streams = []
    try:
        streams = [Stream(server.url, verifier_key) for _ in range(4)]
        for stream in streams:
            assert b": connected" in stream.read_until(b": connected", 5)
        asked = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for stream in streams:
            stream.read_to_end(10)
        assert server.process.wait(timeout=30) == 0
        assert time.monotonic() - asked < 10, "a stream held a worker until it was killed"
    finally:
        for stream in streams:
            stream.close()
        if server.process.poll() is None:
            stop_server(server)
    assert server.log().count("GET /api/verify/events") == 4


def test_an_organisations_events_tell_of_its_services_keys_too(app, make_user):
    """A service's own verify keys belong to its organisation as its service accounts' keys do:
    deactivating, activating or deleting the organisation, or deleting the service, is told
    for them too (a verifier caching their verdicts asks again)."""
    from keyvault.service import key_changes

    owner = make_user("owner@example.com")
    acme = service.organizations.create_organization(owner, "Acme", ORIGIN).organization
    account = service.service_accounts.create_service_account(owner, acme.public_id, ORIGIN,
                                                              name="bot")
    bot_key, _ = service.service_accounts.create_account_key(
        owner, acme.public_id, account.public_id, ORIGIN, label="bot", scopes=["user:read"])
    billing = service.services.create_service(owner, acme.public_id, ORIGIN, name="Billing",
                                              audience="billing")
    billing_key, _ = service.services.create_service_key(owner, acme.public_id,
                                                         billing.public_id, ORIGIN, label="b")
    reports = service.services.create_service(owner, acme.public_id, ORIGIN, name="Reports",
                                              audience="reports")
    reports_key, _ = service.services.create_service_key(owner, acme.public_id,
                                                         reports.public_id, ORIGIN, label="r")
    ids = {bot_key.public_id: "bot", billing_key.public_id: "billing",
           reports_key.public_id: "reports"}
    bot_key, billing_key, reports_key = ids  # plain strings: the rows go with their owners
    acme_id, billing_id, owner_id = acme.public_id, billing.public_id, owner.id

    def told_since(since: int) -> list[tuple[str, str]]:
        return sorted((ids[c.key_id], c.event) for c in key_changes.read_after(since))

    since = key_changes.latest_id()
    service.organizations.set_organization_active(None, acme_id, False, ORIGIN)
    assert told_since(since) == [("billing", "owner_deactivated"), ("bot", "owner_deactivated"),
                                 ("reports", "owner_deactivated")]
    since = key_changes.latest_id()
    service.organizations.set_organization_active(None, acme_id, True, ORIGIN)
    assert told_since(since) == [("billing", "owner_activated"), ("bot", "owner_activated"),
                                 ("reports", "owner_activated")]
    since = key_changes.latest_id()
    service.services.delete_service(owner, acme_id, billing_id, ORIGIN)
    assert told_since(since) == [("billing", "owner_deleted")]
    since = key_changes.latest_id()
    owner = db.session.get(User, owner_id)  # deleting the service let go of every row
    service.organizations.delete_organization(owner, acme_id, ORIGIN)
    assert told_since(since) == [("bot", "owner_deleted"), ("reports", "owner_deleted")]
