"""A service account's pool (issue 25): a rate and a quota all of its keys share, set by the
organisation's owners and admins (API) or the operator (CLI); a key's own limits and the pool's
both apply, the stricter answering, and a use takes from both or neither. Also: the key
commands' limit options, and an API edit of a key and its limits being all or nothing."""

from __future__ import annotations

import json

import pytest

from keyvault import service
from keyvault.service.limit_terms import UsageTerms
from tests.conftest import verify
from tests.org_world import ORIGIN, build


@pytest.fixture
def world(make_user):
    return build(make_user, roles=("owner", "admin", "member", "outsider"))


@pytest.fixture
def verifier(world):
    return service.create_key(world.people["outsider"], label="svc", scopes=["key:verify"],
                              origin=ORIGIN)[1]


def pool_url(world) -> str:
    return f"/api/organizations/{world.org}/service_accounts/{world.sa}/"


def sa_key(world, **limits) -> str:
    return service.service_accounts.create_account_key(
        world.people["owner"], world.org, world.sa, ORIGIN, label="worker", scopes=["*"],
        **limits)[1]


@pytest.mark.parametrize(("who", "status"), [("owner", 200), ("admin", 200), ("member", 403),
                                             ("service_account", 403), ("outsider", 404)])
def test_owners_and_admins_set_the_pool(client, world, who, status):
    body = {"rate_limit": {"limit": 100, "window_seconds": 60},
            "usage_limit": {"remaining": 5000, "refill": {"amount": 5000, "interval": "monthly"}}}
    answer = client.patch(pool_url(world), json=body, headers=world.headers(who))
    assert answer.status_code == status, answer.get_data(as_text=True)
    shown = client.get(pool_url(world), headers=world.headers("owner")).json
    if status == 200:
        assert shown["rate_limit"] == {"limit": 100, "window_seconds": 60}
        assert shown["usage_limit"]["remaining"] == 5000
        assert shown["usage_limit"]["refill"] == {"amount": 5000, "interval": "monthly",
                                                  "day_of_month": 1}
        cleared = client.patch(pool_url(world), json={"rate_limit": None, "usage_limit": None},
                               headers=world.headers(who)).json
        assert (cleared["rate_limit"], cleared["usage_limit"]) == (None, None)
    else:
        assert (shown["rate_limit"], shown["usage_limit"]) == (None, None)


@pytest.mark.parametrize("body", [{"rate_limit": {"limit": 0, "window_seconds": 60}},
                                  {"usage_limit": {"remaining": -1}},
                                  {"usage_limit": {"remaining": 5, "refill": {"amount": 5,
                                                                              "interval": "weekly"}}},
                                  {"name": "", "usage_limit": {"remaining": 5}}])
def test_a_bad_pool_is_refused_and_nothing_written(client, world, body):
    answer = client.patch(pool_url(world), json=body, headers=world.headers("owner"))
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"
    shown = client.get(pool_url(world), headers=world.headers("owner")).json
    assert (shown["name"], shown["usage_limit"]) == ("deploy-bot", None)


def test_two_keys_share_the_pool_and_the_stricter_answers(client, world, verifier):
    service.service_accounts.update_service_account(
        world.people["owner"], world.org, world.sa, ORIGIN, usage_limit=UsageTerms(6))
    own, shared = sa_key(world, usage_limit=UsageTerms(2)), world.sa_value
    answers = [verify(client, verifier, value) for value in (own, own, own)]
    assert [(a["code"], a["usage"]["remaining"]) for a in answers] == [
        ("valid", 1), ("valid", 0), ("usage_exceeded", 0)]  # its own quota is the stricter
    # the refused use took nothing from the pool: 4 left there for the other key
    answers = [verify(client, verifier, shared) for _ in range(5)]
    assert [(a["code"], a["usage"]["remaining"]) for a in answers] == [
        ("valid", 3), ("valid", 2), ("valid", 1), ("valid", 0), ("usage_exceeded", 0)]


def test_a_pools_rate_counts_every_key_of_the_account(client, world, verifier):
    answer = client.patch(pool_url(world), json={"rate_limit": {"limit": 3, "window_seconds": 3600}},
                          headers=world.headers("admin"))
    assert answer.status_code == 200
    other = sa_key(world)
    codes = [verify(client, verifier, value)["code"]
             for value in (world.sa_value, other, world.sa_value, other)]
    assert codes == ["valid", "valid", "valid", "rate_limited"]
    gate = client.get("/api/forward_auth/", headers={"Authorization": f"Bearer {other}"})
    assert gate.status_code == 429 and "Retry-After" in gate.headers
    assert gate.json["limit"] == "pool"


