"""The organisation pages through the test client: every new route answers each role exactly as
its rights say (owner, admin, member, outsider; another organisation's ids 404; a forged CSRF
token 400), the invitation link's cases, and deleting the last owner's account is refused."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import pytest
import requests

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.org_models import Invitation, Membership
from keyvault.service import events, notifications
from tests.conftest import AuthActions, csrf_from, send_mail, shown_key, text_of
from tests.org_world import ORIGIN, build

ORG = "/settings/organizations/{org}"
SA = ORG + "/service-accounts/{sa}"
KEY = SA + "/keys/{key}"
NEW_KEY = {"label": "pages", "expiry": "30", "preset": "verify"}

# (method, path, form, expected status for owner, admin, member, outsider)
ROUTES = [
    ("get", "/settings/organizations", None, (200, 200, 200, 200)),
    ("post", "/settings/organizations", {"name": "Mine"}, (303, 303, 303, 303)),
    ("get", ORG, None, (200, 200, 200, 404)),
    ("post", ORG + "/invitations", {"email": "x@example.com", "role": "member"},
     (303, 303, 403, 404)),
    ("post", ORG + "/invitations", {"email": "x@example.com", "role": "owner"},
     (303, 403, 403, 404)),
    ("post", ORG + "/invitations/{inv}/revoke", {}, (303, 303, 403, 404)),
    ("post", ORG + "/members/{target}/role", {"role": "admin"}, (303, 303, 403, 404)),
    ("post", ORG + "/members/{target}/role", {"role": "owner"}, (303, 403, 403, 404)),
    ("post", ORG + "/members/{target}/remove", {}, (303, 303, 403, 404)),
    ("post", ORG + "/service-accounts", {"name": "robot"}, (303, 303, 403, 404)),
    ("post", ORG + "/policy", {"name": "Acme", "max_key_lifetime_days": "30"},
     (303, 403, 403, 404)),
    ("post", ORG + "/delete", {}, (303, 403, 403, 404)),
    ("get", SA, None, (200, 200, 200, 404)),
    ("post", SA, NEW_KEY, (200, 200, 403, 404)),
    ("post", SA + "/delete", {}, (303, 303, 403, 404)),
    ("get", KEY, None, (200, 200, 200, 404)),
    ("get", KEY + "/edit", None, (200, 200, 403, 404)),
    ("post", KEY + "/edit", {"label": "renamed", "expiry": "keep", "scopes": "*"},
     (302, 302, 403, 404)),
    ("get", KEY + "/roll", None, (200, 200, 403, 404)),
    ("post", KEY + "/roll", {"grace": "0"}, (200, 200, 403, 404)),
    ("post", KEY + "/revoke", {}, (302, 302, 403, 404)),
]
ACTORS = ("owner", "admin", "member", "outsider")
CASES = [(actor, method, path, form, statuses[i])
         for method, path, form, statuses in ROUTES for i, actor in enumerate(ACTORS)]
POSTS = [(path, form) for method, path, form, _ in ROUTES if method == "post"]


def _path(world, template: str, **override) -> str:
    values = {"org": world.org, "sa": world.sa, "key": world.sa_key, "inv": world.invitation,
              "target": world.people["target"].id, **override}
    return template.format(**values)


def _signed_in(client, email: str) -> str:
    """Log in through the form; the session's CSRF token."""
    auth = AuthActions(client)
    assert auth.login(email).status_code == 302
    return auth.csrf("/settings/organizations")


def _post(client, path: str, form: dict, token: str):
    return client.post(path, data={**form, "csrf_token": token,
                                   "once": secrets.token_urlsafe(24)})


@pytest.mark.parametrize(("actor", "method", "template", "form", "expected"), CASES,
                         ids=[f"{a}-{m}-{p}-{f}" for a, m, p, f, _ in CASES])
def test_each_role_can_do_exactly_its_rights(client, make_user, actor, method, template, form,
                                             expected):
    world = build(make_user)
    token = _signed_in(client, f"{actor}@example.com")
    path = _path(world, template)
    response = (client.get(path) if method == "get" else _post(client, path, form, token))
    assert response.status_code == expected, response.get_data(as_text=True)[:2000]


@pytest.mark.parametrize(("template", "form"), POSTS[1:])
def test_another_organizations_ids_are_not_found(client, make_user, template, form):
    """The owner of Acme, with Other's ids (or Other's service account under Acme's): 404."""
    world = build(make_user)
    token = _signed_in(client, "owner@example.com")
    paths = [_path(world, template, org=world.other_org)]
    if "{sa}" in template:
        paths.append(_path(world, template, sa=world.other_sa))
    for path in paths:
        response = _post(client, path, form, token)
        assert response.status_code == 404, path


