"""Organisations through the JSON API: each role can do exactly its rights on every route, other
organisations' ids are 404, the last owner stays, and a service account's key acts only inside
its own organisation."""

from __future__ import annotations

import pytest

from keyvault import service
from tests.org_world import ORIGIN, build

ORG = "/api/organizations/{org}/"
SA = ORG + "service_accounts/{sa}/"
KEY = SA + "keys/{key}/"
NEW_KEY = {"label": "another", "scopes": ["key:verify"]}

# (method, path, body, expected status for owner, admin, member, outsider, service account)
ROUTES = [
    ("get", "/api/organizations/", None, (200, 200, 200, 200, 200)),
    ("post", "/api/organizations/", {"name": "New"}, (201, 201, 201, 201, 403)),
    ("get", ORG, None, (200, 200, 200, 404, 200)),
    ("patch", ORG, {"name": "Renamed"}, (200, 403, 403, 404, 403)),
    ("patch", ORG, {"max_key_lifetime_days": 30}, (200, 403, 403, 404, 403)),
    ("delete", ORG, None, (204, 403, 403, 404, 403)),
    ("get", ORG + "log/", None, (200, 200, 200, 404, 200)),
    ("get", ORG + "members/", None, (200, 200, 200, 404, 200)),
    ("patch", ORG + "members/{target}/", {"role": "admin"}, (200, 200, 403, 404, 403)),
    ("patch", ORG + "members/{target}/", {"role": "owner"}, (200, 403, 403, 404, 403)),
    ("patch", ORG + "members/{owner_id}/", {"role": "member"}, (409, 403, 403, 404, 403)),
    ("delete", ORG + "members/{target}/", None, (204, 204, 403, 404, 403)),
    ("delete", ORG + "members/{owner_id}/", None, (409, 403, 403, 404, 403)),
    ("get", ORG + "invitations/", None, (200, 200, 403, 404, 403)),
    ("post", ORG + "invitations/", {"email": "x@example.com", "role": "admin"},
     (201, 201, 403, 404, 403)),
    ("post", ORG + "invitations/", {"email": "x@example.com", "role": "owner"},
     (201, 403, 403, 404, 403)),
    ("delete", ORG + "invitations/{inv}/", None, (204, 204, 403, 404, 403)),
    ("get", ORG + "service_accounts/", None, (200, 200, 200, 404, 200)),
    ("post", ORG + "service_accounts/", {"name": "robot"}, (201, 201, 403, 404, 201)),
    ("get", SA, None, (200, 200, 200, 404, 200)),
    ("patch", SA, {"description": "Ships."}, (200, 200, 403, 404, 200)),
    ("delete", SA, None, (204, 204, 403, 404, 204)),
    ("get", SA + "keys/", None, (200, 200, 200, 404, 200)),
    ("post", SA + "keys/", NEW_KEY, (201, 201, 403, 404, 201)),
    ("get", KEY, None, (200, 200, 200, 404, 200)),
    ("patch", KEY, {"label": "renamed"}, (200, 200, 403, 404, 200)),
    ("delete", KEY, None, (204, 204, 403, 404, 204)),
    ("post", KEY + "roll/", {}, (200, 200, 403, 404, 200)),
]
ACTORS = ("owner", "admin", "member", "outsider", "service_account")
CASES = [(actor, method, path, body, statuses[i])
         for method, path, body, statuses in ROUTES for i, actor in enumerate(ACTORS)]


def _path(world, template: str, **override) -> str:
    values = {"org": world.org, "sa": world.sa, "key": world.sa_key, "inv": world.invitation,
              "target": world.people["target"].id, "owner_id": world.people["owner"].id,
              **override}
    return template.format(**values)


def _call(client, world, actor, method, path, body):
    return getattr(client, method)(path, json=body, headers=world.headers(actor))


@pytest.mark.parametrize(("actor", "method", "template", "body", "expected"), CASES,
                         ids=[f"{a}-{m}-{p}-{b}" for a, m, p, b, _ in CASES])
def test_each_role_can_do_exactly_its_rights(client, make_user, actor, method, template, body,
                                             expected):
    world = build(make_user)
    response = _call(client, world, actor, method, _path(world, template), body)
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected >= 400:
        assert response.content_type == "application/problem+json"
    if expected == 403:
        assert response.json["code"] == "not_allowed"


@pytest.mark.parametrize(("method", "template", "body"), [
    (m, p, b) for m, p, b, _ in ROUTES if "{sa}" in p or "{key}" in p])
def test_another_organisations_ids_are_not_found(client, make_user, method, template, body):
    """The owner of one organisation naming the service account (or key) of another, under
    their own organisation's path, hears 404 as for an id that does not exist."""
    world = build(make_user)
    theirs = _path(world, template, sa=world.other_sa)
    assert _call(client, world, "owner", method, theirs, body).status_code == 404
    elsewhere = _path(world, template, org=world.other_org)
    assert _call(client, world, "owner", method, elsewhere, body).status_code == 404


