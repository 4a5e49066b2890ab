"""No page and no link is built on a request's Host: anyone can write `Host: evil.example` (or have
a proxy relay it as X-Forwarded-Host), and a shared cache would hand the page it made to
everybody, or a reset mail would carry the link to the stranger's site. Links are absolute on
KEYVAULT_BASE_URL, else relative; the API reference without a base URL reads the address from
$KEYVAULT_URL. And every answer that differs by what the client sends says so: pages carry
`Vary: Cookie` (or `no-store`), API answers `no-store`.

The same questions are asked of the Flask test client and of a real `keyvault serve`, with the
Host header written raw on a socket (the test client and requests both fill it in themselves).
"""

from __future__ import annotations

import html
import re
import socket
from urllib.parse import urlsplit

import pytest

from keyvault.api.reference import URL_VARIABLE
from tests.conftest import AuthActions, FreshContextClient, send_mail, start_server, stop_server
from tests.conftest import text_of as mail_text

EVIL = "evil.example"
BASE = "https://keys.example.com"
DOCUMENTS = ("/api/docs/", "/api/schema/")
# Every way a client can name a host: the Host header, and what a (trusted) proxy relays.
FORGED = {"Host": EVIL, "X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "https",
          "X-Forwarded-For": "203.0.113.9"}


