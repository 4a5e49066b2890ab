"""A Python client generated from /api/schema/ by a standard generator (openapi-python-client)
imports and works against the real server: create, list through every page, revoke, verify."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys

import pytest
import requests

PACKAGE = "kv_generated_client"


@pytest.fixture(scope="module")
def generated(live_server_process, tmp_path_factory):
    """The client package, generated from the live server's own document, and imported."""
    folder = tmp_path_factory.mktemp("generated")
    schema = folder / "openapi.json"
    schema.write_bytes(requests.get(f"{live_server_process.url}/api/schema/", timeout=10).content)
    generator = shutil.which("openapi-python-client", path=os.path.dirname(sys.executable))
    assert generator, "openapi-python-client is a test dependency (pyproject.toml)"
    result = subprocess.run(
        [generator, "generate", "--path", str(schema), "--meta", "none",
         "--output-path", str(folder / PACKAGE)],
        capture_output=True, text=True, timeout=120,
        # its post-generation hooks run ruff, which lives beside it in the environment
        env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep
             + os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _api(tag: str, operation: str):
    """The generated module of one operation (the generator names them by tag and operation)."""
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{operation}")


def test_generated_client_creates_lists_revokes_and_verifies(generated, live_server, user,
                                                             make_key, make_user):
    models = importlib.import_module(f"{PACKAGE}.models")
    keys = "personal_api_keys"
    _, admin_value = make_key(user, label="automation", scopes=["*"])
    _, service_value = make_key(make_user("service@example.com"), label="service",
                                scopes=["key:verify"])
    client = generated.AuthenticatedClient(base_url=live_server.url, token=admin_value,
                                           raise_on_unexpected_status=True)

    created = []
    for number in range(3):
        body = models.CreateKey(label=f"generated {number}",
                                scopes=[models.Scope("user:read")])
        response = _api(keys, "create_key").sync_detailed(client=client, body=body)
        assert response.status_code == 201
        assert isinstance(response.parsed, models.ApiKeyWithValue)
        created.append(response.parsed)
    assert created[0].value.startswith("kv_") and created[0].scopes == ["user:read"]

    # Every page, following `next` as a client must: two keys a page.
    seen, page = [], _api(keys, "list_keys").sync(client=client, limit=2)
    pages = 1
    while True:
        seen += [key.id for key in page.results]
        if not page.next_:
            break
        response = client.get_httpx_client().get(page.next_)
        assert response.status_code == 200
        page = models.ApiKeyPage.from_dict(response.json())
        pages += 1
    assert pages == 2
    assert set(seen) >= {key.id for key in created} and len(seen) == len(set(seen)) == 4

    verifier = generated.AuthenticatedClient(base_url=live_server.url, token=service_value,
                                             raise_on_unexpected_status=True)
    verify = _api("verification", "verify_key")
    answer = verify.sync(client=verifier, body=models.VerifyRequest(key=created[1].value))
    assert isinstance(answer, models.ActiveKey)
    assert (answer.key_id, answer.label, answer.rolled) == (created[1].id, "generated 1", False)
    assert answer.user.email == user.email

    response = _api(keys, "revoke_key").sync_detailed(created[1].id, client=client)
    assert response.status_code == 204
    answer = verify.sync(client=verifier, body=models.VerifyRequest(key=created[1].value))
    assert isinstance(answer, models.InactiveKey) and answer.code == "revoked"

    detail = _api(keys, "get_key").sync(created[1].id, client=client)
    assert detail.status == "revoked" and detail.revoked_at is not None
    # their keep-alive connections, or the socket is left to the garbage collector (a warning)
    client.get_httpx_client().close()
    verifier.get_httpx_client().close()
