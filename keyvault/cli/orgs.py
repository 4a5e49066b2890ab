"""`keyvault orgs ...` and `keyvault service-accounts ...`: the operator's shortcuts for
organisations (no invitation, no role check: the operator is at the server)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import service
from ..org_models import ROLES
from ..service import Origin
from .common import account, fail, table, when

organizations = service.organizations


@click.group("orgs", help="Manage organisations.")
def orgs_group():
    pass


@orgs_group.command("create")
@click.argument("name")
@click.option("--owner", "owner_email", required=True, help="The first owner's email.")
@with_appcontext
def orgs_create(name, owner_email):
    """Create an organisation and print its id, alone on stdout."""
    owner = account(owner_email)
    try:
        member = organizations.create_organization(owner, name, Origin.system())
    except service.ServiceError as error:
        fail(error)
    click.echo(member.organization.public_id)


@orgs_group.command("list")
@with_appcontext
def orgs_list():
    """Every organisation, newest first."""
    rows = [("ID", "NAME", "ACTIVE", "CREATED")]
    for organization in organizations.all_organizations():
        rows.append((organization.public_id, organization.name,
                     "yes" if organization.is_active else "no", when(organization.created_at)))
    table(rows)


@orgs_group.command("add-member")
@click.argument("org_id")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="What the member may do: owner (everything), admin (service accounts, their "
              "keys, invitations, members but owners) or member (see only).")
@with_appcontext
def orgs_add_member(org_id, email, role):
    """Add an existing account to an organisation with a role."""
    user = account(email)
    try:
        organization = organizations.find_organization(org_id)
        organizations.add_member(organization, user, role, Origin.system())
    except service.ServiceError as error:
        fail(error)
    click.echo(f"{user.email} is now {role} of {organization.name}.")


@orgs_group.command("remove-member")
@click.argument("org_id")
@click.argument("email")
@with_appcontext
def orgs_remove_member(org_id, email):
    """Remove a member (never the last owner)."""
    user = account(email)
    try:
        organizations.remove_member_as_operator(org_id, user, Origin.system())
    except service.ServiceError as error:
        fail(error)
    click.echo(f"{user.email} is no longer a member.")


@click.group("service-accounts", help="Manage organisations' service accounts.")
def service_accounts_group():
    pass


@service_accounts_group.command("create")
@click.argument("org_id")
@click.argument("name")
@click.option("--description", default=None,
              help="What the service account is for (at most 1000 characters).")
@with_appcontext
def service_accounts_create(org_id, name, description):
    """Create a service account and print its id, alone on stdout."""
    try:
        created = service.service_accounts.create_for_operator(org_id, name, Origin.system(),
                                                               description)
    except service.ServiceError as error:
        fail(error)
    click.echo(created.public_id)


@service_accounts_group.command("list")
@click.argument("org_id")
@with_appcontext
def service_accounts_list(org_id):
    """An organisation's service accounts, newest first."""
    try:
        found = service.service_accounts.list_for_operator(org_id)
    except service.ServiceError as error:
        fail(error)
    rows = [("ID", "NAME", "LIVE KEYS", "CREATED")]
    for item in found:
        rows.append((item.public_id, item.name, str(service.live_key_count(item)),
                     when(item.created_at)))
    table(rows)
