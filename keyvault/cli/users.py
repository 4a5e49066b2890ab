"""`keyvault users ...`: accounts, administrators, two-factor resets, look-alike addresses."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import service
from ..service import Origin
from .common import JSON_HELP, account, echo_json, fail, read_password, when


@click.group("users", help="Manage user accounts.")
def users_group():
    pass


@users_group.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def users_create(email: str, admin: bool, password_stdin: bool):
    """Create a user account."""
    try:
        service.accounts.refuse_taken_mailbox(email)  # before asking for a password in vain
    except service.EmailTaken as error:
        _refuse_taken(email, error)
    except service.ServiceError as error:
        fail(error)
    password = read_password(password_stdin)
    try:
        # an operator vouches for the address: no confirmation mail (service.confirmations)
        user = service.sign_up(email, password, Origin.system(), is_admin=admin, confirmed=True)
    except service.EmailTaken as error:
        _refuse_taken(email, error)
    except service.ServiceError as error:
        fail(error)
    click.echo(f"Created user {user.email} (id {user.id}{', admin' if admin else ''}).", err=True)


def _shown(email: str) -> str:
    """An address for an operator: look-alikes differ only in their escaped form."""
    if email.isascii():
        return email
    return f"{email} ({email.encode('ascii', 'backslashreplace').decode()})"


def _refuse_taken(email: str, error: service.EmailTaken):
    """The address as typed, up to letter case: the service's words. Anything else (a
    look-alike, or a form only normalisation makes equal): which account it is the mailbox of."""
    email = email.strip()
    if error.existing is None or error.existing == email.lower():
        fail(error)
    raise click.ClickException(
        f"{error.detail} {_shown(email)} is the same mailbox as the account "
        f"{_shown(error.existing)} (id {error.existing_id}): one mailbox has one account.")


def _user_json(user) -> dict:
    return {"id": user.id, "email": user.email, "is_active": user.is_active,
            "is_admin": user.is_admin, "created_at": user.created_at,
            "last_login_at": user.last_login_at}


@users_group.command("doubles")
@click.option("--json", "as_json", is_flag=True,
              help=f"{JSON_HELP} A list of groups, each a list of accounts.")
@with_appcontext
def users_doubles(as_json: bool):
    """List accounts whose addresses look the same (one mailbox); nothing is merged.

    Accounts made before KeyVault compared mailboxes may share one; decide which to keep
    (deactivate or delete the others) after asking their owners."""
    groups = service.mailbox_doubles()
    if as_json:
        echo_json([[_user_json(user) for user in group] for group in groups])
        return
    if not groups:
        click.echo("No accounts share a mailbox.")
        return
    for group in groups:
        click.echo(f"{len(group)} accounts share one mailbox:")
        for user in group:
            last = when(user.last_login_at) if user.last_login_at else "never"
            click.echo(f"  id {user.id}  {_shown(user.email)}  created {when(user.created_at)}, "
                       f"last login {last}{'' if user.is_active else ', deactivated'}")


@users_group.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True,
              help="Read the new password from standard input (else it is asked for twice).")
@with_appcontext
def users_set_password(email: str, password_stdin: bool):
    """Set a user's password; ends their sessions.

    For someone who forgot theirs. The user's browser sessions end everywhere; their API keys
    keep working."""
    user = account(email)
    password = read_password(password_stdin)
    try:
        service.set_password(user, password, Origin.system())
    except service.ServiceError as error:
        fail(error)
    click.echo(f"Set a new password for {user.email}; their browser sessions have ended.")


@users_group.command("set-admin")
@click.argument("email")
@click.option("--revoke", "--no-admin", "revoke", is_flag=True,
              help="Take administration away instead.")
@with_appcontext
def users_set_admin(email: str, revoke: bool):
    """Make a user an administrator (--revoke: undo)."""
    user = account(email)
    changed = service.set_admin(user, not revoke, Origin.system())
    role = "an administrator" if not revoke else "not an administrator"
    if changed:
        click.echo(f"{user.email} is now {role}.")
    else:
        click.echo(f"{user.email} was already {role}; nothing changed.")


def _set_active(email: str, active: bool) -> None:
    user = account(email)
    changed = user.is_active != active
    service.set_user_active(None, user.id, active, Origin.system())
    state = "active" if active else "deactivated"
    if not changed:
        click.echo(f"{user.email} was already {state}; nothing changed.")
    elif active:
        click.echo(f"Activated {user.email}: they can log in again and their keys work again.")
    else:
        click.echo(f"Deactivated {user.email}: they cannot log in, their sessions have ended, "
                   "and their keys verify as user_inactive until they are activated again.")


@users_group.command("deactivate")
@click.argument("email")
@with_appcontext
def users_deactivate(email: str):
    """Deactivate a user: no login, no working keys.

    Their browser sessions end, they cannot log in, and every key of theirs verifies as
    `user_inactive`; nothing is deleted, and `activate` undoes it."""
    _set_active(email, False)


@users_group.command("activate")
@click.argument("email")
@with_appcontext
def users_activate(email: str):
    """Let a deactivated user log in again."""
    _set_active(email, True)


@users_group.command("reset-2fa")
@click.argument("email")
@with_appcontext
def users_reset_2fa(email: str):
    """Turn off a user's two-factor authentication (lost phone and recovery codes).

    Their password alone logs them in again; the reset is in their security log."""
    user = account(email)
    if service.second_factor.disable(user, Origin.system(), reset=True):
        click.echo(f"Reset the two-factor authentication of {user.email}: their password alone "
                   "logs them in; they can set it up again on their account page.")
    else:
        click.echo(f"{user.email} has no two-factor authentication; nothing changed.")


@users_group.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Delete without asking for confirmation.")
@with_appcontext
def users_delete(email: str, yes: bool):
    """Delete a user's account with all its keys and its security log.

    Refused while the account is the last owner of an organisation: make someone else an owner
    there (`keyvault orgs add-member ... --role owner`) or delete the organisation first."""
    user = account(email)
    address = user.email
    if not yes:
        click.confirm(f"Delete {address} and every key of theirs? This cannot be undone.",
                      abort=True, err=True)
    try:
        service.delete_account(user, Origin.system())
    except service.ServiceError as error:
        fail(error)
    click.echo(f"Deleted {address}: its keys no longer verify.")
