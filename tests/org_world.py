"""An organisation with one person in each role, an outsider, a service account with a key and
a pending invitation, built through the service (tests/test_organizations*.py)."""

from __future__ import annotations

from dataclasses import dataclass

from keyvault import service
from keyvault.models import User

ORIGIN = service.Origin("127.0.0.1", "pytest")


@dataclass
class World:
    org: str  # public ids
    other_org: str
    sa: str
    sa_key: str  # the key's public id
    sa_value: str  # its value
    other_sa: str
    invitation: str
    people: dict[str, User]
    keys: dict[str, str]  # who -> a `*` personal key's value

    def headers(self, who: str) -> dict:
        value = self.sa_value if who == "service_account" else self.keys[who]
        return {"Authorization": f"Bearer {value}"}


def build(make_user, roles=("owner", "admin", "member", "outsider", "target")) -> World:
    people = {role: make_user(f"{role}@example.com") for role in roles}
    owner = people["owner"]
    org = service.organizations.create_organization(owner, "Acme", ORIGIN).organization
    for role, user in people.items():
        if role in ("admin", "member"):
            service.organizations.add_member(org, user, role, ORIGIN)
        if role == "target":
            service.organizations.add_member(org, user, "member", ORIGIN)
    account = service.service_accounts.create_service_account(owner, org.public_id, ORIGIN,
                                                              name="deploy-bot")
    key, value = service.service_accounts.create_account_key(
        owner, org.public_id, account.public_id, ORIGIN, label="ci", scopes=["*"])
    other = service.organizations.create_organization(people["outsider"], "Other", ORIGIN)
    other_sa = service.service_accounts.create_service_account(
        people["outsider"], other.organization.public_id, ORIGIN, name="theirs")
    invitation = service.invitations.invite(owner, org.public_id, "newcomer@example.com",
                                            "member", ORIGIN)
    keys = {role: service.create_key(user, label="cli", scopes=["*"], origin=ORIGIN)[1]
            for role, user in people.items()}
    return World(org.public_id, other.organization.public_id, account.public_id, key.public_id,
                 value, other_sa.public_id, invitation.public_id, people, keys)
