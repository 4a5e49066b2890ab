"""An off-the-shelf RFC 7662 resource server works with KeyVault's verify, unmodified: Authlib's
IntrospectTokenValidator, written as its own documentation shows, guarding a Flask app,
against the real server (`keyvault serve`)."""

from __future__ import annotations

import pytest
import requests
from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.oauth2.rfc7662 import IntrospectTokenValidator
from flask import Flask, jsonify

from keyvault import service


@pytest.fixture
def protected(live_server, make_user, make_key):
    """A service's Flask app whose routes Authlib guards by introspecting with KeyVault."""
    _, service_key = make_key(make_user("service@example.com"), label="service",
                              scopes=["key:verify"])

    class KeyVaultIntrospection(IntrospectTokenValidator):
        def introspect_token(self, token_string):
            # Authlib's documented shape; the introspection endpoint's own authentication is
            # the service's key. No caching: a revoked key must fail on the next request.
            response = requests.post(f"{live_server.url}/api/verify/",
                                     data={"token": token_string},
                                     headers={"Authorization": f"Bearer {service_key}"},
                                     timeout=5)
            response.raise_for_status()
            return response.json()

    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(KeyVaultIntrospection())
    app = Flask("service")

    @app.get("/me")
    @require_oauth("user:read")
    def me():
        return jsonify(sub=current_token["sub"], username=current_token["username"])

    @app.get("/keys")
    @require_oauth("personal_api_key:read")
    def keys():
        return jsonify(scope=current_token["scope"])

    return app.test_client()


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


@pytest.mark.parametrize(("granted", "path", "status"), [
    (["user:read"], "/me", 200),
    (["*"], "/me", 200),                            # `*` holds every scope
    (["personal_api_key:write"], "/keys", 200),     # write implies read
    (["personal_api_key:read"], "/me", 403),
    (["key:verify"], "/keys", 403),
])
def test_authlib_checks_scopes_as_keyvault_does(protected, user, make_key, granted, path,
                                                status):
    _, value = make_key(user, scopes=granted)
    response = protected.get(path, headers=bearer(value))
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 403:
        assert response.json["error"] == "insufficient_scope"
    if path == "/me" and status == 200:
        assert response.json == {"sub": str(user.id), "username": user.email}


def test_authlib_refuses_unknown_and_revoked_keys_at_once(protected, user, make_key):
    key, value = make_key(user, scopes=["user:read"])
    assert protected.get("/me", headers=bearer(value)).status_code == 200
    service.revoke_key(user, key.public_id, service.Origin())
    refused = protected.get("/me", headers=bearer(value))
    assert refused.status_code == 401 and refused.json["error"] == "invalid_token"
    assert protected.get("/me", headers=bearer("kv_" + "x" * 46)).status_code == 401


def test_an_oauth_client_introspects_with_its_client_secret(live_server, user, make_key,
                                                             make_user):
    """Authlib's OAuth 2.0 client, as it is: `introspect_token` posts the token as a form and
    authenticates with HTTP Basic (client_secret_basic, RFC 7662 §2.1). The service's key is
    its client secret; any client id will do."""
    from authlib.integrations.requests_client import OAuth2Session

    _, service_key = make_key(make_user("service@example.com"), label="service",
                              scopes=["key:verify"])
    key, value = make_key(user, scopes=["user:read"])
    url = f"{live_server.url}/api/verify/"
    with OAuth2Session(client_id="flags-service", client_secret=service_key) as oauth:
        answer = oauth.introspect_token(url, token=value).json()
        assert (answer["active"], answer["sub"], answer["scope"]) == (True, str(user.id),
                                                                     "user:read")
        service.revoke_key(user, key.public_id, service.Origin())
        assert oauth.introspect_token(url, token=value).json() == {"active": False,
                                                                   "code": "revoked"}
    with OAuth2Session(client_id="flags-service", client_secret="kv_wrong") as oauth:
        refused = oauth.introspect_token(url, token=value)
        assert refused.status_code == 401
