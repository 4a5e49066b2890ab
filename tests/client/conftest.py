"""Fixtures for keyvault-client's tests: a service key on the live KeyVault, keys to present,
and small real servers standing in for a KeyVault that is down, silent or broken."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import pytest
from keyvault_client import AsyncKeyVaultClient, KeyVaultClient

from keyvault import service, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey

SCOPE = "user:read"  # what the guarded test apps require
OTHER_SCOPE = "personal_api_key:read"


def run_async(coroutine):
    """asyncio.run in a thread of its own: Playwright's sync API (the browser tests, earlier in
    the same session) leaves an event loop running in the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def service_key(make_user, make_key) -> str:
    """This service's own key on the live KeyVault, allowed to call verify."""
    return make_key(make_user("service@example.com"), label="verifier", scopes=["key:verify"])[1]


@pytest.fixture
def kv(live_server, service_key):
    with KeyVaultClient(live_server.url, service_key, timeout=10) as client:
        yield client


@pytest.fixture
def async_kv_factory(live_server, service_key):
    """Builds an AsyncKeyVaultClient inside the event loop that will use it."""
    return lambda: AsyncKeyVaultClient(live_server.url, service_key, timeout=10)


class Keys(NamedTuple):
    """One key value in each state a guard must tell apart."""

    valid: str
    other_scope: str
    revoked: str
    expired: str
    unknown: str


@pytest.fixture
def keys(user, make_key) -> Keys:
    _, valid = make_key(user, label="valid", scopes=[SCOPE])
    _, other = make_key(user, label="other scope", scopes=[OTHER_SCOPE])
    revoked_key, revoked = make_key(user, label="revoked", scopes=[SCOPE])
    service.revoke_key(user, revoked_key.public_id, service.Origin("127.0.0.1", "pytest"))
    expired_key, expired = make_key(user, label="expired", scopes=[SCOPE],
                                    expires_at=datetime.now(UTC) + timedelta(hours=1))
    expire_now(expired_key)
    return Keys(valid, other, revoked, expired, tokens.generate())


def expire_now(key: ApiKey) -> None:
    """Move a key's expiry into the past in the database (creating it expired is refused)."""
    row = db.session.get(ApiKey, key.id)
    row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.session.commit()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CannedKeyVault:
    """A real HTTP server that answers every request with one fixed answer, counting
    connections and requests: a KeyVault that is broken in a chosen way."""

    def __init__(self, status: int = 200, body: object = None, port: int = 0):
        canned = self
        self.status = status
        self.body = json.dumps({"active": False, "code": "not_found"} if body is None else body)
        self.connections = 0
        self.requests: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                canned.connections += 1
                super().setup()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                canned.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": self.rfile.read(length)})
                data = canned.body.encode()
                self.send_response(canned.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canned_keyvault():
    """canned_keyvault(status, body) -> a running CannedKeyVault, shut down after the test."""
    started = []

    def start(status: int = 200, body: object = None, port: int = 0) -> CannedKeyVault:
        started.append(CannedKeyVault(status, body, port))
        return started[-1]

    yield start
    for server in started:
        server.close()


class SilentServer:
    """Accepts connections and never answers: a KeyVault slower than any timeout."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def down_url() -> str:
    """KeyVault's address while it is down: a port with nothing listening."""
    return f"http://127.0.0.1:{free_port()}"