@pytest.mark.parametrize(("template", "form"), POSTS)
def test_a_forged_csrf_token_is_refused(client, make_user, template, form):
    world = build(make_user)
    _signed_in(client, "owner@example.com")
    before = service.organizations.page_log(world.people["owner"], world.org, 100, None).results
    response = _post(client, _path(world, template), form, "forged")
    assert response.status_code == 400
    after = service.organizations.page_log(world.people["owner"], world.org, 100, None).results
    assert len(after) == len(before)


def test_a_member_sees_no_manage_controls(client, make_user):
    world = build(make_user)
    _signed_in(client, "member@example.com")
    org = client.get(_path(world, ORG)).get_data(as_text=True)
    for control in ("Change role", "Send invitation", "Create service account",
                    'data-testid="policy-form"', "Delete organisation", "Revoke invitation"):
        assert control not in org
    assert "Leave the organisation" in org and "deploy-bot" in org
    keys = client.get(_path(world, SA)).get_data(as_text=True)
    assert "ci" in keys and "Create key" not in keys and "Delete service account" not in keys
    key = client.get(_path(world, KEY)).get_data(as_text=True)
    assert "Roll…" not in key and ">Revoke<" not in key and ">Edit<" not in key


def test_an_owner_sees_every_control_and_the_log(client, make_user):
    world = build(make_user)
    _signed_in(client, "owner@example.com")
    org = client.get(_path(world, ORG)).get_data(as_text=True)
    for control in ("Change role", "Send invitation", "Create service account",
                    'data-testid="policy-form"', "Delete organisation", "newcomer@example.com"):
        assert control in org
    assert 'data-event="service_account.created"' in org


def test_a_service_account_key_is_created_shown_once_and_capped_by_policy(client, make_user):
    world = build(make_user)
    service.organizations.update_organization(world.people["owner"], world.org, ORIGIN,
                                              max_key_lifetime_days=7,
                                              allowed_scopes=["key:verify"])
    token = _signed_in(client, "admin@example.com")
    page = client.get(_path(world, SA)).get_data(as_text=True)
    assert "Keys live at most 7 days" in page and "30 days" not in page
    assert 'value="user:read"' not in page  # outside the policy: not offered
    response = _post(client, _path(world, SA), {**NEW_KEY, "expiry": "7"}, token)
    value = shown_key(response.get_data(as_text=True))
    assert response.status_code == 200 and value and value.startswith("kv_")
    assert response.headers["Cache-Control"].startswith("no-store")
    again = client.get(_path(world, SA)).get_data(as_text=True)
    assert value not in again
    refused = _post(client, _path(world, SA), {**NEW_KEY, "preset": "full", "expiry": "7"},
                    token)
    assert refused.status_code == 400 and "only these scopes: key:verify" in refused.get_data(
        as_text=True)


# ---------------------------------------------------------------- the invitation link


def _link(world, email="newcomer@example.com", role="member") -> str:
    owner = world.people["owner"]
    invitation = service.invitations.invite(owner, world.org, email, role, ORIGIN)
    return "/organizations/invitations/" + service.invitations.token_for(invitation)


