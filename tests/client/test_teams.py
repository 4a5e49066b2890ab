"""keyvault-client for teams' keys, against the live KeyVault (`keyvault serve`): a service
account's key and a service's own verify key say whose they are; a registered service asking
about a person's key it may not hear the email of gets the verdict without it (never a made-up
"no verdict"); a key restricted to address ranges is judged at the address the guard passes; a
key past its owner's rate is a 429 with Retry-After from every guard, and a limited key's use is
never answered from the verdict cache."""

from __future__ import annotations

import time

import pytest
import requests
from keyvault_client import KeyVaultClient, Owner
from keyvault_client.wsgi import ENVIRON_KEY, KeyVaultMiddleware
from werkzeug.test import Client

from keyvault import service
from keyvault.service.limit_terms import RateTerms
from tests.client.conftest import SCOPE

ORIGIN = service.Origin("127.0.0.1", "pytest")


@pytest.fixture
def acme(make_user):
    """Ada owns Acme, which runs the `billing` service (its own verify key) and a service
    account, `deploy-bot`, with one key."""
    ada = make_user("ada@example.com")
    org = service.organizations.create_organization(ada, "Acme", ORIGIN).organization
    billing = service.services.create_service(
        ada, org.public_id, ORIGIN, name="Billing", audience="billing",
        scopes=[{"name": "invoice:read", "description": "Read invoices"}])
    verify_key = service.services.create_service_key(ada, org.public_id, billing.public_id,
                                                     ORIGIN, label="verify")[1]
    account = service.service_accounts.create_service_account(ada, org.public_id, ORIGIN,
                                                              name="deploy-bot")
    bot_key = service.service_accounts.create_account_key(
        ada, org.public_id, account.public_id, ORIGIN, label="bot key", scopes=[SCOPE])[1]
    return ada, org, billing, verify_key, account, bot_key


def test_a_service_accounts_key_says_whose_it_is(kv, acme):
    _, org, _, _, account, bot_key = acme
    verification = kv.verify(bot_key, [SCOPE])
    assert verification.active and verification.scopes == (SCOPE,)
    assert (verification.user_id, verification.user_email) == (None, None)
    assert verification.owner == Owner(type="service_account", id=account.public_id,
                                       name="deploy-bot", organization_id=org.public_id,
                                       organization_name="Acme")
    assert verification.subject == f"sa_{account.public_id}"


def test_a_services_own_key_says_it_is_the_service(kv, acme):
    _, org, billing, verify_key, _, _ = acme
    verification = kv.verify(verify_key)
    assert verification.active and verification.user_id is None
    assert (verification.owner.type, verification.owner.id, verification.owner.audience) == (
        "service", billing.public_id, "billing")
    assert verification.owner.organization_id == org.public_id


def test_a_registered_service_hears_a_persons_key_without_the_email(live_server, acme,
                                                                    make_key):
    """Before, the client read `user.email` and raised UnexpectedAnswer (the guards' 503) for
    every key not restricted to the asking service."""
    ada, _, billing, verify_key, _, _ = acme
    _, value = make_key(ada, label="everywhere", scopes=["invoice:read", SCOPE])
    with KeyVaultClient(live_server.url, verify_key, timeout=10) as billing_kv:
        verification = billing_kv.verify(value, ["invoice:read"])
        assert verification.active and verification.audience == "billing"
        assert (verification.user_id, verification.user_email) == (ada.id, None)
        assert verification.owner == Owner(type="user", id=ada.id)
        assert set(verification.scopes) == {"invoice:read", SCOPE}
        restricted = service.create_key(ada, label="billing only", scopes=["invoice:read"],
                                        origin=ORIGIN, services=[billing.public_id])[1]
        assert billing_kv.verify(restricted).user_email == "ada@example.com"


def guarded(kv: KeyVaultClient) -> Client:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ[ENVIRON_KEY].code.encode()]

    return Client(KeyVaultMiddleware(app, kv, [SCOPE]))


def test_a_key_restricted_to_addresses_is_judged_where_the_request_came_from(kv, user,
                                                                              make_key):
    _, value = make_key(user, label="office only", scopes=[SCOPE], allowed_ips=["203.0.113.0/24"])
    assert kv.verify(value, [SCOPE]).code == "ip_not_allowed"  # no address: never a pass
    assert kv.verify(value, [SCOPE], client_ip="203.0.113.7").active
    assert kv.verify(value, [SCOPE], client_ip="198.51.100.1").code == "ip_not_allowed"
    assert kv.verify(value, [SCOPE], client_ip="unix:/run/app.sock").code == "ip_not_allowed"
    inside = guarded(kv).get("/", headers={"Authorization": f"Bearer {value}"},
                             environ_base={"REMOTE_ADDR": "203.0.113.50"})
    assert (inside.status_code, inside.get_data()) == (200, b"valid")
    outside = guarded(kv).get("/", headers={"Authorization": f"Bearer {value}"},
                              environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert outside.status_code == 403 and outside.json["code"] == "ip_not_allowed"


def test_a_key_past_its_rate_is_a_429_with_retry_after_and_is_never_cached(
        live_server, service_key, user, make_key):
    _, value = make_key(user, label="limited", scopes=[SCOPE], rate_limit=RateTerms(2, 3600))
    with KeyVaultClient(live_server.url, service_key, timeout=10, cache_seconds=60) as kv:
        deadline = time.monotonic() + 10
        while kv.cache.ticket() is None:
            assert time.monotonic() < deadline, "the revocation stream never came up"
            time.sleep(0.02)
        first = kv.verify(value, [SCOPE])
        assert first.active and first.answer["ratelimit"]["remaining"] == 1
        assert len(kv.cache) == 0  # a limited key's every use is counted by KeyVault
        assert kv.verify(value, [SCOPE]).active
        refused = guarded(kv).get("/", headers={"Authorization": f"Bearer {value}"})
        assert refused.status_code == 429
        wait = int(refused.headers["Retry-After"])
        assert 0 < wait <= 3600 and refused.json["code"] == "rate_limited"
        assert kv.verify(value, [SCOPE]).retry_after == pytest.approx(wait, abs=2)


def test_cost_is_sent_and_checked(kv, user, make_key):
    _, value = make_key(user, scopes=[SCOPE])
    assert kv.verify(value, [SCOPE], cost=3).active
    with pytest.raises(TypeError, match="cost"):
        kv.verify(value, [SCOPE], cost=-1)
    answer = requests.post(f"{kv.base_url}/api/verify/", json={"key": value, "cost": 3},
                           headers={"Authorization": kv._options["headers"]["Authorization"]})
    assert answer.json()["active"] is True
