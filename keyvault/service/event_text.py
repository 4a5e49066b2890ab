"""The security log in words: an event's title and particulars, and who made the change.
Read by the pages, the API and the mail (service.notifications); knows nothing of recording."""

from __future__ import annotations

from typing import NamedTuple

from ..models import SecurityEvent

CLI_AGENT = "keyvault-cli"  # the user agent of changes made on the command line (Origin.system)


class EventText(NamedTuple):
    """An event as people read it: what happened, and the particulars."""

    title: str
    summary: str


_TITLES = {
    "user.created": "Account created",
    "user.email_confirmed": "Email address confirmed",
    "user.signup_repeated": "Sign-up tried with this account's address",
    "signup.confirm_failed": "Wrong password when confirming the address",
    "login.succeeded": "Logged in",
    "login.failed": "Failed login",
    "login.throttled": "Logins refused after too many wrong passwords",
    "sudo.failed": "Wrong password when confirming an action",
    "logout": "Logged out everywhere",
    "password.changed": "Password changed",
    "password.reset": "Password reset by e-mail link",
    "password.reset_requested": "Password reset link mailed",
    "password.change_failed": "Wrong current password when changing the password",
    "user.activated": "Account activated",
    "user.deactivated": "Account deactivated",
    "user.admin_granted": "Made an administrator",
    "user.admin_revoked": "No longer an administrator",
    "key.created": "Key created",
    "key.updated": "Key changed",
    "key.rolled": "Key rolled",
    "key.revoked": "Key revoked",
    "key.expired_use": "Expired key presented",
    "2fa.enabled": "Two-factor authentication turned on",
    "2fa.disabled": "Two-factor authentication turned off",
    "2fa.failed": "Wrong two-factor code at login",
    "2fa.throttled": "Two-factor codes refused after too many wrong ones",
    "2fa.recovery_used": "Logged in with a recovery code",
    "2fa.recovery_regenerated": "New recovery codes made",
    "2fa.reset_by_admin": "Two-factor authentication reset",
    "passkey.added": "Passkey added",
    "passkey.renamed": "Passkey renamed",
    "passkey.removed": "Passkey removed",
    "passkey.failed": "Failed passkey login",
    "key.leaked": "Key revoked: found in public",
    "key.revoked_use": "Revoked key presented",
    "key.ip_refused": "Key presented from an address it may not be used from",
    "key.wrong_service_use": "Key presented at another service",
    "webhook.created": "Webhook added",
    "webhook.updated": "Webhook changed",
    "webhook.secret_rolled": "Webhook signing secret rolled",
    "webhook.deleted": "Webhook removed",
}
_PASSKEY_FAILURES = {"challenge": "The request had expired or was already used.",
                     "unknown_credential": "The passkey is not registered here.",
                     "other_account": "The passkey belongs to another account.",
                     "invalid": "The passkey's answer did not verify.",
                     "inactive": "The account is deactivated.",
                     "unconfirmed": "The account's email address is not confirmed yet."}
_LOGIN_FAILURES = {"wrong_password": "Wrong password.",
                   "inactive": "The account is deactivated.",
                   "unconfirmed": "The email address is not confirmed yet (a new link was mailed).",
                   "unknown_email": "No account has that email."}


def duration(seconds: int) -> str:
    """'1 hour', '24 hours', '7 days', '90 seconds': a span in its largest whole unit."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def event_kinds() -> list[tuple[str, str]]:
    """Every kind of event the log records, as (code, title) by title: the log's filter."""
    return sorted(_TITLES.items(), key=lambda pair: pair[1])


def _moment(iso: str | None) -> str:
    """A logged ISO 8601 expiry in words: '2031-01-31 12:00 UTC', or 'never'."""
    return f"{iso[:16].replace('T', ' ')} UTC" if iso else "never"


def scopes_in_words(scopes: list[str]) -> str:
    return ", ".join("* (full access)" if scope == "*" else scope for scope in scopes)


