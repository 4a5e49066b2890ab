"""A real nginx in front of a service, asking KeyVault (under gunicorn) through auth_request."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from keyvault import service
from tests.conftest import _free_port

CONFIG = """
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
        location /private/ {{
            auth_request /_keyvault;
            auth_request_set $kv_user $upstream_http_x_keyvault_user_id;
            add_header X-Seen-User $kv_user always;
            rewrite ^ /healthz break;
            proxy_pass {keyvault};
        }}
        location = /_keyvault {{
            internal;
            proxy_pass {keyvault}/api/forward_auth/?scopes=user:read;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
    }}
}}
"""


@pytest.fixture
def gateway(live_server, tmp_path):
    """nginx (Debian's, with auth_request) on a free port, in the foreground, stopped after."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed (apt-get install nginx)"
    port = _free_port()
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / folder).mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(CONFIG.format(prefix=tmp_path, port=port, keyvault=live_server.url))
    process = subprocess.Popen([nginx, "-c", str(config), "-p", str(tmp_path), "-g",
                                "daemon off;"], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(url + "/", timeout=1)
            break
        except requests.ConnectionError:
            assert process.poll() is None, (tmp_path / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_nginx_lets_a_live_key_through_and_passes_on_who_it_is(gateway, user, make_key):
    """auth_request gets 200 from KeyVault and the upstream sees the user's id."""
    _, value = make_key(user, scopes=["user:read"])
    response = requests.get(gateway + "/private/x", headers={"Authorization": f"Bearer {value}"},
                            timeout=5)
    assert response.status_code == 200
    assert response.headers["X-Seen-User"] == str(user.id)


def test_nginx_refuses_missing_wrong_revoked_and_underscoped_keys(gateway, user, make_key):
    """KeyVault's 401/403 reach the client; a revoked key fails on the very next request."""
    key, value = make_key(user, scopes=["user:read"])
    _, verify_only = make_key(user, label="narrow", scopes=["key:verify"])

    def get(headers):
        return requests.get(gateway + "/private/x", headers=headers, timeout=5)

    assert get({}).status_code == 401
    assert get({"Authorization": "Bearer kv_wrong"}).status_code == 401
    assert get({"Authorization": f"Bearer {verify_only}"}).status_code == 403
    service.revoke_key(user, key.public_id, service.Origin())
    assert get({"Authorization": f"Bearer {value}"}).status_code == 401