def test_an_api_edit_of_a_key_and_its_limits_is_all_or_nothing(client, make_user, make_key):
    owner = make_user("owner@example.com")
    key, value = make_key(owner, label="before", usage_limit=UsageTerms(5))
    url, auth = f"/api/personal_api_keys/{key.public_id}/", {"Authorization": f"Bearer {value}"}
    refused = client.patch(url, headers=auth, json={"label": "after", "scopes": ["nope:read"],
                                                    "usage_limit": {"remaining": 50}})
    assert refused.status_code == 400
    shown = client.get(url, headers=auth).json
    # the refused PATCH and this GET each took one use: only the limits' reset was undone
    assert (shown["label"], shown["usage_limit"]["remaining"]) == ("before", 3)
    done = client.patch(url, headers=auth, json={"label": "after",
                                                 "usage_limit": {"remaining": 50}})
    assert done.status_code == 200
    assert (done.json["label"], done.json["usage_limit"]["remaining"]) == ("after", 50)


def test_the_services_edit_writes_fields_and_limits_together_or_not_at_all(app, make_user,
                                                                          make_key):
    owner = make_user("owner@example.com")
    key = make_key(owner, label="before")[0]
    edit = service.key_limits.update_key_and_limits
    with pytest.raises(service.InvalidInput):  # the fields are fine, the quota is not
        edit(owner, key.public_id, origin=ORIGIN, label="after", usage_limit=UsageTerms(-1))
    with pytest.raises(service.InvalidInput):  # the quota is fine, the label is not
        edit(owner, key.public_id, origin=ORIGIN, label=" ", usage_limit=UsageTerms(5))
    key = service.get_key(owner, key.public_id)
    assert (key.label, key.limits) == ("before", None)


# ---------------------------------------------------------------- the command line


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


def test_keys_create_sets_a_rate_and_a_refilling_quota(cli, make_user, client, verifier):
    make_user("alice@example.com")
    made = cli("keys", "create", "alice@example.com", "--label", "trial", "--scope", "*",
               "--rate-limit", "100/60", "--quota", "1000", "--refill", "monthly:5", "--json")
    assert made.exit_code == 0, made.output
    answer = json.loads(made.stdout)
    assert answer["rate_limit"] == {"limit": 100, "window_seconds": 60}
    assert answer["usage_limit"]["refill"] == {"amount": 1000, "interval": "monthly",
                                               "day_of_month": 5}
    assert verify(client, verifier, answer["value"])["usage"]["remaining"] == 999


@pytest.mark.parametrize(("args", "message"), [
    (["--rate-limit", "100"], "write it as N/SECONDS"),
    (["--rate-limit", "0/60"], "N is 1 to 1,000,000,000 and SECONDS 1 to 86,400"),
    (["--rate-limit", "5/86401"], "N is 1 to 1,000,000,000 and SECONDS 1 to 86,400"),
    (["--quota", "-1"], "--quota"),
    (["--refill", "daily"], "--refill needs --quota"),
    (["--quota", "5", "--refill", "weekly"], "write daily, monthly (on the 1st) or monthly:DAY"),
    (["--quota", "5", "--refill", "monthly:29"], "DAY from 1 to 28"),
])
def test_keys_create_refuses_bad_limits_clearly(cli, make_user, args, message):
    make_user("alice@example.com")
    result = cli("keys", "create", "alice@example.com", "--label", "x", "--scope", "*", *args)
    assert result.exit_code == 2 and message in result.stderr and result.stdout == ""
    assert service.list_keys(service.find_user("alice@example.com")) == []


def test_the_operator_sets_and_removes_a_pool(cli, world):
    done = cli("service-accounts", "set-pool", world.org, world.sa, "--rate-limit", "10/1",
               "--quota", "500", "--refill", "daily")
    assert done.exit_code == 0, done.output
    assert "deploy-bot's pool: 10 requests in 1 s, 500 uses left." in done.stdout
    done = cli("service-accounts", "set-pool", world.org, world.sa, "--no-quota")
    assert "10 requests in 1 s, no quota" in done.stdout
    nothing = cli("service-accounts", "set-pool", world.org, world.sa)
    assert nothing.exit_code == 2 and "Give --rate-limit, --quota" in nothing.stderr
    both = cli("service-accounts", "set-pool", world.org, world.sa, "--quota", "1", "--no-quota")
    assert both.exit_code == 2 and "not both" in both.stderr
