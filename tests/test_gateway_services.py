"""Real gateways (nginx auth_request, Caddy forward_auth) in front of two services, each
authenticating to a real KeyVault (`keyvault serve`) as its service, configured as the README's
"Services and restricted keys" shows: a key restricted to billing passes at billing only."""

from __future__ import annotations

import pytest

import tests.test_gateways as gateways  # the configs its starters read, replaced per test
from keyvault import service
from tests.test_gateways import _caddy as caddy_start
from tests.test_gateways import (  # noqa: F401 - fixtures
    _get,
    _running,
    _seen,
    _wait_until_up,
    keyvault,
    upstream,
)
from tests.test_gateways import _nginx as nginx_start

pytestmark = pytest.mark.live_server
ORIGIN = service.Origin("127.0.0.1", "pytest")
SERVICES = {"billing": "invoice:read", "search": "doc:read"}

NGINX_ROUTE = """
        location /{name}/ {{{{
            auth_request /_keyvault_{name};
            auth_request_set $kv_key_id $upstream_http_x_keyvault_key_id;
            auth_request_set $kv_scopes $upstream_http_x_keyvault_scopes;
            auth_request_set $kv_audience $upstream_http_x_keyvault_audience;
            proxy_set_header X-KeyVault-Key-Id $kv_key_id;
            proxy_set_header X-KeyVault-Scopes $kv_scopes;
            proxy_set_header X-KeyVault-Audience $kv_audience;
            proxy_set_header X-KeyVault-Service-Key "";
            proxy_pass http://127.0.0.1:{{upstream}};
        }}}}
        location = /_keyvault_{name} {{{{
            internal;
            proxy_pass {{keyvault}}/api/forward_auth/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-KeyVault-Service "{name}";
            proxy_set_header X-KeyVault-Service-Key "{key}";
            proxy_set_header X-KeyVault-Required-Scopes "{scope}";
        }}}}"""
CADDY_ROUTE = """
    route /{name}/* {{{{
        request_header -X-KeyVault-*
        forward_auth {{keyvault_host}} {{{{
            uri /api/forward_auth/
            header_up X-KeyVault-Service {name}
            header_up X-KeyVault-Service-Key {key}
            header_up X-KeyVault-Required-Scopes {scope}
            copy_headers X-KeyVault-Key-Id X-KeyVault-Scopes X-KeyVault-Audience
        }}}}
        reverse_proxy 127.0.0.1:{{upstream}}
    }}}}"""


@pytest.fixture
def app(make_app):
    app = make_app()
    with app.app_context():
        yield app


@pytest.fixture
def two_services(app, make_user):
    ada = make_user("ada@example.com")
    org = service.organizations.create_organization(ada, "Acme", ORIGIN).organization.public_id
    ids, keys = {}, {}
    for name, scope in SERVICES.items():
        made = service.services.create_service(ada, org, ORIGIN, name=name, audience=name,
                                               scopes=[{"name": scope, "description": "Read"}])
        ids[name] = made.public_id
        keys[name] = service.services.create_service_key(ada, org, made.public_id, ORIGIN,
                                                         label="gateway")[1]
    return ada, ids, keys


@pytest.fixture(params=["nginx", "caddy"])
def gateway(request, keyvault, upstream, tmp_path, monkeypatch, two_services):  # noqa: F811
    _, _, keys = two_services
    if request.param == "nginx":
        routes = "".join(NGINX_ROUTE.format(name=n, key=keys[n], scope=s)
                         for n, s in SERVICES.items())
        config = gateways.NGINX.split("        location /flags/")[0] + routes + "\n    }}\n}}\n"
        monkeypatch.setattr(gateways, "NGINX", config)
        start = nginx_start
    else:
        routes = "".join(CADDY_ROUTE.format(name=n, key=keys[n], scope=s)
                         for n, s in SERVICES.items())
        config = gateways.CADDY.split("    route /flags/")[0] + routes + "\n}}\n"
        monkeypatch.setattr(gateways, "CADDY", config)
        start = caddy_start
    yield from _running(start, keyvault, upstream, tmp_path)


def test_two_services_behind_a_gateway(gateway, two_services):
    ada, ids, _ = two_services
    restricted = service.create_key(ada, label="b", scopes=["invoice:read", "doc:read"],
                                    origin=ORIGIN, services=[ids["billing"]])[1]
    everywhere = service.create_key(ada, label="e", scopes=["invoice:read", "doc:read"],
                                    origin=ORIGIN)[1]
    at_billing = _get(gateway, "/billing/x", restricted)
    assert at_billing.status_code == 200
    seen = _seen(at_billing)
    assert (seen["x-keyvault-audience"], seen["x-keyvault-scopes"]) == ("billing", "invoice:read")
    assert "x-keyvault-service-key" not in seen or seen["x-keyvault-service-key"] == ""
    assert _get(gateway, "/search/x", restricted).status_code == 401  # wrong_service
    at_search = _get(gateway, "/search/x", everywhere)
    assert at_search.status_code == 200
    assert (_seen(at_search)["x-keyvault-audience"], _seen(at_search)["x-keyvault-scopes"]) == (
        "search", "doc:read")
    # a client cannot pose as the other service: the gateway sets both headers itself
    posing = _get(gateway, "/search/x", restricted, **{"X-KeyVault-Service": "billing"})
    assert posing.status_code == 401