def describe(event: SecurityEvent) -> EventText:
    """The event's title and what changed, in words: never a raw code like `key.rolled`."""
    details = event.details or {}
    title = _TITLES.get(event.event, event.event.replace(".", " ").replace("_", " ").capitalize())
    parts: list[str] = []
    if event.event == "key.created":
        if details.get("scopes"):
            parts.append(f"Scopes granted: {scopes_in_words(details['scopes'])}.")
        if "expires_at" in details:
            expires = details["expires_at"]
            parts.append(f"Expires {expires[:16].replace('T', ' ')} UTC." if expires
                         else "Never expires.")
    elif event.event == "key.updated":
        if "label_from" in details:
            parts.append(f"Renamed from “{details['label_from']}” to “{details['label_to']}”.")
        if details.get("scopes_added"):
            parts.append(f"Scopes granted: {scopes_in_words(details['scopes_added'])}.")
        if details.get("scopes_removed"):
            parts.append(f"Scopes removed: {scopes_in_words(details['scopes_removed'])}.")
        if "description" in details.get("fields", []):
            parts.append("Description changed.")
        if "expires_at" in details.get("fields", []):
            parts.append(f"Expiry changed from {_moment(details.get('expires_from'))} to "
                         f"{_moment(details.get('expires_to'))}.")
        if not parts and details.get("fields"):  # events logged before the changes were kept
            parts.append(f"Changed: {', '.join(details['fields'])}.")
    elif event.event == "key.rolled":
        grace = details.get("grace_period_seconds") or 0
        parts.append(f"Rolled; old value valid for {duration(grace)}." if grace
                     else "Rolled; the old value stopped working at once.")
    elif event.event == "key.revoked":
        if details.get("reason") == "unused":
            parts.append(f"Unused for {details.get('unused_days')} days, so revoked by a "
                         "clean-up.")
    elif event.event == "key.leaked":
        url = details.get("url")
        parts.append(f"Revoked because it was found in public at {url}." if url
                     else "Revoked because it was found in public.")
        if details.get("source"):
            parts.append(f"Found in: {details['source'].replace('_', ' ').lower()}.")
    elif event.event == "login.failed":
        parts.append(_LOGIN_FAILURES.get(details.get("reason"), ""))
    elif event.event == "login.succeeded" and details.get("method") == "passkey":
        parts.append(f"With the passkey “{details.get('passkey')}”, instead of the password.")
    elif event.event in ("passkey.added", "passkey.removed"):
        parts.append(f"“{details.get('name')}”.")
    elif event.event == "passkey.renamed":
        parts.append(f"Renamed from “{details.get('name_from')}” to “{details.get('name_to')}”.")
    elif event.event == "passkey.failed":
        parts.append(_PASSKEY_FAILURES.get(details.get("reason"), ""))
        if details.get("passkey"):
            parts.append(f"Passkey “{details['passkey']}”.")
    elif event.event == "password.reset_requested" and details.get("reason") == "inactive":
        parts.append("No mail was sent: the account is deactivated.")
    elif event.event == "password.reset":
        parts.append("Set through a reset link mailed to the account; every session was "
                     "logged out.")
    elif event.event == "password.changed":
        parts.append("Every session was logged out." if event.user_agent == CLI_AGENT
                     else "Every other session was logged out.")
    elif event.event == "user.deactivated":
        parts.append("Sessions ended; the account's keys stop working until it is activated.")
    elif event.event == "key.expired_use":
        parts.append("Someone presented this key after it expired; it was refused.")
    elif event.event == "login.succeeded" and details.get("second_factor"):
        parts.append({
            "recovery": "With a recovery code.",
            "passkey": f"With the passkey “{details.get('passkey')}” after the password.",
        }.get(details["second_factor"], "With a code from the authenticator app."))
    elif event.event == "2fa.enabled":
        parts.append("Logging in now asks for a code after the password; ten recovery codes "
                     "were made.")
    elif event.event == "2fa.failed":
        parts.append("The password was right; the code was not. Nobody was logged in.")
    elif event.event == "2fa.recovery_used":
        parts.append(f"{details.get('left', 0)} recovery codes left.")
    elif event.event == "2fa.recovery_regenerated":
        parts.append("The old recovery codes stopped working.")
    elif event.event == "2fa.reset_by_admin" and not details.get("by_admin"):
        parts.append("Reset by an operator at the command line; the password alone logs in.")
    elif event.event == "key.revoked_use":
        parts.append("Someone presented this key after it was revoked; it was refused.")
    elif event.event == "key.ip_refused":
        parts.append(f"Used from {details.get('client_ip') or 'an unknown address'}, outside "
                     "its allowed address ranges; it was refused.")
    elif event.event == "key.wrong_service_use":
        where = f"at “{details['service']}”" if details.get("service") else "to a caller that is no service"
        parts.append(f"Someone presented this key {where}, where it is not allowed; it was refused.")
    elif event.event.startswith("webhook."):
        parts.extend(_webhook_change(event.event, details))
    if details.get("by_admin"):
        what = {"key.revoked": "Revoked", "user.deactivated": "Deactivated",
                "user.activated": "Activated", "2fa.reset_by_admin": "Reset"}.get(
            event.event, "Done")
        parts.insert(0, f"{what} by an administrator.")
    return EventText(title, " ".join(part for part in parts if part))


def _webhook_change(event: str, details: dict) -> list[str]:
    """A webhook endpoint's change in words: where it sends (the URL's host: the log never
    keeps the whole URL) and what changed."""
    parts = []
    if "host_from" in details:
        parts.append(f"Now sends to {details['host_to']} instead of {details['host_from']}.")
    elif details.get("host"):
        parts.append(f"{'It sent' if event == 'webhook.deleted' else 'Sends'} to "
                     f"{details['host']}.")
    if "url" in details.get("fields", []) and "host_from" not in details:
        parts.append("URL changed, on the same host.")
    if event == "webhook.created" and details.get("events"):
        parts.append(f"Events: {', '.join(details['events'])}.")
    if details.get("events_added"):
        parts.append(f"Events added: {', '.join(details['events_added'])}.")
    if details.get("events_removed"):
        parts.append(f"Events removed: {', '.join(details['events_removed'])}.")
    if "description" in details.get("fields", []):
        parts.append("Description changed.")
    if "enabled" in details:
        parts.append("Turned on." if details["enabled"] else "Turned off.")
    if event == "webhook.secret_rolled":
        grace = details.get("grace_period_seconds") or 0
        parts.append(f"The old secret signs too for {duration(grace)}." if grace
                     else "The old secret stopped signing at once.")
    return parts


def performed_by(event: SecurityEvent) -> str:
    """Who made the change, when it was not the person in their browser."""
    if event.actor_label is not None:
        return f"API key “{event.actor_label}” ({event.actor_mask})"
    if event.details and event.details.get("by_admin"):
        return "An administrator"
    if event.user_agent == CLI_AGENT:
        return "The command line"
    return ""