def test_a_service_accounts_key_never_acts_elsewhere_or_as_a_person(client, make_user):
    """It reads and manages its own organisation only; the routes of a person are refused
    (403) but @current, which describes the key itself."""
    world = build(make_user)
    sa = world.headers("service_account")
    assert client.get(f"/api/organizations/{world.other_org}/", headers=sa).status_code == 404
    for path in ("/api/users/@me/", "/api/personal_api_keys/", "/api/users/@me/security_log/"):
        refused = client.get(path, headers=sa)
        assert refused.status_code == 403 and "service account" in refused.json["detail"]
    current = client.get("/api/personal_api_keys/@current/", headers=sa)
    assert (current.status_code, current.json["id"]) == (200, world.sa_key)
    listed = client.get("/api/organizations/", headers=sa).json["results"]
    assert [(o["id"], o["role"]) for o in listed] == [(world.org, "service_account")]


def test_the_policy_can_take_organisation_rights_from_service_account_keys(client, make_user):
    """A key's scopes say it may manage; the policy must allow it too, as it is now."""
    world = build(make_user)
    owner = world.headers("owner")
    assert client.patch(f"/api/organizations/{world.org}/", headers=owner,
                        json={"allowed_scopes": ["key:verify", "organization:read"]}
                        ).status_code == 200
    sa = world.headers("service_account")
    base = f"/api/organizations/{world.org}/service_accounts/"
    assert client.get(base, headers=sa).status_code == 200
    refused = client.post(base, headers=sa, json={"name": "robot"})
    assert (refused.status_code, refused.json["code"]) == (403, "not_allowed")


def test_a_key_without_organisation_scopes_cannot_touch_organisations(client, make_user):
    world = build(make_user)
    _, narrow = service.create_key(world.people["owner"], label="narrow",
                                   scopes=["personal_api_key:write"], origin=ORIGIN)
    answer = client.get(f"/api/organizations/{world.org}/",
                        headers={"Authorization": f"Bearer {narrow}"})
    assert (answer.status_code, answer.json["required_scope"]) == (403, "organization:read")


def test_the_last_owner_can_neither_leave_nor_be_demoted_until_another_owner_exists(
        client, make_user):
    world = build(make_user)
    owner_id, admin_id = world.people["owner"].id, world.people["admin"].id
    members = f"/api/organizations/{world.org}/members/"
    owner = world.headers("owner")
    leave = client.delete(f"{members}{owner_id}/", headers=owner)
    assert leave.status_code == 409 and "last owner" in leave.json["detail"]
    assert client.patch(f"{members}{admin_id}/", headers=owner,
                        json={"role": "owner"}).status_code == 200
    assert client.delete(f"{members}{owner_id}/", headers=owner).status_code == 204
    now_owner = world.headers("admin")
    last = client.patch(f"{members}{admin_id}/", headers=now_owner, json={"role": "member"})
    assert last.status_code == 409
    roles = {m["user"]["email"]: m["role"]
             for m in client.get(members, headers=now_owner).json["results"]}
    assert roles["admin@example.com"] == "owner" and "owner@example.com" not in roles


def test_anyone_may_leave_and_then_sees_nothing(client, make_user):
    world = build(make_user)
    member = world.headers("member")
    me = world.people["member"].id
    assert client.delete(f"/api/organizations/{world.org}/members/{me}/",
                         headers=member).status_code == 204
    assert client.get(f"/api/organizations/{world.org}/", headers=member).status_code == 404
    assert client.get("/api/personal_api_keys/", headers=member).status_code == 200


def test_create_answers_the_new_organisation_with_the_owner_role(client, make_user):
    world = build(make_user)
    created = client.post("/api/organizations/", json={"name": "  Platform  "},
                          headers=world.headers("member"))
    assert created.status_code == 201
    body = created.json
    assert (body["name"], body["role"], body["is_active"]) == ("Platform", "owner", True)
    assert created.headers["Location"].endswith(f"/api/organizations/{body['id']}/")
    for bad in ({"name": ""}, {"name": "x" * 65}, {"name": "a\u202eb"}, {}, {"name": 3}):
        refused = client.post("/api/organizations/", json=bad, headers=world.headers("member"))
        assert refused.status_code == 400 and refused.json["field"] == "name", bad


def test_service_account_keys_follow_the_personal_key_flow(client, make_user):
    """Shown once, scopes, expiry, grace roll, revoke: the same answers as a person's key."""
    world = build(make_user)
    owner = world.headers("owner")
    base = f"/api/organizations/{world.org}/service_accounts/{world.sa}/keys/"
    created = client.post(base, headers=owner, json={"label": "deploy", "scopes": ["key:verify"],
                                                     "expires_at": "2099-01-01T00:00:00Z"})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    key = created.json
    assert key["value"].startswith("kv_") and key["exceeds_policy"] == []
    listed = client.get(base, headers=owner).json["results"]
    assert all("value" not in k for k in listed) and key["id"] in [k["id"] for k in listed]
    rolled = client.post(f"{base}{key['id']}/roll/", headers=owner,
                         json={"grace_period_seconds": 60}).json
    assert rolled["value"] != key["value"] and rolled["old_value_expires_at"] is not None
    assert client.delete(f"{base}{key['id']}/", headers=owner).status_code == 204
    assert client.get(f"{base}{key['id']}/", headers=owner).json["status"] == "revoked"
