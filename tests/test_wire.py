"""Raw bytes on the wire to a real `keyvault serve`: what the Flask test client cannot send.

The test client hands the app a ready-made environ, so it never meets what the server does to
bytes: granian's RSGI interface once dropped header values with non-ASCII bytes (forward_auth
then let a read-only key through) and handed the query over as text that werkzeug failed on
(500 with a traceback). Here each request is written byte for byte to a socket: header values
and query strings with non-ASCII, invalid UTF-8, NUL, CR/LF, over-long lines and repeated
security headers, on every route family. The promises: no 5xx, no fail-open (forward_auth never
answers 200 to a scope header it cannot read), 400 from the app for what it cannot decode, with
one log line and no traceback; valid UTF-8 in a query is read as UTF-8.
"""

from __future__ import annotations

import socket
import time

import pytest

pytestmark = pytest.mark.live_server

READ, WRITE = "personal_api_key:read", "personal_api_key:write"

# X-KeyVault-Required-Scopes values a gateway (or a pasted config) may send, none readable.
BAD_SCOPE_HEADERS = {
    "utf-8 e-acute": [WRITE.encode() + b",\xc3\xa9"],
    "utf-8 no-break space": [WRITE.encode() + b"\xc2\xa0"],
    "utf-8 no-break space as separator": [WRITE.encode() + b",\xc2\xa0" + READ.encode()],
    "latin-1 e-acute": [WRITE.encode() + b",\xe9"],
    "only a non-ascii byte": [b"\xe9"],
    "unreadable copy second": [READ.encode(), WRITE.encode() + b",\xe9"],
    "unreadable copy first": [WRITE.encode() + b",\xe9", READ.encode()],
    "nul": [WRITE.encode() + b"\x00"],
    "bare cr": [WRITE.encode() + b"\rX-Other: 1"],
    "over-long": [WRITE.encode() + b"," + b"a" * 70_000],
}

# Query strings beyond ASCII: what each one must get (None: anything but a 5xx).
QUERIES = {
    "raw utf-8": (b"\xc3\xa9", None),
    "percent utf-8": (b"%C3%A9", None),
    "percent invalid utf-8": (b"%FF", 400),
    "percent truncated utf-8": (b"%C3", 400),
    "raw invalid utf-8": (b"\xff\xfe", 400),
    "raw latin-1": (b"\xe9", 400),
    "raw nul": (b"\x00", 400),
    "percent nul": (b"%00", None),
    "over-long": (b"a" * 70_000, None),
}

# One route of each family: browser pages, the JSON API, verify, forward_auth, metrics, health.
ROUTES = [
    ("GET", "/login?next="),
    ("GET", "/signup?x="),
    ("GET", "/password/reset?token="),
    ("GET", "/settings/api-keys?x="),
    ("GET", "/api/personal_api_keys/?cursor="),
    ("GET", "/api/users/@me/?x="),
    ("GET", "/api/docs/?x="),
    ("GET", "/api/schema/?x="),
    ("POST", "/api/verify/?x="),
    ("GET", "/api/forward_auth/?x="),
    ("GET", "/metrics?x="),
    ("GET", "/healthz?x="),
    ("GET", "/readyz?x="),
    ("GET", "/static/css/app.css?x="),
]


class Answer:
    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
        self.headers = {name.lower(): value.strip() for name, _, value in
                        (line.partition(":") for line in lines[1:])}

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:200]!r}>"


def send(server, method: str, target: bytes, headers: list[tuple[bytes, bytes]] = (),
         body: bytes = b"") -> Answer:
    """One request, written as these exact bytes, on a connection of its own."""
    port = int(server.url.rsplit(":", 1)[1])
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1",
             b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if method == "POST":
        lines.append(b"Content-Length: " + str(len(body)).encode())
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received, f"no answer to {raw[:120]!r}"
    return Answer(received)


def log_after(server, mark: int) -> str:
    """What the server logged since `mark` (len of the log then), once its lines are flushed."""
    time.sleep(0.2)
    return server.log()[mark:]