def test_the_invited_person_accepts_once(client, make_user):
    world = build(make_user)
    link = _link(world)
    newcomer = make_user("newcomer@example.com")
    token = _signed_in(client, newcomer.email)
    page = client.get(link).get_data(as_text=True)
    assert "Acme" in page and ">Accept<" in page
    response = client.post(link, data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/settings/organizations/{world.org}")
    assert db.session.query(Membership).filter_by(user_id=newcomer.id).one().role == "member"
    assert client.get(link).status_code == 410
    assert client.post(link, data={"csrf_token": token}).status_code in (303, 410)


def test_someone_else_is_refused_without_details(client, make_user):
    world = build(make_user)
    link = _link(world)
    token = _signed_in(client, "outsider@example.com")
    page = client.get(link)
    assert page.status_code == 403
    assert "newcomer@example.com" not in page.get_data(as_text=True)
    assert client.post(link, data={"csrf_token": token}).status_code == 403
    assert client.post(link, data={"csrf_token": "forged"}).status_code == 400


def test_signed_out_the_page_offers_sign_up_with_the_address_and_comes_back(client, make_user):
    world = build(make_user)
    link = _link(world)
    page = client.get(link).get_data(as_text=True)
    assert "Sign up" in page and "Log in" in page
    signup = client.get(f"/signup?email=newcomer%40example.com&next={link}")
    html = signup.get_data(as_text=True)
    assert 'value="newcomer@example.com"' in html
    response = client.post("/signup", data={
        "email": "newcomer@example.com", "password": "correct horse battery",
        "confirm": "correct horse battery", "next": link, "csrf_token": csrf_from(html)})
    assert response.status_code == 302 and response.headers["Location"] == link
    assert ">Accept<" in client.get(link).get_data(as_text=True)


@pytest.mark.parametrize("case", ["revoked", "expired", "altered"])
def test_a_link_that_cannot_be_used_says_so(client, make_user, case):
    world = build(make_user)
    link = _link(world)
    invitation = db.session.query(Invitation).filter_by(email="newcomer@example.com",
                                                        revoked_at=None).one()
    if case == "revoked":
        invitation.revoked_at = clock.now()
    elif case == "expired":
        invitation.expires_at = clock.now()
    db.session.commit()
    response = client.get(link + ("x" if case == "altered" else ""))
    assert response.status_code == (404 if case == "altered" else 410)
    assert "Ask for a new one" in response.get_data(as_text=True)


# ---------------------------------------------------------------- the last owner


def test_the_last_owner_cannot_delete_their_account(client, make_user, tmp_path):
    world = build(make_user)
    token = _signed_in(client, "owner@example.com")
    response = client.post("/settings/account/delete", data={"csrf_token": token})
    assert response.status_code == 303
    page = client.get("/settings/account").get_data(as_text=True)
    assert "last owner of “Acme”" in page
    assert service.find_user("owner@example.com") is not None
    service.organizations.change_role(world.people["owner"], world.org,
                                      world.people["admin"].id, "owner", ORIGIN)
    assert client.post("/settings/account/delete",
                       data={"csrf_token": token}).status_code == 302
    with pytest.raises(service.UserNotFound):
        service.find_user("owner@example.com")


def test_the_command_line_refuses_to_delete_the_last_owner(app, make_user):
    world = build(make_user)
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["users", "delete", "outsider@example.com", "--yes"])
    assert refused.exit_code == 1 and "last owner of “Other”" in refused.output
    deleted = runner.invoke(args=["users", "delete", "member@example.com", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert service.organizations.page_members(world.people["owner"], world.org, 100,
                                              None).results


# ---------------------------------------------------------------- mail about a service account's keys


def test_a_service_accounts_key_mails_go_to_its_owners_and_admins(app, make_user, smtp_server,
                                                                   frozen):
    """Created, leaked, expiring and still presented: what mails a person about their key goes
    to the organisation's owners and admins (never its members), each mail naming the service
    account and linking to the key's page."""
    world = build(make_user)
    send_mail(app)
    smtp_server.messages.clear()  # the world's own: its invitation, its people's keys
    owner, stewards = world.people["owner"], ["admin@example.com", "owner@example.com"]
    key, value = service.service_accounts.create_account_key(
        owner, world.org, world.sa, ORIGIN, label="expiring", scopes=["key:verify"],
        expires_at=frozen.at + timedelta(days=5))
    service.report_found_tokens([service.FoundToken(world.sa_value, "kv", "https://x.test/a",
                                                    "content")], ORIGIN)
    assert notifications.notify_expiring() == 1
    service.revoke_key_by_id(key.public_id, ORIGIN)
    events.note_refused_use(app, key.id, None, ORIGIN, "revoked")
    send_mail(app)
    by_subject: dict[str, list[str]] = {}
    for message in smtp_server.messages:
        by_subject.setdefault(message["Subject"], []).append(message["To"])
        body = text_of(message)
        assert "deploy-bot" in body and "Acme" in body and "owner or admin" in body
        assert f"/settings/organizations/{world.org}/service-accounts/{world.sa}/keys/" in body
    assert set(by_subject) == {
        "KeyVault: a new API key “expiring” was created",
        "KeyVault: the key “ci” was found in public and revoked",
        "KeyVault: the key “expiring” expires in 5 days",
        "KeyVault: the revoked key “expiring” is still being used"}, by_subject
    assert all(sorted(to) == stewards for subject, to in by_subject.items()), by_subject


def test_the_invitation_token_never_reaches_the_access_log(live_server, make_user):
    world = build(make_user)
    link = _link(world)
    token, marker = link.rsplit("/", 1)[1], secrets.token_hex(8)
    assert requests.get(f"{live_server.url}{link}?seen={marker}", timeout=10).status_code == 200
    deadline = time.monotonic() + 5
    while marker not in live_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = live_server.log()
    assert marker in log and "/organizations/invitations/[redacted]" in log
    assert token not in log and token.split(".")[0] not in log
