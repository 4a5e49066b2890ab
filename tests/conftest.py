"""Shared fixtures: a real database (SQLite file, or PostgreSQL from KEYVAULT_TEST_DATABASE_URL),
the app, a client, users and keys, and a live `keyvault serve` for cross-process tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from flask_migrate import upgrade
from jinja2.bccache import Bucket, BytecodeCache
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.routing import Rule

TEST_SECRET_KEY = "test-secret-key-" + "x" * 32
TEST_PEPPER = "test-pepper-" + "y" * 32
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
PASSWORD = "correct horse battery"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- each test's own app


def _compile_url_builders_once() -> None:
    """Every test builds its own app (make_app), and werkzeug compiles each of the app's ~140
    URL rules into two builder functions through `ast` and `compile`, every time: 90% of
    create_app, half the time of a test that makes one request. A builder depends on its rule's
    parts and defaults only (it reads the converters from the rule it is bound to, when
    called), so the suite compiles each once and binds it to every app's rule as werkzeug does.
    The apps themselves are built whole, their URL maps included."""
    compile_builder = Rule._compile_builder
    compiled: dict = {}

    def compile_once(self: Rule, append_unknown: bool = True):
        key = (append_unknown, tuple(self._trace), repr(sorted((self.defaults or {}).items())),
               tuple((name, type(c)) for name, c in self._converters.items()))
        if key not in compiled:
            compiled[key] = compile_builder(self, append_unknown)
        return compiled[key]

    Rule._compile_builder = compile_once


_compile_url_builders_once()


class CompiledTemplates(BytecodeCache):
    """The templates' compiled code, kept for the whole suite: each test's app has a Jinja
    environment of its own, which compiled every template it rendered anew (a fifth of a test
    that renders pages). Jinja checks each template's source against its checksum, and the key
    holds what of the environment shapes the code (the mail environment's `finalize`, ...)."""

    def __init__(self):
        self.code: dict[str, bytes] = {}

    def get_bucket(self, environment, name, filename, source) -> Bucket:
        shaped_by = [getattr(option, "__qualname__", option) for option in (
            environment.finalize, environment.autoescape, environment.block_start_string,
            environment.variable_start_string, environment.comment_start_string,
            environment.line_statement_prefix, environment.trim_blocks,
            environment.lstrip_blocks, environment.newline_sequence,
            environment.keep_trailing_newline, environment.optimized)]
        key = f"{self.get_cache_key(name, filename)} {shaped_by!r} {sorted(environment.extensions)}"
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


# ---------------------------------------------------------------- the database


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("instance")
    os.environ["KEYVAULT_INSTANCE_PATH"] = str(path)
    return path


# Three `keyvault serve` of 2 workers at once, each worker at most 2 × 8 threads + 8
# (README: The server), and the tests' own connections.
SUITE_CONNECTIONS = 200


@pytest.fixture(scope="session")
def database_url(instance_dir, tmp_path_factory):
    """A fresh, migrated database for this test session; PostgreSQL when KEYVAULT_TEST_DATABASE_URL
    is set (a server that CI starts), else a SQLite file."""
    server_url = os.environ.get("KEYVAULT_TEST_DATABASE_URL")
    if not server_url:
        path = tmp_path_factory.mktemp("db") / "keyvault.db"
        url = f"sqlite:///{path}"
        _migrate(url)
        yield url
        return
    with fresh_postgresql_database(server_url, "kv_test") as url:
        engine = create_engine(url)
        with engine.connect() as conn:
            slots = int(conn.execute(text("SHOW max_connections")).scalar())
        engine.dispose()
        # Fewer, and the soak's servers meet "remaining connection slots are reserved": 503s.
        assert slots >= SUITE_CONNECTIONS, (
            f"the PostgreSQL server allows {slots} connections; the suite runs up to three "
            f"keyvault serve at once and needs max_connections >= {SUITE_CONNECTIONS} "
            "(CONTRIBUTING.md)")
        _migrate(url)
        yield url


@contextmanager
def fresh_postgresql_database(server_url: str, prefix: str):
    """A new, empty database on the server of `server_url`, dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    owner = make_url(server_url).username
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{owner}" TEMPLATE template0'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(url: str) -> None:
    from keyvault import create_app

    app = create_app(base_overrides(url))
    with app.app_context():
        upgrade()
        from keyvault.extensions import db

        db.engine.dispose()


def base_overrides(url: str) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "KEYVAULT_KEY_PEPPER": TEST_PEPPER,
        "KEYVAULT_ARGON2": CHEAP_ARGON2,
    }


def _clear(db) -> None:
    """Empty every table, children first, so each test starts from nothing. On PostgreSQL in
    one round trip (psycopg sends statements without parameters as one simple query): a
    statement each was some 40 ms a test, each table's round trip on a busy machine."""
    tables = reversed(db.metadata.sorted_tables)
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("".join(f'DELETE FROM "{table.name}";' for table in tables))
            return
        for table in tables:
            conn.execute(table.delete())


@pytest.fixture
def make_app(database_url, request):
    """Build an app on the session's database with extra overrides (config per test). A test
    that asks for `smtp_server` gets apps that send their mail to it (KEYVAULT_SMTP_URL)."""
    from keyvault import create_app, keystore
    from keyvault.extensions import db
    from keyvault.service import usage

    built = []
    mail = {}
    if "smtp_server" in request.fixturenames:
        mail["KEYVAULT_SMTP_URL"] = request.getfixturevalue("smtp_server").url

    def factory(**overrides):
        app = create_app({**base_overrides(database_url), **mail, **overrides})
        app.jinja_env.bytecode_cache = COMPILED_TEMPLATES  # its overlays (mail) inherit it
        built.append(app)
        return app

    yield factory
    for app in built:
        with app.app_context():
            db.session.remove()
            _clear(db)
            usage.close(app, write=False)  # counts of this test's keys go nowhere else
            keystore.dispose(app)
            db.engine.dispose()


class FreshContextClient(FlaskClient):
    """Each request gets its own app context, as under a real server: nothing in `g` or the
    database session leaks from the test (or from the previous request) into the next one."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def app(make_app):
    """The app, with an app context held for the test's own service calls."""
    app = make_app()
    app.test_client_class = FreshContextClient
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


# ---------------------------------------------------------------- people and keys


@pytest.fixture
def make_user(app):
    from keyvault import service

    def factory(email: str | None = None, password: str = PASSWORD, **kwargs):
        """An account whose owner has confirmed its address, unless `confirmed=False`."""
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        kwargs.setdefault("confirmed", True)
        return service.sign_up(email, password, service.Origin("127.0.0.1", "pytest"), **kwargs)

    return factory


@pytest.fixture
def user(make_user):
    return make_user("alice@example.com")


@pytest.fixture
def make_key(app):
    """Create a key straight through the service: returns (ApiKey, plaintext value). Full access
    unless `scopes` says otherwise (the service itself takes no default)."""
    from keyvault import service

    def factory(owner, label: str = "test key", **kwargs):
        kwargs.setdefault("scopes", ["*"])
        return service.create_key(owner, label=label,
                                  origin=service.Origin("127.0.0.1", "pytest"), **kwargs)

    return factory


def bad_checksum(value: str) -> str:
    """The same key with its last checksum character changed (never to itself)."""
    return value[:-1] + ("A" if value[-1] != "A" else "B")


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def once_token(html: str, form: str = "create") -> str:
    """The one-time token of the page's create form, or of the roll step's (`form="roll"`)."""
    if form == "create":
        match = re.search(r'id="create-once" name="once" type="hidden" value="([^"]+)"', html)
    else:  # the roll step (GET /settings/api-keys/<id>/roll)
        match = re.search(r'id="roll-once" name="once" type="hidden" value="([^"]+)"', html)
    assert match, f"page has no {form} form"
    return match.group(1)


class AuthActions:
    """Browser-style actions through the test client, with real CSRF tokens."""

    def __init__(self, client):
        self.client = client

    def csrf(self, path: str = "/login") -> str:
        return csrf_from(self.client.get(path).get_data(as_text=True))

    def signup(self, email="bob@example.com", password=PASSWORD):
        token = self.csrf("/signup")
        return self.client.post("/signup", data={"email": email, "password": password,
                                                 "confirm": password, "csrf_token": token})

    def login(self, email="alice@example.com", password=PASSWORD, next_url=""):
        token = self.csrf("/login")
        return self.client.post("/login", data={"email": email, "password": password,
                                                "next": next_url, "csrf_token": token})

    def logout(self):
        token = self.csrf("/settings/api-keys")
        return self.client.post("/logout", data={"csrf_token": token})

    def create_key(self, label="my key", **fields):
        page = self.client.get("/settings/api-keys").get_data(as_text=True)
        data = {"label": label, "expiry": "30", "preset": "full", "csrf_token": csrf_from(page),
                "once": once_token(page), **fields}
        return self.client.post("/settings/api-keys", data=data)


@pytest.fixture
def auth(client):
    return AuthActions(client)


def shown_key(html: str) -> str | None:
    """The key value a page shows (the once-only display), if any."""
    match = re.search(r'data-testid="new-key-value"|id="new-key-value"', html)
    if not match:
        return None
    value = re.search(r'id="new-key-value"[^>]*value="([^"]+)"', html)
    return value.group(1) if value else None


@pytest.fixture
def verifier(make_user, make_key):
    """A service's own key, allowed to call /api/verify/."""
    return make_key(make_user("service@example.com"), label="verifier", scopes=["key:verify"])[1]


def verify(client, verifier_value: str, value: str) -> dict:
    """POST /api/verify/ as that service; the JSON answer (a 200 is required)."""
    response = client.post("/api/verify/", json={"key": value},
                           headers={"Authorization": f"Bearer {verifier_value}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


@pytest.fixture
def app_with(make_app):
    """Build an app with config overrides whose test clients give each request its own context
    (as the `app` fixture's do)."""

    def build(**overrides):
        app = make_app(**overrides)
        app.test_client_class = FreshContextClient
        return app

    return build


@pytest.fixture
def enrolled(client, auth, user, frozen):
    """Alice with two-factor on (set up through the pages), logged out again; (secret, recovery
    codes). The clock is a minute on, past the set-up code's time step."""
    from datetime import timedelta

    from tests.two_factor_steps import enrol

    assert auth.login().status_code == 302
    secret, codes = enrol(client, frozen)
    auth.logout()
    frozen.at += timedelta(minutes=1)
    return secret, codes


# ---------------------------------------------------------------- a real SMTP server


class SmtpServer:
    """aiosmtpd on loopback, keeping every mail it accepts as an EmailMessage in `messages`.

    `refuse` set to an SMTP reply ("451 4.3.0 Try again later") makes it answer every mail so;
    `refuse_recipient` ("550 5.1.1 No such user") answers every RCPT TO so. Like aiosmtpd by
    default (and a server with SMTPUTF8 turned off), it does not offer SMTPUTF8 unless
    `smtputf8=True`, so an address with non-ASCII characters cannot be sent to it.
    """

    def __init__(self, smtputf8: bool = False):
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self.refuse: str | None = None
        self.refuse_recipient: str | None = None
        self.recipients_tried: list[str] = []
        self._arrived = threading.Condition()
        self.controller = Controller(self, hostname="127.0.0.1", port=_free_port(),
                                     enable_SMTPUTF8=smtputf8)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # aiosmtpd's
        self.recipients_tried.append(address)
        if self.refuse_recipient is not None:
            return self.refuse_recipient
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook
        if self.refuse is not None:
            return self.refuse
        message = message_from_bytes(envelope.original_content or envelope.content,
                                     policy=email_policy.default)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10) -> list[EmailMessage]:
        """The messages, once at least `count` have arrived; AssertionError after `timeout` s."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{count} mail(s) expected within {timeout} s, "
                                     f"got {len(self.messages)}")
            return list(self.messages)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def text_of(message: EmailMessage) -> str:
    """A mail's plain-text body, with the line ends of a text file."""
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content().replace("\r\n", "\n")


@pytest.fixture(scope="session")
def smtp_server_process():
    server = SmtpServer()
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture
def smtp_server(smtp_server_process):
    """A real SMTP server (aiosmtpd on 127.0.0.1), emptied for this test: `.messages`,
    `.wait_for(count, timeout)`, `.url`, `.refuse`, `.refuse_recipient`, `.recipients_tried`.

    Asking for it points every app this test builds (`app`, `make_app`) at it through
    KEYVAULT_SMTP_URL. Mail is queued in the outbox and sent by `send_mail(app)` (below, the
    `keyvault mail send-pending` code) or a server's background sender: the session's shared
    `live_server` runs none (tests in this process share its database and send themselves), so
    for mail queued through it call `send_mail(app)`; `start_server(..., smtp=smtp_server)` starts
    a `keyvault serve` of its own whose background sender delivers here every second.
    """
    smtp_server_process.messages.clear()
    smtp_server_process.recipients_tried.clear()
    smtp_server_process.refuse = smtp_server_process.refuse_recipient = None
    yield smtp_server_process
    smtp_server_process.refuse = smtp_server_process.refuse_recipient = None


def send_mail(app):
    """Send the outbox's due mail now (what `keyvault mail send-pending` does)."""
    from keyvault.service import mail

    with app.app_context():
        return mail.send_pending(app)


# ---------------------------------------------------------------- a controlled clock

T0 = datetime(2030, 3, 10, 12, 0, tzinfo=UTC)


class FrozenClock:
    """Stands in for keyvault.clock.now: time moves only when the test says so."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def frozen(monkeypatch):
    """The app's clock held at T0; set `frozen.at` to move it."""
    from keyvault import clock

    frozen = FrozenClock(T0)
    monkeypatch.setattr(clock, "now", frozen)
    return frozen


# ---------------------------------------------------------------- a live `keyvault serve`


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen, log_path: Path):
        self.url = url
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(database_url: str, log_path: Path, workers: int = 2,
                 extra_env: dict | None = None, smtp: SmtpServer | None = None,
                 threads: int | None = None) -> LiveServer:
    """`keyvault serve` exactly as operators run it (granian), on a free port. With `smtp`, its
    background sender delivers mail there every second; without, it sends none (tests that
    share its database send their own). It sends no webhooks unless `extra_env` sets
    KEYVAULT_WEBHOOK_SEND_SECONDS."""
    port = _free_port()
    mail = ({"KEYVAULT_SMTP_URL": smtp.url, "KEYVAULT_MAIL_SEND_SECONDS": "1"} if smtp
            else {"KEYVAULT_MAIL_SEND_SECONDS": "0"})
    mail["KEYVAULT_WEBHOOK_SEND_SECONDS"] = "0"  # tests sharing its database send their own
    env = {**os.environ, "KEYVAULT_DATABASE_URL": database_url,
           "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY, "KEYVAULT_KEY_PEPPER": TEST_PEPPER,
           # every browser test signs up from 127.0.0.1: more than a person's hourly quota
           # (the limit itself is tested in tests/test_rate_limits.py)
           "KEYVAULT_RATELIMIT_SIGNUP": "1000/hour",
           **mail,
           **(extra_env or {})}
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "keyvault", "serve", "--port", str(port),
             "--workers", str(workers), *(["--threads", str(threads)] if threads else [])],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"keyvault serve exited early:\n{log_path.read_text()}")
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return LiveServer(url, process, log_path)
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or a worker still starting on a busy machine
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"keyvault serve did not become ready:\n{log_path.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def live_server_process(database_url, tmp_path_factory):
    server = start_server(database_url, tmp_path_factory.mktemp("server") / "serve.log")
    yield server
    stop_server(server)


@pytest.fixture
def live_server(live_server_process, app):
    """The running `keyvault serve`, sharing this test's (emptied-afterwards) database."""
    return live_server_process


def pytest_collection_modifyitems(items):
    """Every test that talks to a real `keyvault serve` carries the live_server marker
    (tests/README.md says why they need one)."""
    for item in items:
        if {"live_server", "live_server_process"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.live_server)
