"""`keyvault orgs ...` and `keyvault service-accounts ...`: the operator's shortcuts for
organisations (no invitation, no role check: the operator is at the server)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import service
from ..org_models import ROLES
from ..service import Origin
from ..service.limit_terms import KEEP
from .common import account, fail, limit_options, limit_terms, table, when

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


@service_accounts_group.command("set-pool")
@click.argument("org_id")
@click.argument("sa_id")
@limit_options
@click.option("--no-rate-limit", is_flag=True, help="Remove the pool's rate.")
@click.option("--no-quota", is_flag=True, help="Remove the pool's usage quota.")
@with_appcontext
def service_accounts_set_pool(org_id, sa_id, rate, quota, refill, no_rate_limit, no_quota):
    """Set the rate and usage quota that all of a service account's keys share (each key's own
    limits apply too: the stricter answers). What is not given stays as it is."""
    if (no_rate_limit and rate is not None) or (no_quota and quota is not None):
        raise click.UsageError("Give a limit or remove it, not both.")
    given = limit_terms(rate, quota, refill)
    terms = {name: None if removed else given[name] if given[name] is not None else KEEP
             for name, removed in (("rate_limit", no_rate_limit), ("usage_limit", no_quota))}
    if all(value is KEEP for value in terms.values()):
        raise click.UsageError("Give --rate-limit, --quota, --no-rate-limit or --no-quota.")
    try:
        account = service.service_accounts.set_pool_for_operator(org_id, sa_id, Origin.system(),
                                                                 **terms)
    except service.ServiceError as error:
        fail(error)
    pool = account.pool
    rate_text = (f"{pool.rate_limit} requests in {pool.rate_window} s" if pool is not None
                 and pool.rate_limit is not None else "no rate")
    quota_text = (f"{pool.remaining:,} uses left" if pool is not None
                  and pool.remaining is not None else "no quota")
    click.echo(f"{account.name}'s pool: {rate_text}, {quota_text}.")
