"""`keyvault services`: register an organisation's services and list them (the operator's
shortcut; the organisation's owners and admins use the pages or the API)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import service
from ..service import Origin
from .common import fail, table, when


@click.group("services", help="Register and list organisations' services.")
def services_group():
    pass


def _scope(entry: str) -> dict:
    name, equals, description = entry.partition("=")
    if not equals:
        raise click.BadParameter(f"{entry!r}: write name=description, e.g. "
                                 "invoice:read=Read invoices.", param_hint="--scope")
    return {"name": name.strip(), "description": description.strip()}


@services_group.command("create")
@click.argument("org_id")
@click.argument("name")
@click.option("--audience", required=True,
              help="The service's audience, unique on the instance: a short name or its URL.")
@click.option("--description", default=None, help="What the service is (at most 1000 characters).")
@click.option("--scope", "scopes", multiple=True, metavar="NAME=DESCRIPTION",
              help="A scope the service defines, e.g. invoice:read=Read invoices (repeatable).")
@with_appcontext
def services_create(org_id, name, audience, description, scopes):
    """Register a service and print its id, alone on stdout."""
    try:
        created = service.services.create_for_operator(
            org_id, Origin.system(), name=name, audience=audience, description=description,
            scopes=[_scope(entry) for entry in scopes])
    except service.ServiceError as error:
        fail(error)
    click.echo(created.public_id)


@services_group.command("list")
@click.argument("org_id")
@with_appcontext
def services_list(org_id):
    """An organisation's services, by name."""
    try:
        found = service.services.list_for_operator(org_id)
    except service.ServiceError as error:
        fail(error)
    rows = [("ID", "NAME", "AUDIENCE", "SCOPES", "CREATED")]
    for item in found:
        rows.append((item.public_id, item.name, item.audience, " ".join(item.scopes) or "-",
                     when(item.created_at)))
    table(rows)