def raw_get(url: str, path: str, headers: dict[str, str]) -> tuple[str, dict[str, str], str]:
    """GET `path` from the server at `url` with exactly these headers, written on a socket;
    (status line, headers by lower-case name, body)."""
    parts = urlsplit(url)
    request = f"GET {path} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in {**headers, "Connection": "close"}.items())
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall((request + "\r\n").encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return status, fields, body.decode()


def curl_commands(page: str) -> list[str]:
    """The curl command lines of the API reference (the first line of each example)."""
    blocks = re.findall(r'<pre data-testid="(?:curl|presenting-example)" tabindex="0"><code>'
                        r"(.*?)</code></pre>", page, re.S)
    return [line for block in blocks for line in html.unescape(block).splitlines()
            if line.startswith("curl ")]


def assert_examples_on(page: str, base: str | None) -> None:
    """Every command of the reference calls the base URL, or $KEYVAULT_URL without one."""
    commands = curl_commands(page)
    assert len(commands) > 10
    where = re.escape(f"'{base}/api/") + "|" + re.escape(f"{base}/api/") if base \
        else re.escape(f'"${URL_VARIABLE}"/api/') + "|" + re.escape(f'"${URL_VARIABLE}"\'/api/')
    for command in commands:
        assert re.match(rf"curl -sS( -i)?( -X [A-Z]+)? ({where})", command), command


# ---------------------------------------------------------------- under the test client


@pytest.mark.parametrize("base", [None, BASE])
@pytest.mark.parametrize("proxies", ["0", "1"])
def test_documents_name_no_host_a_client_sent(make_app, base, proxies):
    """/api/docs/ and /api/schema/ with a forged Host (and X-Forwarded-Host, behind a trusted
    proxy or not) name no evil.example, and are the very same bytes as without it."""
    settings = {"KEYVAULT_TRUSTED_PROXIES": proxies, **({"KEYVAULT_BASE_URL": base} if base else {})}
    app = make_app(**settings)
    app.test_client_class = FreshContextClient
    client = app.test_client()
    for path in DOCUMENTS:
        plain = client.get(path)
        forged = client.get(path, headers=FORGED)
        assert forged.status_code == 200
        assert EVIL not in forged.get_data(as_text=True)
        assert forged.get_data() == plain.get_data()
    assert_examples_on(client.get("/api/docs/", headers=FORGED).get_data(as_text=True), base)


def test_pagination_links_behind_a_proxy_are_relative_without_a_base_url(make_app, make_user,
                                                                         make_key):
    """A proxy relays X-Forwarded-Host as the client wrote it (nginx's `$host`): a link is
    relative then, whatever the forwarded host says."""
    app = make_app(KEYVAULT_TRUSTED_PROXIES="1")
    app.test_client_class = FreshContextClient
    with app.app_context():
        owner = make_user("ada@example.com")
        _, value = make_key(owner, label="reader", scopes=["*"])
        for number in range(2):
            make_key(owner, label=f"key {number}", scopes=["user:read"])
    answer = app.test_client().get("/api/personal_api_keys/?limit=1", headers={
        **FORGED, "Authorization": f"Bearer {value}"})
    assert answer.status_code == 200
    assert answer.json["next"].startswith("/api/personal_api_keys/?")
    assert EVIL not in answer.get_data(as_text=True)


@pytest.mark.parametrize("base", [None, BASE])
def test_a_reset_link_never_names_the_host_a_client_sent(make_app, make_user, smtp_server, base):
    """Asking for a reset of someone else's password with a forged Host, through a trusted
    proxy, puts no evil.example in the mail: the link is on KEYVAULT_BASE_URL, else a path."""
    app = make_app(KEYVAULT_TRUSTED_PROXIES="1", **({"KEYVAULT_BASE_URL": base} if base else {}))
    app.test_client_class = FreshContextClient
    with app.app_context():
        make_user("ada@example.com")
    client = app.test_client()
    token = AuthActions(client).csrf("/password/forgot")
    # The forged host as the proxy relays it (the session cookie is the test client's
    # localhost's, so the Host itself stays).
    answer = client.post("/password/forgot", headers={"X-Forwarded-Host": EVIL},
                         data={"csrf_token": token, "email": "ada@example.com"})
    assert answer.status_code in (200, 302, 303)
    send_mail(app)
    [mail] = smtp_server.wait_for(1)
    text = mail_text(mail)
    assert EVIL not in text and EVIL not in mail.get_body(("html",)).get_content()
    assert (f"{base}/password/reset?token=" if base else "\n/password/reset?token=") in text


# ---------------------------------------------------------------- what may vary says so

# Answers that are the same for every client: built from configuration and files alone.
SAME_FOR_EVERYONE = ("/api/docs/", "/api/schema/", "/static/", "/favicon.ico", "/healthz",
                     "/readyz")


def _get_routes(app, public_id: str) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        path = re.sub(r"<(?:key_id:)?public_id>", public_id, rule.rule)
        paths.append(path.replace("<path:filename>", "css/app.css"))
    return paths


def test_every_answer_that_depends_on_the_client_says_so(app, client, make_user, make_key):
    """Every GET route, asked by a stranger and by a logged-in administrator with a key: a page
    carries `Vary: Cookie` or `no-store`, an API answer `no-store`, whatever its status; only
    the answers that are the same for everybody carry neither."""
    admin = make_user("ada@example.com", is_admin=True)
    key, value = make_key(admin, label="reader", scopes=["*"])
    paths = _get_routes(app, key.public_id)
    assert "/settings/api-keys" in paths and "/api/personal_api_keys/" in paths
    checked = 0
    for logged_in in (False, True):
        if logged_in:
            assert AuthActions(client).login("ada@example.com").status_code == 302
        for path in paths:
            for headers in ({}, {"Authorization": f"Bearer {value}"}):
                answer = client.get(path, headers=headers)
                answer.close()
                cache = answer.headers.get("Cache-Control", "")
                if path.startswith(SAME_FOR_EVERYONE):
                    continue
                checked += 1
                if path.startswith(("/api/", "/metrics")):
                    assert "no-store" in cache, (path, answer.status_code, cache)
                else:
                    assert "no-store" in cache or "Cookie" in answer.vary, (
                        path, answer.status_code, cache, answer.vary)
    assert checked > 60


# ---------------------------------------------------------------- under `keyvault serve`


def test_a_real_server_names_no_forged_host(live_server):
    """The same over a socket to `keyvault serve` (no base URL): the documents name no
    evil.example, the reference reads the address from $KEYVAULT_URL, and API answers are
    no-store."""
    for path in DOCUMENTS:
        status, headers, body = raw_get(live_server.url, path, FORGED)
        assert status == "HTTP/1.1 200 OK", (status, body[:300])
        assert EVIL not in body
    _, _, page = raw_get(live_server.url, "/api/docs/", FORGED)
    assert_examples_on(page, None)
    status, headers, _ = raw_get(live_server.url, "/api/users/@me/", FORGED)
    assert status.startswith("HTTP/1.1 401") and headers["cache-control"] == "no-store"
    status, headers, _ = raw_get(live_server.url, "/login", FORGED)
    assert status.startswith("HTTP/1.1 200") and "Cookie" in headers["vary"]


def test_a_real_server_behind_a_proxy_with_a_base_url(database_url, tmp_path):
    """`keyvault serve` with KEYVAULT_BASE_URL and a trusted proxy: a forged Host and
    X-Forwarded-Host change nothing, the reference names the base URL."""
    server = start_server(database_url, tmp_path / "serve.log", workers=1,
                          extra_env={"KEYVAULT_BASE_URL": BASE, "KEYVAULT_TRUSTED_PROXIES": "1"})
    try:
        for path in DOCUMENTS:
            status, _, body = raw_get(server.url, path, FORGED)
            assert status == "HTTP/1.1 200 OK", (status, body[:300])
            assert EVIL not in body
            _, _, plain = raw_get(server.url, path, {"Host": "127.0.0.1"})
            assert body == plain
        _, _, page = raw_get(server.url, "/api/docs/", FORGED)
        assert_examples_on(page, BASE)
    finally:
        stop_server(server)
