"""`keyvault keys ...`: create, list, revoke, scan for and prune API keys."""

from __future__ import annotations

import sys
from datetime import timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import clock, service, tokens
from ..api.schemas import ApiKey, ApiKeyWithValue
from ..service import Origin
from .common import (
    DONE,
    JSON_HELP,
    REFUSED,
    echo_json,
    fail,
    limit_options,
    limit_terms,
    owner_of,
    table,
    when,
)

json_option = click.option("--json", "as_json", is_flag=True, help=JSON_HELP)


@click.group("keys", help="Manage API keys.")
def keys_group():
    pass


@keys_group.command("create")
@click.argument("email", required=False)
@click.option("--service-account", "service_account_id", default=None, metavar="SA_ID",
              help="Create the key for this service account instead of a person (EMAIL).")
@click.option("--label", required=True, help="What the key is for (1-40 characters).")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="A scope to grant; repeat for more. Required: '*' grants full access, and "
              "only when given explicitly.")
@click.option("--expires-in-days", type=click.IntRange(1, 36500), default=None,
              help="Expire the key after this many days (default: never).")
@click.option("--description", default=None,
              help="A longer note on what the key is for (at most 1000 characters).")
@click.option("--allow-ip", "allowed_ips", multiple=True, metavar="CIDR",
              help="Let the key work only from this IPv4 or IPv6 address or CIDR range; repeat "
              "for more (at most 100). Default: from any address.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the key as the API's create answer does: JSON with the value in "
              "\"value\", times in ISO 8601 UTC.")
@limit_options
@with_appcontext
def keys_create(email, service_account_id, label, scopes, expires_in_days, description,
                allowed_ips, as_json, rate, quota, refill):
    """Create a key for a person (EMAIL) or a service account (--service-account) and print its
    value, alone on stdout, this one time (--json: inside JSON)."""
    if (email is None) == (service_account_id is None):
        raise click.UsageError("Name the key's owner: a person's EMAIL, or --service-account "
                               "SA_ID (not both).")

    if not scopes:
        raise click.UsageError(
            "Choose what the key may do with --scope (repeat it for more), or --scope '*' for "
            f"full access. The scopes are: {', '.join(service.valid_scopes())}.")
    limits = limit_terms(rate, quota, refill)
    try:
        owner = (service.find_user(email) if email is not None
                 else service.service_accounts.find_service_account(service_account_id))
        expires_at = clock.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, value = service.create_key(owner, label=label, description=description,
                                        scopes=list(scopes), expires_at=expires_at,
                                        allowed_ips=list(allowed_ips), origin=Origin.system(),
                                        **limits)
    except service.ServiceError as error:
        fail(error)
    click.echo(f"Created key {key.public_id} ({key.mask}). It will not be shown again.", err=True)
    if as_json:
        echo_json(ApiKeyWithValue.of(key, value))
    else:
        click.echo(value)


@keys_group.command("list")
@click.argument("email")
@json_option
@with_appcontext
def keys_list(email, as_json):
    """List a user's keys (never their values); --json: a list of the API's key objects."""
    try:
        user = service.find_user(email)
    except service.ServiceError as error:
        fail(error)
    if as_json:
        echo_json([ApiKey.of(key) for key in service.list_keys(user)])
        return
    rows = [("ID", "LABEL", "KEY", "STATUS", "SCOPES", "CREATED", "LAST USED", "EXPIRES")]
    for key in service.list_keys(user):
        rows.append((key.public_id, key.label, key.mask, key.status(), ",".join(key.scopes),
                     when(key.created_at), when(key.last_used_at), when(key.expires_at)))
    table(rows)


@keys_group.command("revoke")
@click.argument("key_id")
@with_appcontext
def keys_revoke(key_id):
    """Revoke a key by its id; it stops working at once."""
    try:
        key = service.revoke_key_by_id(key_id, Origin.system(), refuse_revoked=True)
    except service.ServiceError as error:
        fail(error)
    click.echo(f"Revoked {key.public_id} ({key.label}, {key.mask}) of {owner_of(key)}.")


_SCAN_STATES = {"valid": "LIVE", "user_inactive": "live once its owner is activated",
                "revoked": "revoked", "expired": "expired", "not_found": "not issued here"}


@keys_group.command("scan")
@click.argument("files", nargs=-1, required=True, type=click.File("r", errors="replace"))
@json_option
@with_appcontext
def keys_scan(files, as_json):
    """Find this instance's keys in FILES (- for standard input), as a secret scanner would:
    where each is, masked, and whether it still works. Exit status 1 when one is live."""
    prefix = current_app.config["KEYVAULT_KEY_PREFIX"]
    pattern, found = tokens.finder(prefix), []
    for handle in files:
        name = getattr(handle, "name", "<stdin>")  # a test runner's stdin has no name
        for number, line in enumerate(handle, 1):
            found += [(f"{name}:{number}", match.group())
                      for match in pattern.finditer(line)
                      if tokens.is_well_formed(match.group(), prefix)]
    verdicts = service.check_keys([v for _, v in found], [[] for _ in found]) if found else []
    live, listed = 0, []
    for (where, value), verdict in zip(found, verdicts, strict=True):
        is_live = verdict.code in ("valid", "user_inactive")
        live += is_live
        listed.append({"where": where, "mask_value": tokens.mask(value), "code": verdict.code,
                       "live": is_live, "key_id": verdict.public_id, "label": verdict.label})
        key = f" (key {verdict.public_id}, {verdict.label})" if verdict.public_id else ""
        if not as_json:
            click.echo(f"{where}: {tokens.mask(value)} {_SCAN_STATES[verdict.code]}{key}")
    if as_json:
        echo_json(listed)
    click.echo(f"{len(found)} key(s) found, {live} live.", err=True)
    sys.exit(REFUSED if live else DONE)


@keys_group.command("prune")
@click.option("--unused-days", type=click.IntRange(1, 36500), required=True,
              help="Revoke keys not used for this many days.")
@click.option("--dry-run", is_flag=True, help="List what would be revoked; change nothing.")
@json_option
@with_appcontext
def keys_prune(unused_days, dry_run, as_json):
    """Revoke keys nobody has used for a while (GitHub does this after a year), and each
    organisation's service-account keys unused for its policy's days (mailing its owners 7
    days before)."""
    stale = service.prune_unused_keys(unused_days, dry_run=dry_run, origin=Origin.system())
    by_policy = service.prune_by_policy(dry_run=dry_run, origin=Origin.system())
    verb = "Would revoke" if dry_run else "Revoked"
    if as_json:
        echo_json([dict(ApiKey.fields_of(key), user_email=key.user.email if key.user else None,
                        owner=owner_of(key), policy_days=days)
                   for key, days in [(key, None) for key in stale] + by_policy])
        click.echo(f"{verb} {len(stale) + len(by_policy)} key(s).", err=True)
        return
    for key in stale:
        click.echo(f"{verb} {key.public_id} ({key.label}, {key.mask}) of {owner_of(key)}; "
                   f"last used {when(key.last_used_at)}")
    for key, days in by_policy:
        click.echo(f"{verb} {key.public_id} ({key.label}, {key.mask}) of {owner_of(key)}; "
                   f"last used {when(key.last_used_at)}; its organisation revokes keys unused "
                   f"for {days} days")
    click.echo(f"{verb} {len(stale)} key(s) unused for {unused_days} days.")
    if by_policy:
        click.echo(f"{verb} {len(by_policy)} service-account key(s) by their organisation's "
                   "policy.")