def bearer(value: str) -> tuple[bytes, bytes]:
    return b"Authorization", f"Bearer {value}".encode()


def forward_auth(server, value: str, scope_lines: list[bytes]) -> Answer:
    return send(server, "GET", b"/api/forward_auth/",
                [bearer(value), *((b"X-KeyVault-Required-Scopes", line) for line in scope_lines)])


@pytest.fixture
def read_only(live_server, user, make_key) -> str:
    _, value = make_key(user, label="reader", scopes=[READ])
    return value


def test_forward_auth_reads_a_plain_scope_header(live_server, read_only):
    """The baseline the cases below are measured against: the same key passes what it holds and
    is refused what it lacks."""
    assert forward_auth(live_server, read_only, [READ.encode()]).status == 200
    assert forward_auth(live_server, read_only, [WRITE.encode()]).status == 403


@pytest.mark.parametrize("case", list(BAD_SCOPE_HEADERS))
def test_forward_auth_fails_closed_on_a_scope_header_it_cannot_read(live_server, read_only, case):
    answer = forward_auth(live_server, read_only, BAD_SCOPE_HEADERS[case])
    assert answer.status in (400, 403, 431), answer
    if b"\x00" not in BAD_SCOPE_HEADERS[case][0] and len(BAD_SCOPE_HEADERS[case][0]) < 1000 \
            and b"\r" not in BAD_SCOPE_HEADERS[case][0]:
        assert answer.status == 400, answer  # the app's own refusal, not the server's
        assert answer.headers["content-type"] == "application/problem+json"
        assert b"X-Keyvault-Required-Scopes header" in answer.body


def test_repeated_scope_headers_are_all_required(live_server, read_only, user, make_key):
    """Two X-KeyVault-Required-Scopes lines are one list (RFC 9110): a key must hold both."""
    assert forward_auth(live_server, read_only, [READ.encode(), WRITE.encode()]).status == 403
    assert forward_auth(live_server, read_only, [WRITE.encode(), READ.encode()]).status == 403
    _, writer = make_key(user, label="writer", scopes=[WRITE])
    assert forward_auth(live_server, writer, [READ.encode(), WRITE.encode()]).status == 200


def test_repeated_authorization_headers_are_no_credential(live_server, read_only, user, make_key):
    _, other = make_key(user, label="other", scopes=[READ])
    answer = send(live_server, "GET", b"/api/users/@me/", [bearer(read_only), bearer(other)])
    assert answer.status == 401, answer


@pytest.mark.parametrize("method, route", ROUTES)
@pytest.mark.parametrize("query", list(QUERIES))
def test_no_query_bytes_make_a_server_error(live_server, method, route, query):
    raw, expected = QUERIES[query]
    answer = send(live_server, method, route.encode() + raw,
                  [(b"Content-Type", b"application/json")] if method == "POST" else [],
                  b"{}" if method == "POST" else b"")
    assert 0 < answer.status < 500, answer
    if expected is not None:
        assert answer.status == expected, answer
    if answer.status == 400 and route.startswith("/api/") and b"\x00" not in raw \
            and raw.isascii():  # the app's refusal (granian refuses raw bytes past ASCII)
        assert answer.headers["content-type"] == "application/problem+json", answer


def test_valid_utf8_in_a_query_is_read_as_utf8(live_server):
    """`?next=/é` is an ordinary local path: the login page keeps it for after sign-in."""
    for target in (b"/login?next=/\xc3\xa9", b"/login?next=/%C3%A9"):
        answer = send(live_server, "GET", target)
        assert answer.status == 200, answer
        assert "/é".encode() in answer.body or b"/%C3%A9" in answer.body, answer.body


