"""Bodies sent with Transfer-Encoding: chunked, against the real server (`keyvault serve`): read
whole when under the limit, 413 problem+json when over it, on the fast path and in Flask."""

from __future__ import annotations

import contextlib
import http.client
import json
from urllib.parse import urlsplit

import pytest

LIMIT = 1024 * 1024  # KEYVAULT_MAX_BODY_BYTES' default, what the live server runs with


def post_chunked(url: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        # A server may answer 413 and close before reading the rest: read its answer anyway.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request("POST", path, body=(body[i:i + 65536]
                                                    for i in range(0, len(body), 65536)),
                               headers={"Content-Type": "application/json", **headers},
                               encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.fixture
def service_key(make_user, make_key):
    _, value = make_key(make_user("service@example.com"), label="service", scopes=["key:verify"])
    return value


def test_a_chunked_verify_is_answered(live_server, user, make_key, service_key):
    _, value = make_key(user)
    status, answer = post_chunked(live_server.url, "/api/verify/",
                                  json.dumps({"key": value}).encode(),
                                  {"Authorization": f"Bearer {service_key}"})
    assert (status, answer["active"]) == (200, True)


@pytest.mark.parametrize("path", ["/api/verify/", "/api/personal_api_keys/"])
def test_a_chunked_body_over_the_limit_is_413(live_server, user, make_key, service_key, path):
    """Not a 400 about JSON cut short at the limit: the body is too large, and nothing is made."""
    _, writer = make_key(user, label="writer", scopes=["*"])
    caller = service_key if path == "/api/verify/" else writer
    body = json.dumps({"key": "x" * LIMIT} if path == "/api/verify/" else {"label": "x" * LIMIT}
                      ).encode()
    status, problem = post_chunked(live_server.url, path, body,
                                   {"Authorization": f"Bearer {caller}"})
    assert status == 413
    assert str(LIMIT) in problem["detail"]
    status, _ = post_chunked(live_server.url, path, b"x" * (LIMIT + 1),
                             {"Authorization": f"Bearer {caller}"})
    assert status == 413


def test_a_chunked_create_under_the_limit_works(live_server, user, make_key):
    _, writer = make_key(user, label="writer", scopes=["*"])
    status, key = post_chunked(live_server.url, "/api/personal_api_keys/",
                               json.dumps({"label": "chunked", "scopes": ["user:read"]}).encode(),
                               {"Authorization": f"Bearer {writer}"})
    assert (status, key["label"]) == (201, "chunked")
