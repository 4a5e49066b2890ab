"""Services and keys restricted to them (issue 24): what verify answers each service, the
services API, scopes that keys carry, and keys restricted to organisations."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from flask import request
from sqlalchemy import select

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import csrf_from, shown_key

ORIGIN = service.Origin("127.0.0.1", "pytest")
services = service.services


@dataclass
class Two:
    """Acme runs billing (A) and search (B); each has its own verify key. Ada is in Acme."""

    org: str
    other_org: str
    billing: str
    search: str
    billing_verify: str  # values
    search_verify: str
    plain_verify: str  # a person's key:verify key: "no service"
    owner_key: str  # Ada's `*` personal key, for the API
    ada: object


@pytest.fixture
def two(app, make_user, make_key):
    ada = make_user("ada@example.com")
    org = service.organizations.create_organization(ada, "Acme", ORIGIN).organization
    other = service.organizations.create_organization(ada, "Elsewhere", ORIGIN).organization
    billing = services.create_service(ada, org.public_id, ORIGIN, name="Billing",
                                      audience="billing", scopes=[
                                          {"name": "invoice:read", "description": "Read"},
                                          {"name": "invoice:write", "description": "Issue"}])
    search = services.create_service(ada, other.public_id, ORIGIN, name="Search",
                                     audience="https://search.example.com",
                                     scopes=[{"name": "doc:read", "description": "Read docs"}])
    verify_keys = [services.create_service_key(ada, o, s.public_id, ORIGIN, label="verify")[1]
                   for o, s in ((org.public_id, billing), (other.public_id, search))]
    plain = make_key(make_user("svc@example.com"), label="v", scopes=["key:verify"])[1]
    return Two(org.public_id, other.public_id, billing.public_id, search.public_id,
               *verify_keys, plain, make_key(ada, label="cli")[1], ada)


def ask(client, caller: str, value: str, scopes=None) -> dict:
    body = {"key": value} if scopes is None else {"key": value, "scopes": scopes}
    response = client.post("/api/verify/", json=body, headers={"Authorization": f"Bearer {caller}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def personal_key(two: Two, scopes=("invoice:read", "doc:read", "user:read"), **where) -> str:
    return service.create_key(two.ada, label="k", scopes=list(scopes), origin=ORIGIN,
                              **where)[1]


def test_a_key_restricted_to_a_service_works_there_only(client, two):
    value = personal_key(two, services=[two.billing])
    at_a = ask(client, two.billing_verify, value)
    assert (at_a["active"], at_a["aud"]) == (True, "billing")
    assert at_a["scopes"] == ["invoice:read", "user:read"]  # never doc:read, search's
    assert set(at_a["scope"].split()) == {"invoice:read", "user:read"}
    assert at_a["user"]["email"] == at_a["username"] == "ada@example.com"  # restricted here
    assert ask(client, two.search_verify, value) == {"active": False, "code": "wrong_service"}
    assert ask(client, two.plain_verify, value) == {"active": False, "code": "wrong_service"}


def test_an_unrestricted_key_at_a_service_shows_only_its_scopes_and_no_email(client, two):
    value = personal_key(two)
    at_a = ask(client, two.billing_verify, value)
    assert at_a["aud"] == "billing" and at_a["scopes"] == ["invoice:read", "user:read"]
    assert at_a["user"] == {"id": two.ada.id} and at_a["owner"] == {"type": "user",
                                                                     "id": two.ada.id}
    assert "username" not in at_a and at_a["sub"] == str(two.ada.id)
    # a plain key:verify caller hears everything, as before services existed
    plain = ask(client, two.plain_verify, value)
    assert "aud" not in plain and plain["username"] == "ada@example.com"
    assert plain["scopes"] == ["invoice:read", "doc:read", "user:read"]


@pytest.mark.parametrize(("scopes", "required", "code"), [
    (["*"], ["invoice:write"], "valid"),
    (["*"], ["doc:read"], "insufficient_scope"),  # another service's: never a hint
    (["invoice:read", "doc:read"], ["doc:read"], "insufficient_scope"),
    (["invoice:read"], ["invoice:write"], "insufficient_scope"),
    (["invoice:write"], ["invoice:read"], "valid"),
])
def test_required_scopes_at_a_service(client, two, scopes, required, code):
    assert ask(client, two.billing_verify, personal_key(two, scopes), required)["code"] == code


def test_a_full_access_key_at_a_service_is_spelled_out_over_its_scopes(client, two):
    answer = ask(client, two.billing_verify, personal_key(two, ["*"]))
    assert "invoice:write" in answer["scopes"] and "doc:read" not in answer["scopes"]
    assert "*" not in answer["scopes"]


def test_an_organisation_restricted_key_works_at_its_services_added_later(client, two):
    value = personal_key(two, organizations=[two.org])
    later = services.create_service(two.ada, two.org, ORIGIN, name="Reports", audience="reports")
    later_verify = services.create_service_key(two.ada, two.org, later.public_id, ORIGIN,
                                               label="v")[1]
    answer = ask(client, later_verify, value)
    assert (answer["code"], answer["aud"], answer["username"]) == ("valid", "reports",
                                                                   "ada@example.com")
    assert ask(client, two.search_verify, value)["code"] == "wrong_service"


def test_a_service_key_verifies_only_and_says_whose_it_is(client, two):
    answer = ask(client, two.plain_verify, two.billing_verify)
    assert answer["scopes"] == ["key:verify"] and answer["sub"] == f"svc_{two.billing}"
    assert answer["owner"]["type"] == "service" and answer["owner"]["audience"] == "billing"
    api = client.get("/api/users/@me/", headers={"Authorization": f"Bearer {two.billing_verify}"})
    assert api.status_code == 403


def test_restricted_keys_still_manage_themselves(client, two):
    value = personal_key(two, ["personal_api_key:write"], services=[two.billing])
    response = client.get("/api/personal_api_keys/", headers={"Authorization": f"Bearer {value}"})
    assert response.status_code == 200
    assert response.json["results"][0]["services"] == [two.billing]


def test_an_organisation_restricted_key_manages_only_those_organisations(client, two):
    value = personal_key(two, ["organization:read"], organizations=[two.org])
    auth = {"Authorization": f"Bearer {value}"}
    assert client.get(f"/api/organizations/{two.org}/", headers=auth).status_code == 200
    other = client.get(f"/api/organizations/{two.other_org}/services/", headers=auth)
    assert other.status_code == 404  # as if absent
    listed = client.get("/api/organizations/", headers=auth).json["results"]
    assert [o["id"] for o in listed] == [two.org]


def test_the_services_api(client, two, make_user, make_key):
    auth = {"Authorization": f"Bearer {two.owner_key}"}
    base = f"/api/organizations/{two.org}/services/"
    body = {"name": "Mail", "audience": "mail", "description": "Sends mail",
            "scopes": [{"name": "mail:send", "description": "Send mail"}]}
    created = client.post(base, json=body, headers=auth)
    assert created.status_code == 201, created.json
    assert {k: created.json[k] for k in body} == body
    assert created.json["keys_restricted"] == 0
    one = base + created.json["id"] + "/"
    assert client.get(one, headers=auth).json["audience"] == "mail"
    for clash in ({"name": "billing"}, {"audience": "billing"},
                  {"scopes": [{"name": "invoice:read", "description": "x"}]},
                  {"scopes": [{"name": "key:verify", "description": "x"}]}):
        again = client.post(base, json={**body, "name": "Other", "audience": "other", **clash},
                            headers=auth)
        assert again.status_code == 409, (clash, again.json)
    assert client.post(base, json={**body, "scopes": [{"name": "Bad Scope", "description": "x"}]},
                       headers=auth).status_code == 400
    # the catalogue now offers mail:send; a key carries it; removing it is refused, then narrowed
    key = client.post("/api/personal_api_keys/", json={"label": "m", "scopes": ["mail:send",
                                                                                 "user:read"],
                                                        "services": [created.json["id"]]},
                      headers=auth)
    assert key.status_code == 201 and key.json["services"] == [created.json["id"]]
    assert client.get(one, headers=auth).json["keys_restricted"] == 1
    theirs = make_key(make_user("zed@example.com"), label="zed's secret label",
                      scopes=["mail:send"])[0]
    refused = client.patch(one, json={"scopes": []}, headers=auth)
    assert refused.status_code == 409 and key.json["id"] in refused.json["detail"]
    assert "1 of other people" in refused.json["detail"]  # counted, never named
    assert theirs.public_id not in refused.json["detail"] and "zed" not in refused.json["detail"]
    narrowed = client.patch(one, json={"scopes": [], "narrow": True}, headers=auth)
    assert narrowed.status_code == 200 and narrowed.json["scopes"] == []
    assert db.session.scalar(select(ApiKey.scopes).where(
        ApiKey.public_id == key.json["id"])) == ["user:read"]
    assert db.session.scalar(select(ApiKey.scopes).where(ApiKey.id == theirs.id)) == []
    assert db.session.scalar(select(SecurityEvent.details).where(
        SecurityEvent.event == "key.updated"))["scopes_removed"] == ["mail:send"]
    # verify keys: key:verify only, value once
    made = client.post(one + "keys/", json={"label": "v"}, headers=auth)
    assert made.status_code == 201 and made.json["scopes"] == ["key:verify"] and made.json["value"]
    assert made.headers["Cache-Control"] == "no-store"
    assert "value" not in client.get(one + "keys/", headers=auth).json["results"][0]
    assert client.post(one + "keys/", json={"label": "v", "scopes": ["*"]},
                       headers=auth).status_code == 400
    rolled = client.post(one + f"keys/{made.json['id']}/roll/", json={}, headers=auth)
    assert rolled.status_code == 200 and rolled.json["value"] != made.json["value"]
    assert client.delete(one + f"keys/{made.json['id']}/", headers=auth).status_code == 204
    assert client.delete(one, headers=auth).status_code == 204
    assert client.get(one, headers=auth).status_code == 404


def test_restriction_on_edit_the_api_only_narrows(client, two):
    auth = {"Authorization": f"Bearer {two.owner_key}"}
    made = client.post("/api/personal_api_keys/", json={
        "label": "x", "scopes": ["user:read"], "services": [two.billing, two.search]},
        headers=auth).json
    path = f"/api/personal_api_keys/{made['id']}/"
    narrowed = client.patch(path, json={"services": [two.billing]}, headers=auth)
    assert narrowed.status_code == 200 and narrowed.json["services"] == [two.billing]
    for wider in ({"services": [two.search]}, {"services": None}):
        assert client.patch(path, json=wider, headers=auth).status_code == 403
    assert client.post("/api/personal_api_keys/", json={
        "label": "x", "scopes": ["user:read"], "services": ["NoSuchService1"]},
        headers=auth).status_code == 400


def test_service_accounts_keys_take_services_but_not_organisations(two):
    account = service.service_accounts.create_service_account(two.ada, two.org, ORIGIN,
                                                              name="bot")
    key, _ = service.service_accounts.create_account_key(
        two.ada, two.org, account.public_id, ORIGIN, label="k", scopes=["user:read"],
        services=[two.billing])
    assert key.restricted_to == {"services": [two.billing], "organizations": []}
    with pytest.raises(service.InvalidInput):
        service.service_accounts.create_account_key(
            two.ada, two.org, account.public_id, ORIGIN, label="k", scopes=["user:read"],
            organizations=[two.org])


def test_the_fast_path_answers_a_service_as_the_view(client, two, app):
    seen = []
    app.before_request(lambda: seen.append(request.path))
    value = personal_key(two, services=[two.billing])
    for caller in (two.billing_verify, two.search_verify):
        fast = client.post("/api/verify/", json={"key": value},
                           headers={"Authorization": f"Bearer {caller}"})
        slow = client.post("/api/verify/", json={"key": value, "personal_api_key": caller})
        assert fast.get_data() == slow.get_data()
    assert seen == ["/api/verify/", "/api/verify/"]  # only the body-credential calls


@pytest.mark.parametrize(("gateway", "where", "status"), [
    ("billing", "billing", 200),
    ("search", "billing", 401),  # restricted elsewhere: wrong_service
    (None, "billing", 401),  # a gateway that names no service is no service
    (None, None, 200),
    ("billing", None, 200),
])
def test_forward_auth_as_a_service(client, two, gateway, where, status):
    value = personal_key(two, services=[two.billing] if where else None)
    headers = {"Authorization": f"Bearer {value}"}
    if gateway is not None:
        headers.update({"X-KeyVault-Service": "billing" if gateway == "billing"
                        else "https://search.example.com",
                        "X-KeyVault-Service-Key": two.billing_verify if gateway == "billing"
                        else two.search_verify})
    response = client.get("/api/forward_auth/", headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 200 and gateway is not None:
        assert response.headers["X-KeyVault-Audience"] == "billing"
        assert response.headers["X-KeyVault-Scopes"] == "invoice:read user:read"
        assert ("X-KeyVault-User-Email" in response.headers) is (where is not None)


def test_forward_auth_refuses_a_gateway_without_the_services_key(client, two):
    value = personal_key(two)
    for extra, status in (({}, 401), ({"X-KeyVault-Service-Key": two.search_verify}, 403)):
        response = client.get("/api/forward_auth/", headers={
            "Authorization": f"Bearer {value}", "X-KeyVault-Service": "billing", **extra})
        assert response.status_code == status, extra
    required = client.get("/api/forward_auth/?scopes=doc:read", headers={
        "Authorization": f"Bearer {value}", "X-KeyVault-Service": "billing",
        "X-KeyVault-Service-Key": two.billing_verify})
    assert required.status_code == 403  # search's scope: insufficient at billing


def test_a_wrong_service_refusal_is_counted_and_logged_once_with_the_service(client, two, app):
    value = personal_key(two, services=[two.billing])
    for _ in range(3):
        assert ask(client, two.search_verify, value)["code"] == "wrong_service"
    events = db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.event == "key.wrong_service_use")).all()
    assert len(events) == 1 and events[0].details == {"service": "https://search.example.com"}
    assert "search.example.com" in service.describe(events[0]).summary
    service.usage.flush(app)
    key = db.session.scalar(select(ApiKey).where(ApiKey.restricted_to.is_not(None)))
    assert service.usage.key_usage(key, clock.now().date()).total("wrong_service") == 3


def test_the_command_line_registers_and_lists_services(app, two):
    run = app.test_cli_runner().invoke
    made = run(args=["services", "create", two.org, "Ledger", "--audience",
                     "https://ledger.example.com", "--scope", "ledger:read=Read the ledger",
                     "--scope", "ledger:write=Post entries"])
    assert made.exit_code == 0, made.output
    listed = run(args=["services", "list", two.org])
    assert made.output.strip() in listed.output and "ledger:read ledger:write" in listed.output
    for bad in (["--scope", "ledger:read"], ["--scope", "invoice:read=taken"]):
        refused = run(args=["services", "create", two.org, "Again", "--audience", "again", *bad])
        assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "ledger:read" in service.scope_catalogue()


def test_the_service_pages(client, auth, two, make_user):
    auth.login("ada@example.com")
    listed = client.get(f"/settings/organizations/{two.org}/services")
    assert listed.status_code == 200 and "Billing" in listed.get_data(as_text=True)
    made = client.post(f"/settings/organizations/{two.org}/services", data={
        "name": "Mail", "audience": "mail", "scopes": "mail:send=Send mail",
        "csrf_token": csrf_from(listed.get_data(as_text=True))})
    assert made.status_code == 303
    page_url = made.headers["Location"]
    html = client.get(page_url).get_data(as_text=True)
    assert "mail:send" in html and "Send mail" in html and "0 by name" in html
    created = client.post(page_url + "/keys", data={"label": "mail verify",
                                                    "csrf_token": csrf_from(html),
                                                    "once": re.search(
                                                        r'id="service-key-once" name="once" '
                                                        r'type="hidden" value="([^"]+)"',
                                                        html).group(1)})
    value = shown_key(created.get_data(as_text=True))
    assert created.status_code == 200 and value and created.headers["Cache-Control"] == "no-store"
    assert value not in client.get(page_url).get_data(as_text=True)  # shown once
    taken = client.post(f"/settings/organizations/{two.org}/services", data={
        "name": "Billing", "audience": "x", "csrf_token": csrf_from(html)})
    assert taken.status_code == 400 and "exists already" in taken.get_data(as_text=True)
    # the key pages say where a key works
    restricted = service.create_key(two.ada, label="r", scopes=["user:read"], origin=ORIGIN,
                                    services=[two.billing, two.search])[0]
    key_html = client.get(f"/settings/api-keys/{restricted.public_id}").get_data(as_text=True)
    assert "Billing, Search" in key_html
    assert "All services" in client.get("/settings/api-keys").get_data(as_text=True)
    # someone outside the organisation hears 404
    make_user("eve@example.com")
    auth.logout()
    auth.login("eve@example.com")
    assert client.get(f"/settings/organizations/{two.org}/services").status_code == 404


def test_the_key_forms_restrict_to_chosen_services(client, auth, two):
    from tests.conftest import once_token

    auth.login("ada@example.com")
    page = client.get("/settings/api-keys").get_data(as_text=True)
    assert '<code class="scope">invoice:read</code> <span class="scope-service">(Billing)' in page
    made = client.post("/settings/api-keys", data={
        "label": "billing only", "expiry": "30", "preset": "custom", "scopes": ["invoice:read"],
        "where": "only", "services": [two.billing], "csrf_token": csrf_from(page),
        "once": once_token(page)})
    assert made.status_code == 200, made.get_data(as_text=True)
    key = db.session.scalar(select(ApiKey).where(ApiKey.label == "billing only"))
    assert key.restricted_to == {"services": [two.billing], "organizations": []}
    edit = f"/settings/api-keys/{key.public_id}/edit"
    form = client.get(edit).get_data(as_text=True)
    saved = client.post(edit, data={"label": "billing only", "expiry": "keep",
                                    "scopes": ["invoice:read"], "where": "all",
                                    "csrf_token": csrf_from(form)})
    assert saved.status_code == 302, saved.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).restricted_to is None
