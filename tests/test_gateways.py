"""Real gateways (nginx auth_request, Caddy forward_auth) in front of a tiny upstream, asking a
real KeyVault (`keyvault serve`) through /api/forward_auth/, configured as the README shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from keyvault import service
from tests.conftest import _free_port, start_server, stop_server

pytestmark = pytest.mark.live_server

SCOPES = "feature_flag:read,feature_flag:write"
IDENTITY = ("X-KeyVault-User-Id", "X-KeyVault-User-Email", "X-KeyVault-Key-Id",
            "X-KeyVault-Scopes")

# The README's nginx snippet, with ports and paths filled in: /flags/ needs feature_flag:read,
# /admin-flags/ needs feature_flag:write; the identity headers are set from KeyVault's answer
# only (proxy_set_header replaces whatever the client sent).
NGINX = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /flags/ {{
            auth_request /_keyvault_read;
            include {prefix}/identity.conf;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        location /admin-flags/ {{
            auth_request /_keyvault_write;
            include {prefix}/identity.conf;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        location = /_keyvault_read {{
            internal;
            proxy_pass {keyvault}/api/forward_auth/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-KeyVault-Required-Scopes "feature_flag:read";
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
        location = /_keyvault_write {{
            internal;
            proxy_pass {keyvault}/api/forward_auth/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-KeyVault-Required-Scopes "feature_flag:write";
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""
NGINX_IDENTITY = """
auth_request_set $kv_user_id $upstream_http_x_keyvault_user_id;
auth_request_set $kv_user_email $upstream_http_x_keyvault_user_email;
auth_request_set $kv_key_id $upstream_http_x_keyvault_key_id;
auth_request_set $kv_scopes $upstream_http_x_keyvault_scopes;
proxy_set_header X-KeyVault-User-Id $kv_user_id;
proxy_set_header X-KeyVault-User-Email $kv_user_email;
proxy_set_header X-KeyVault-Key-Id $kv_key_id;
proxy_set_header X-KeyVault-Scopes $kv_scopes;
"""

# The README's Caddyfile: `route` keeps the order as written; client-sent X-KeyVault-* headers
# are deleted before forward_auth, which copies KeyVault's four back on a 200. /pasted-flags/
# has a no-break space pasted into its scopes (as from a web page), which Caddy sends as is.
CADDY = """
{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    route /flags/* {{
        request_header -X-KeyVault-*
        forward_auth {keyvault_host} {{
            uri /api/forward_auth/
            header_up X-KeyVault-Required-Scopes feature_flag:read
            copy_headers X-KeyVault-User-Id X-KeyVault-User-Email X-KeyVault-Key-Id X-KeyVault-Scopes
        }}
        reverse_proxy 127.0.0.1:{upstream}
    }}
    route /admin-flags/* {{
        request_header -X-KeyVault-*
        forward_auth {keyvault_host} {{
            uri /api/forward_auth/
            header_up X-KeyVault-Required-Scopes feature_flag:write
            copy_headers X-KeyVault-User-Id X-KeyVault-User-Email X-KeyVault-Key-Id X-KeyVault-Scopes
        }}
        reverse_proxy 127.0.0.1:{upstream}
    }}
    route /pasted-flags/* {{
        request_header -X-KeyVault-*
        forward_auth {keyvault_host} {{
            uri /api/forward_auth/
            header_up X-KeyVault-Required-Scopes "feature_flag:write,\u00a0feature_flag:read"
            copy_headers X-KeyVault-User-Id X-KeyVault-User-Email X-KeyVault-Key-Id X-KeyVault-Scopes
        }}
        reverse_proxy 127.0.0.1:{upstream}
    }}
}}
"""


class Echo(BaseHTTPRequestHandler):
    """The upstream service: answers 200 with the headers it was sent, as JSON."""

    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def keyvault(database_url, tmp_path_factory):
    """KeyVault under `keyvault serve`, with the service's scopes in its catalogue, behind one
    trusted proxy (the gateway), as the README says."""
    server = start_server(database_url, tmp_path_factory.mktemp("kv") / "serve.log",
                          extra_env={"KEYVAULT_SCOPES": SCOPES, "KEYVAULT_TRUSTED_PROXIES": "1"})
    yield server
    stop_server(server)


@pytest.fixture
def app(make_app):
    """The test's own app (for creating keys) has the same catalogue as the server."""
    app = make_app(KEYVAULT_SCOPES=SCOPES)
    with app.app_context():
        yield app


def _wait_until_up(url: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            requests.get(url + "/", timeout=1)
            return
        except requests.ConnectionError:
            assert process.poll() is None, log()
            assert time.monotonic() < deadline, "the gateway did not start:\n" + log()
            time.sleep(0.1)


def _nginx(tmp_path: Path, keyvault_url: str, upstream: int):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed (apt-get install nginx)"
    port = _free_port()
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / folder).mkdir()
    (tmp_path / "identity.conf").write_text(NGINX_IDENTITY)
    config = tmp_path / "nginx.conf"
    config.write_text(NGINX.format(prefix=tmp_path, port=port, keyvault=keyvault_url,
                                   upstream=upstream))
    process = subprocess.Popen([nginx, "-c", str(config), "-p", str(tmp_path), "-g",
                                "daemon off;"], stderr=subprocess.DEVNULL)
    return process, port, lambda: (tmp_path / "error.log").read_text(errors="replace")


def _caddy(tmp_path: Path, keyvault_url: str, upstream: int):
    caddy = shutil.which("caddy")
    assert caddy, "caddy is not installed (apt-get install caddy)"
    port = _free_port()
    config = tmp_path / "Caddyfile"
    config.write_text(CADDY.format(port=port, keyvault_host=keyvault_url.removeprefix("http://"),
                                   upstream=upstream))
    log = tmp_path / "caddy.log"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    with open(log, "w") as out:
        process = subprocess.Popen([caddy, "run", "--config", str(config), "--adapter",
                                    "caddyfile"], stdout=out, stderr=subprocess.STDOUT, env=env)
    return process, port, lambda: log.read_text(errors="replace")


def _running(start, keyvault, upstream, tmp_path):
    """A gateway started by `start`, up and answering, stopped afterwards."""
    process, port, log = start(tmp_path, keyvault.url, upstream)
    url = f"http://127.0.0.1:{port}"
    _wait_until_up(url, process, log)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["nginx", "caddy"])
def gateway(request, keyvault, upstream, tmp_path):
    start = {"nginx": _nginx, "caddy": _caddy}[request.param]
    yield from _running(start, keyvault, upstream, tmp_path)


def _get(gateway: str, path: str, key: str | None = None, **headers) -> requests.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.get(gateway + path, headers=headers, timeout=5)


def _seen(response: requests.Response) -> dict:
    """The headers the upstream received, by lower-case name."""
    return {name.lower(): value for name, value in response.json()["headers"].items()}


def test_a_live_key_reaches_the_upstream_with_who_it_is(gateway, user, make_key):
    key, value = make_key(user, scopes=["feature_flag:read"])
    response = _get(gateway, "/flags/x", value)
    assert response.status_code == 200
    seen = _seen(response)
    assert seen["x-keyvault-user-id"] == str(user.id)
    assert seen["x-keyvault-user-email"] == user.email
    assert seen["x-keyvault-key-id"] == key.public_id
    assert seen["x-keyvault-scopes"] == "feature_flag:read"


def test_no_key_or_a_wrong_one_is_401(gateway, user, make_key):
    assert _get(gateway, "/flags/x").status_code == 401
    assert _get(gateway, "/flags/x", "kv_wrong").status_code == 401


def test_a_revoked_key_fails_on_the_very_next_request(gateway, user, make_key):
    key, value = make_key(user, scopes=["feature_flag:read"])
    assert _get(gateway, "/flags/x", value).status_code == 200
    service.revoke_key(user, key.public_id, service.Origin())
    assert _get(gateway, "/flags/x", value).status_code == 401


def test_a_read_key_on_a_write_route_is_403(gateway, user, make_key):
    _, value = make_key(user, scopes=["feature_flag:read"])
    assert _get(gateway, "/admin-flags/x", value).status_code == 403
    _, writer = make_key(user, label="writer", scopes=["feature_flag:write"])
    assert _get(gateway, "/admin-flags/x", writer).status_code == 200


def test_a_clients_own_scopes_parameter_cannot_lower_the_bar(gateway, user, make_key):
    """The bypass: the gateway forwards the client's query string to KeyVault, and a client
    that names an easier scope there must still meet the route's own demand."""
    _, value = make_key(user, scopes=["feature_flag:read"])
    for query in ("?scopes=feature_flag:read", "?scopes=", "?scopes=feature_flag:read&scopes=x"):
        assert _get(gateway, "/admin-flags/x" + query, value).status_code == 403, query


def test_a_key_in_the_url_is_not_a_credential(gateway, user, make_key):
    """A key in the forwarded URL would end up in the upstream's URL and logs: refused."""
    _, value = make_key(user, scopes=["feature_flag:read"])
    assert _get(gateway, f"/flags/x?personal_api_key={value}").status_code == 401


def test_spoofed_identity_headers_never_reach_the_upstream(gateway, user, make_key, make_user):
    """A client that sends X-KeyVault-* headers itself: with a valid key the upstream sees
    KeyVault's values only; without one the request never gets there."""
    victim = make_user("victim@example.com")
    _, value = make_key(user, scopes=["feature_flag:read"])
    spoofed = {"X-KeyVault-User-Id": str(victim.id), "X-KeyVault-User-Email": victim.email,
               "X-KeyVault-Key-Id": "forged", "X-KeyVault-Scopes": "feature_flag:write"}
    response = _get(gateway, "/flags/x", value, **spoofed)
    assert response.status_code == 200
    seen = _seen(response)
    assert seen["x-keyvault-user-id"] == str(user.id)
    assert seen["x-keyvault-user-email"] == user.email
    assert seen["x-keyvault-scopes"] == "feature_flag:read"
    assert seen["x-keyvault-key-id"] != "forged"
    assert _get(gateway, "/flags/x", **spoofed).status_code == 401


def test_a_key_restricted_by_address_is_judged_at_the_clients_address(gateway, user, make_key):
    """The gateway forwards the address its client connected from (127.0.0.1 here); one that
    the client writes into X-Forwarded-For itself is not believed."""
    _, local = make_key(user, label="local", scopes=["feature_flag:read"],
                        allowed_ips=["127.0.0.1", "::1"])
    _, far = make_key(user, label="far", scopes=["feature_flag:read"],
                      allowed_ips=["10.0.0.0/8"])
    assert _get(gateway, "/flags/x", local).status_code == 200
    assert _get(gateway, "/flags/x", far).status_code == 403
    for spoof in ({"X-Forwarded-For": "10.1.2.3"}, {"X-Real-IP": "10.1.2.3"}):
        assert _get(gateway, "/flags/x", far, **spoof).status_code == 403, spoof
        assert _get(gateway, "/flags/x", local, **spoof).status_code == 200, spoof


def test_behind_a_trusted_proxy_the_forwarded_address_counts(keyvault, user, make_key):
    """Straight to KeyVault, as the gateway would call it: X-Forwarded-For (or, without one,
    X-Real-IP) from the one trusted proxy is the client's address."""
    _, far = make_key(user, label="far", scopes=["feature_flag:read"],
                      allowed_ips=["10.0.0.0/8"])
    check = keyvault.url + "/api/forward_auth/"
    for headers, status in (({"X-Forwarded-For": "10.1.2.3"}, 200),
                            ({"X-Real-IP": "10.1.2.3"}, 200),
                            ({"X-Forwarded-For": "10.1.2.3, 127.0.0.1"}, 403), ({}, 403)):
        response = requests.get(check, headers={"Authorization": f"Bearer {far}", **headers},
                                timeout=5)
        assert response.status_code == status, headers


@pytest.fixture
def caddy(keyvault, upstream, tmp_path):
    yield from _running(_caddy, keyvault, upstream, tmp_path)


def test_a_scope_header_keyvault_cannot_read_lets_no_key_through(caddy, keyvault, user, make_key):
    """A no-break space in the gateway's X-KeyVault-Required-Scopes: KeyVault cannot tell
    what is required, so no key passes, not even one with every scope (400, never 200)."""
    _, reader = make_key(user, scopes=["feature_flag:read"])
    _, both = make_key(user, label="both", scopes=["feature_flag:read", "feature_flag:write"])
    for value in (reader, both):
        response = _get(caddy, "/pasted-flags/x", value)
        assert response.status_code == 400, response.text
        assert "X-Keyvault-Required-Scopes header" in response.json()["detail"]
    assert "Traceback" not in keyvault.log()
