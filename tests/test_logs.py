"""What `keyvault serve` logs: one JSON line per request with its facts (never a key), the
request id shared by the answer, the log line and the security log; and a key sent anywhere a
client might put one leaves no trace in the logs, the database file or the API's answers."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from keyvault import tokens
from keyvault.logs import AccessLog, JsonFormatter
from tests.conftest import _migrate, start_server, stop_server


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def requests_logged(server, marker: str, timeout: float = 5) -> list[dict]:
    """The access-log lines so far, once the request carrying `marker` has been logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in json_lines(server.log()) if line["logger"] == "keyvault.access"]
        if any(marker in (line["path"] or "") for line in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{marker} never reached the log:\n{server.log()[-3000:]}")


@pytest.fixture
def sqlite_server(tmp_path):
    """`keyvault serve` on a SQLite file of its own (so the test can search the file), logging
    JSON as in production."""
    url = f"sqlite:///{tmp_path / 'keyvault.db'}"
    _migrate(url)
    server = start_server(url, tmp_path / "serve.log",
                          extra_env={"KEYVAULT_LOG_FORMAT": "json"})
    yield server, tmp_path / "keyvault.db"
    stop_server(server)


@pytest.fixture
def person(sqlite_server):
    """A person with a full-access key, made through the server itself."""
    from keyvault import create_app, service
    from tests.conftest import base_overrides

    server, path = sqlite_server
    app = create_app(base_overrides(f"sqlite:///{path}"))
    with app.app_context():
        user = service.sign_up("ada@example.com", "correct horse battery", service.Origin())
        key, value = service.create_key(user, label="admin", scopes=["*"],
                                        origin=service.Origin())
        return value, key.public_id


def test_one_json_line_per_request_with_its_facts(sqlite_server, person):
    server, _ = sqlite_server
    person, public_id = person
    created = requests.post(f"{server.url}/api/personal_api_keys/",
                            json={"label": "ci", "scopes": ["user:read"]},
                            headers={**bearer(person), "X-Request-Id": "deploy-42"}, timeout=5)
    assert created.status_code == 201
    assert created.headers["X-Request-Id"] == "deploy-42"
    requests.get(f"{server.url}/healthz?probe=one", timeout=5)
    lines = requests_logged(server, "probe=one")
    create = next(line for line in lines if line["request_id"] == "deploy-42")
    assert create["method"] == "POST" and create["status"] == 201
    assert create["route"] == "/api/personal_api_keys/"
    assert create["key_id"] == public_id
    assert create["client"] == "127.0.0.1" and create["duration_ms"] > 0
    assert {"time", "level", "bytes", "user_agent", "path"} <= create.keys()
    # the security log names the same request
    events = requests.get(f"{server.url}/api/users/@me/security_log/", headers=bearer(person),
                          timeout=5).json()["results"]
    assert events[0]["event"] == "key.created" and events[0]["request_id"] == "deploy-42"


def test_a_key_sent_anywhere_leaves_no_trace(sqlite_server, person):
    """In the URL, the JSON body, Authorization, a Basic-auth user name and the User-Agent:
    the key reaches neither the log, nor the database file, nor any API answer."""
    server, path = sqlite_server
    secret, _ = person  # a live key: the worst one to leak
    basic = base64.b64encode(f"{secret}:x".encode()).decode()
    calls = [
        ("GET", f"/api/users/@me/?personal_api_key={secret}", {}, None),
        ("GET", f"/api/users/@me/?something={secret}", {}, None),
        ("POST", "/api/verify/", bearer(secret), {"key": secret}),
        ("GET", "/api/users/@me/", {"Authorization": f"Basic {basic}"}, None),
        ("GET", "/api/users/@me/", {**bearer(secret), "User-Agent": f"bot {secret}",
                                    "Referer": f"https://x.example/?token={secret}"}, None),
        ("POST", "/api/personal_api_keys/", {**bearer(secret), "User-Agent": f"bot {secret}"},
         {"label": "made while leaking", "scopes": ["user:read"]}),
    ]
    answers = []
    for method, target, headers, body in calls:
        response = requests.request(method, f"{server.url}{target}", headers=headers, json=body,
                                    timeout=5)
        assert response.status_code < 500
        answers.append(response.text)
    answers.append(requests.get(f"{server.url}/api/users/@me/security_log/", headers=bearer(secret),
                                timeout=5).text)
    requests.get(f"{server.url}/healthz?probe=done", timeout=5)
    requests_logged(server, "probe=done")
    assert secret not in server.log()
    assert all(secret not in answer for answer in answers)
    stored = b"".join(p.read_bytes() for p in path.parent.glob("keyvault.db*"))
    assert secret.encode() not in stored
    assert "[redacted]" in server.log()


def test_text_is_the_development_format(live_server):
    requests.get(f"{live_server.url}/healthz?probe=text", timeout=5,
                 headers={"X-Request-Id": "text-1"})
    deadline = time.monotonic() + 5
    while "probe=text" not in live_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in live_server.log().splitlines() if "probe=text" in line)
    assert line.startswith("127.0.0.1 - - [") and '"GET /healthz?probe=text HTTP/1.1" 200' in line
    assert "id=text-1" in line


def test_the_json_formatter_scrubs_messages():
    key = tokens.generate()
    record = logging.LogRecord("keyvault", logging.ERROR, __file__, 1, "failed on %s",
                               (f"/x?token={key}",), None)
    line = json.loads(JsonFormatter().format(record))
    assert key not in json.dumps(line) and line["level"] == "error"


def test_the_access_log_holds_lines_until_flushed_and_writes_them_at_once():
    """The bridge flushes once per turn of the event loop: every line answered in that turn
    goes out in one write, whole and in order; nothing is written before."""
    writes = []

    class Stream(io.StringIO):
        def write(self, text):
            writes.append(text)
            return super().write(text)

    access = AccessLog(Stream(), "json")
    for number in range(3):
        access.write({"REQUEST_METHOD": "GET", "PATH_INFO": f"/healthz/{number}",
                      "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1",
                      "SERVER_PROTOCOL": "HTTP/1.1"}, 200, 3, 0.001)
    assert writes == []
    access.flush()
    access.flush()  # nothing held: nothing written
    assert len(writes) == 1
    assert [json.loads(line)["path"] for line in writes[0].splitlines()] == [
        "/healthz/0", "/healthz/1", "/healthz/2"]


def test_a_burst_of_requests_each_gets_its_line_without_another_request(sqlite_server):
    """Many requests answered in the same turns of a worker's loop: each is in the log, once,
    as a whole JSON line, with no later request needed to push it out."""
    server, _ = sqlite_server
    ids = [f"burst-{number}" for number in range(64)]

    def get(ident: str) -> int:
        return requests.get(f"{server.url}/healthz", headers={"X-Request-Id": ident},
                            timeout=5).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(get, ids)) == {200}
    deadline = time.monotonic() + 5
    while True:
        logged = [line["request_id"] for line in json_lines(server.log())
                  if line["logger"] == "keyvault.access"]
        if set(ids) <= set(logged) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sorted(ident for ident in logged if ident.startswith("burst-")) == sorted(ids)