@pytest.mark.parametrize("header, value", [
    (b"User-Agent", b"caf\xe9"),
    (b"X-Request-Id", b"caf\xc3\xa9"),
    (b"X-Forwarded-For", b"10.0.0.\xc2\xb9"),
    (b"Authorization", b"Bearer kv_\xe9"),
    (b"Cookie", b"session=\xff"),
])
@pytest.mark.parametrize("method, route", ROUTES)
def test_a_header_the_app_cannot_read_is_400_with_one_log_line(live_server, method, route,
                                                               header, value):
    mark = len(live_server.log())
    answer = send(live_server, method, route.encode().removesuffix(b"?x="), [(header, value)],
                  b"{}" if method == "POST" else b"")
    assert answer.status == 400, answer
    if route.startswith("/api/"):
        assert answer.headers["content-type"] == "application/problem+json"
    else:
        assert answer.headers["content-type"].startswith("text/html")
    assert f"The {header.decode()} header".encode() in answer.body, answer
    logged = log_after(live_server, mark)
    request_id = answer.headers["x-request-id"]
    refusals = [line for line in logged.splitlines() if "refused" in line and request_id in line]
    assert len(refusals) == 1, logged
    assert "Traceback" not in logged


@pytest.mark.parametrize("route, header", [
    (b"/api/forward_auth/", b"X-Real-IP"),
    (b"/api/forward_auth/", b"X-KeyVault-Service"),
    (b"/api/forward_auth/", b"X-KeyVault-Service-Key"),
    (b"/api/forward_auth/", b"X-KeyVault-Cost"),
    (b"/api/verify/events?timeout=0", b"Last-Event-ID"),
])
def test_the_new_deciding_headers_fail_closed_on_bytes_the_app_cannot_read(
        live_server, read_only, route, header):
    """The address a key is judged at, the service a gateway names (and its key), a check's
    cost and a stream's resume point decide verdicts: UTF-8 in them is refused with 400 by
    `keyvault serve`, never read as something else, and a plain value still passes."""
    plain = {b"X-Real-IP": b"127.0.0.1", b"X-KeyVault-Service": None,
             b"X-KeyVault-Service-Key": None, b"X-KeyVault-Cost": b"1", b"Last-Event-ID": b"0"}
    if plain[header] is not None:
        read = send(live_server, "GET", route, [bearer(read_only), (header, plain[header])])
        assert read.status in (200, 403), read  # read: a verdict, not a refusal of the header
    answer = send(live_server, "GET", route, [bearer(read_only), (header, b"caf\xc3\xa9")])
    assert answer.status == 400, answer
    assert answer.headers["content-type"] == "application/problem+json"
    assert f"The {header.decode().title()} header".encode() in answer.body, answer.body


def test_utf8_in_an_ordinary_header_is_read(live_server):
    """A UTF-8 User-Agent (some apps name their town) is not refused; only bytes no text can
    be made of are."""
    answer = send(live_server, "GET", b"/healthz", [(b"User-Agent", "Zürich-app/1.0".encode())])
    assert answer.status == 200, answer


def test_verify_refuses_an_unreadable_header_on_its_fast_path(live_server, make_user, make_key,
                                                              user):
    """POST /api/verify/ with a bearer and JSON is answered on the fast path; a request id it
    cannot read sends it to Flask, which refuses it, and the same call without it passes."""
    _, service_key = make_key(make_user("service@example.com"), label="svc", scopes=["key:verify"])
    _, value = make_key(user)
    body = f'{{"key": "{value}"}}'.encode()
    headers = [bearer(service_key), (b"Content-Type", b"application/json")]
    assert send(live_server, "POST", b"/api/verify/", headers, body).status == 200
    refused = send(live_server, "POST", b"/api/verify/", [*headers, (b"X-Request-Id", b"\xe9")],
                   body)
    assert refused.status == 400, refused
    assert b"X-Request-Id header" in refused.body


def test_a_flood_of_bad_queries_logs_one_line_each(live_server):
    """The attack that wrote 950 lines for 50 requests: now each refusal is one line."""
    mark = len(live_server.log())
    for _ in range(20):
        assert send(live_server, "GET", b"/login?next=%FF").status == 400
    logged = log_after(live_server, mark)
    assert "Traceback" not in logged
    assert sum("refused GET /login" in line for line in logged.splitlines()) == 20
    assert sum('"GET /login HTTP/1.1" 400' in line for line in logged.splitlines()) == 20
