"""A service account's keys: verify and forward_auth name their owner; they outlive the people
who made them; the organisation's state, policy and limit govern them."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey, MailOutbox
from keyvault.org_models import ServiceAccount
from tests.conftest import T0, verify
from tests.org_world import ORIGIN, build
from tests.races import race_two


@pytest.fixture
def world(make_user):
    return build(make_user)


@pytest.fixture
def verifier(world):
    return service.create_key(world.people["outsider"], label="svc", scopes=["key:verify"],
                              origin=ORIGIN)[1]


def test_verify_names_the_service_account_and_its_organisation(client, world, verifier):
    answer = verify(client, verifier, world.sa_value)
    assert (answer["active"], answer["user"]) == (True, None)
    assert answer["owner"] == {"type": "service_account", "id": world.sa, "name": "deploy-bot",
                               "organization": {"id": world.org, "name": "Acme"}}
    assert (answer["sub"], answer["username"]) == (f"sa_{world.sa}", "deploy-bot")


def test_verify_of_a_personal_key_names_the_person(client, world, verifier):
    answer = verify(client, verifier, world.keys["member"])
    person = world.people["member"]
    assert answer["owner"] == {"type": "user", "id": person.id, "email": person.email}
    assert (answer["user"], answer["sub"]) == ({"id": person.id, "email": person.email},
                                              str(person.id))


def test_forward_auth_sends_the_owner_headers(client, world):
    answer = client.get("/api/forward_auth/", headers=world.headers("service_account"))
    assert answer.status_code == 200
    assert answer.headers["X-KeyVault-Owner-Type"] == "service_account"
    assert answer.headers["X-KeyVault-Service-Account-Id"] == world.sa
    assert answer.headers["X-KeyVault-Organization-Id"] == world.org
    assert "X-KeyVault-User-Id" not in answer.headers
    assert "X-KeyVault-User-Email" not in answer.headers
    person = client.get("/api/forward_auth/", headers=world.headers("member"))
    assert person.headers["X-KeyVault-Owner-Type"] == "user"
    assert person.headers["X-KeyVault-User-Id"] == str(world.people["member"].id)
    assert "X-KeyVault-Service-Account-Id" not in person.headers


def test_the_key_outlives_its_creator_removed_deactivated_and_deleted(client, world, verifier):
    """The admin makes the key; removing, deactivating and deleting the admin changes nothing."""
    admin = world.people["admin"]
    key, value = service.service_accounts.create_account_key(
        admin, world.org, world.sa, ORIGIN, label="made by admin", scopes=["key:verify"])
    service.organizations.remove_member(world.people["owner"], world.org, admin.id, ORIGIN)
    assert verify(client, verifier, value)["code"] == "valid"
    service.set_user_active(None, admin.id, False, ORIGIN)
    assert verify(client, verifier, value)["code"] == "valid"
    service.delete_account(db.session.get(type(admin), admin.id), ORIGIN)
    assert verify(client, verifier, value)["code"] == "valid"
    assert verify(client, verifier, world.keys["admin"])["code"] == "not_found"


def test_revoking_deactivating_and_deleting_stop_the_key_at_the_next_verify(client, world,
                                                                              verifier):
    owner = world.people["owner"]
    service.service_accounts.revoke_account_key(owner, world.org, world.sa, world.sa_key, ORIGIN)
    assert verify(client, verifier, world.sa_value)["code"] == "revoked"
    _, second = service.service_accounts.create_account_key(owner, world.org, world.sa, ORIGIN,
                                                            label="second", scopes=["*"])
    service.organizations.set_organization_active(None, world.org, False, ORIGIN)
    assert verify(client, verifier, second) == {"active": False, "code": "user_inactive"}
    forward = client.get("/api/forward_auth/", headers={"Authorization": f"Bearer {second}"})
    assert forward.status_code == 401
    service.organizations.set_organization_active(None, world.org, True, ORIGIN)
    assert verify(client, verifier, second)["code"] == "valid"
    service.service_accounts.delete_service_account(owner, world.org, world.sa, ORIGIN)
    assert verify(client, verifier, second)["code"] == "not_found"


def test_deleting_the_organisation_deletes_its_keys(client, world, verifier):
    owner = db.session.get(type(world.people["owner"]), world.people["owner"].id)
    service.organizations.delete_organization(owner, world.org, ORIGIN)
    assert verify(client, verifier, world.sa_value)["code"] == "not_found"
    assert db.session.scalar(select(func.count(ServiceAccount.id))) == 1  # the other org's
    log = client.get("/api/users/@me/security_log/", headers=world.headers("owner")).json
    assert log["results"][0]["event"] == "org.deleted"


def test_policy_caps_the_lifetime_and_scopes_on_create_and_roll(client, frozen, world):
    owner = world.headers("owner")
    org = f"/api/organizations/{world.org}/"
    keys = f"{org}service_accounts/{world.sa}/keys/"
    assert client.patch(org, headers=owner, json={
        "max_key_lifetime_days": 30, "allowed_scopes": ["key:verify", "user:read"]}).status_code == 200
    too_long = client.post(keys, headers=owner, json={
        "label": "long", "scopes": ["key:verify"], "expires_at": (T0 + timedelta(days=31)).isoformat()})
    assert (too_long.status_code, too_long.json["field"]) == (400, "expires_at")
    never = client.post(keys, headers=owner, json={"label": "never", "scopes": ["key:verify"]})
    assert never.status_code == 400 and "30 days" in never.json["detail"]
    wide = client.post(keys, headers=owner, json={
        "label": "wide", "scopes": ["*"], "expires_at": (T0 + timedelta(days=7)).isoformat()})
    assert wide.status_code == 403
    fits = client.post(keys, headers=owner, json={
        "label": "fits", "scopes": ["key:verify"], "expires_at": (T0 + timedelta(days=30)).isoformat()})
    assert fits.status_code == 201
    # The key made before the policy is not widened or shortened, but says what it exceeds...
    before = client.get(f"{keys}{world.sa_key}/", headers=owner).json
    assert (before["expires_at"], sorted(before["exceeds_policy"])) == (None, ["lifetime", "scopes"])
    # ...and cannot be rolled while it holds a scope the policy no longer allows.
    assert client.post(f"{keys}{world.sa_key}/roll/", headers=owner, json={}).status_code == 403
    narrowed = client.patch(f"{keys}{world.sa_key}/", headers=owner, json={"scopes": ["user:read"]})
    assert narrowed.status_code == 200
    rolled = client.post(f"{keys}{world.sa_key}/roll/", headers=owner, json={})
    assert rolled.status_code == 200
    assert rolled.json["expires_at"] == (T0 + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    assert rolled.json["exceeds_policy"] == []


def test_the_service_account_limit_is_exact_when_creates_race(app, world, monkeypatch):
    """With one slot left, two creates at once: one key, one KeyLimitReached; never N+1."""
    app.config["KEYVAULT_MAX_KEYS_PER_SERVICE_ACCOUNT"] = limit = 3
    owner_id = world.people["owner"].id
    for number in range(limit - 2):  # the world's key is one
        service.service_accounts.create_account_key(world.people["owner"], world.org, world.sa,
                                                    ORIGIN, label=f"k{number}", scopes=["*"])
    counted = service.keys.live_key_count

    def slow_count(owner):
        count = counted(owner)
        time.sleep(0.3)
        return count

    monkeypatch.setattr(service.keys, "live_key_count", slow_count)
    def create(label: str) -> None:
        person = db.session.get(type(world.people["owner"]), owner_id)
        service.service_accounts.create_account_key(person, world.org, world.sa, ORIGIN,
                                                    label=label, scopes=["*"])

    assert race_two(app, create) == ["created", "limit"]
    db.session.expire_all()
    account_id = db.session.scalar(select(ServiceAccount.id).where(
        ServiceAccount.public_id == world.sa))
    assert db.session.scalar(select(func.count(ApiKey.id)).where(
        ApiKey.service_account_id == account_id)) == limit


def test_the_organisation_log_names_who_acted(client, world):
    owner = world.headers("owner")
    log = client.get(f"/api/organizations/{world.org}/log/", headers=world.headers("member"))
    assert log.status_code == 200
    events = [(e["event"], (e["user"] or {}).get("email")) for e in log.json["results"]]
    assert ("org.created", "owner@example.com") in events
    assert ("service_account.created", "owner@example.com") in events
    assert ("key.created", "owner@example.com") in events
    assert ("org.invitation_sent", "owner@example.com") in events
    client.post(f"/api/organizations/{world.org}/service_accounts/", json={"name": "robot"},
                headers=world.headers("service_account"))
    latest = client.get(f"/api/organizations/{world.org}/log/", headers=owner).json["results"][0]
    assert (latest["event"], latest["user"], latest["actor_key"]["label"]) == (
        "service_account.created", None, "ci")
    mine = client.get("/api/users/@me/security_log/", headers=owner).json["results"]
    assert "org.created" in [e["event"] for e in mine]


def test_keys_prune_applies_each_organisations_unused_policy(app, frozen, world):
    """Keys of service accounts unused for the policy's days are revoked; the owners and admins
    are mailed once, 7 days before."""
    service.organizations.update_organization(world.people["owner"], world.org, ORIGIN,
                                              revoke_unused_after_days=30)
    runner = app.test_cli_runner()
    frozen.at = T0 + timedelta(days=24)
    result = runner.invoke(args=["keys", "prune", "--unused-days", "3650"])
    assert result.exit_code == 0 and "deploy-bot" not in result.output
    mails = db.session.scalars(select(MailOutbox).where(MailOutbox.kind == "key_unused")).all()
    assert sorted(m.to_address for m in mails) == ["admin@example.com", "owner@example.com"]
    runner.invoke(args=["keys", "prune", "--unused-days", "3650"])
    assert db.session.scalar(select(func.count(MailOutbox.id)).where(
        MailOutbox.kind == "key_unused")) == 2
    frozen.at = T0 + timedelta(days=31)
    result = runner.invoke(args=["keys", "prune", "--unused-days", "3650"])
    assert result.exit_code == 0, result.output
    assert "service account deploy-bot (Acme)" in result.output
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == world.sa_key))
    assert key.revoked_at is not None
    personal = db.session.scalars(select(ApiKey).where(ApiKey.user_id.is_not(None))).all()
    assert all(k.revoked_at is None for k in personal)
