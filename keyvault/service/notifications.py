"""Mails to the person an event concerns, decided from the security log (events.record calls
`after_record` for every event) and by `keyvault notify expiring`.

Security notices always go: a key created on the account or revoked because it leaked, the
password changed or reset, and the other account events listed in ACCOUNT_NOTICES (the second
factor and passkeys changing). The others, a key expiring soon and a dead key still being
presented, go unless the person turned them off (users.notify_expiring, notify_presented).
Each mail is queued in the transaction of its event (service.mail), so it exists iff the event
does; a key_notices row in the same transaction makes a reminder go once. A usage quota's two
marks (below 10%, used up: issue 25) are claimed on its key_limits row instead, once a period.

A service account's key has no person of its own: what would mail a person about their key goes
to its organisation's active owners and admins (`stewards`), each by their own preferences.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..extensions import db
from ..limit_models import KeyLimits
from ..models import ApiKey, KeyNotice, SecurityEvent, User
from ..org_models import Membership, Organization, ServiceAccount
from . import mail
from .event_text import describe, performed_by, scopes_in_words

# Account events that mail the person, described in words by event_text.describe.
ACCOUNT_NOTICES = {"password.changed", "password.reset",
                   "2fa.enabled", "2fa.disabled", "2fa.reset_by_admin", "2fa.recovery_regenerated",
                   "passkey.added", "passkey.removed"}
KEY_NOTICES = {"key.created": "key_created", "key.leaked": "key_leaked"}
# A quota's two thresholds (service.judges.WithinQuota), each mailed once per refill period: the
# column of key_limits that says for which period it went.
QUOTA_THRESHOLDS = {"low": KeyLimits.warned_period, "used_up": KeyLimits.used_up_period}
# (kind, how long before the expiry), nearest first.
EXPIRY_THRESHOLDS = (("expires_1d", timedelta(days=1)), ("expires_7d", timedelta(days=7)))


def after_record(event: SecurityEvent) -> None:
    """Queue the mail `event` calls for, if any, in its transaction (no commit)."""
    if event.event not in KEY_NOTICES and event.event not in ACCOUNT_NOTICES:
        return
    if event.event in KEY_NOTICES and event.key is not None \
            and event.key.service_account is not None:
        for email in stewards(event.key.service_account.organization_id):
            mail.queue(email, KEY_NOTICES[event.event], **_key_context(event))
        return
    user = db.session.get(User, event.user_id) if event.user_id is not None else None
    if user is None:
        return
    if event.event in ACCOUNT_NOTICES:
        text = describe(event)
        mail.queue(user.email, "account_notice", title=text.title, summary=text.summary,
                   when=event.created_at, address=event.ip_address, agent=event.user_agent,
                   log_url=mail.link("settings.security_log"),
                   reset_url=mail.link("auth.forgot_password"))
        return
    mail.queue(user.email, KEY_NOTICES[event.event], **_key_context(event))


def _key_context(event: SecurityEvent) -> dict:
    details = event.details or {}
    expires = details.get("expires_at")
    key = event.key
    return {
        "label": event.key_label, "mask": event.key_mask,
        "scopes": scopes_in_words(details.get("scopes") or (key.scopes if key else [])),
        "expiry": (f"Expires {expires[:16].replace('T', ' ')} UTC." if expires
                   else "Never expires."),
        "when": event.created_at, "address": event.ip_address, "agent": event.user_agent,
        "actor": performed_by(event), "url": details.get("url"), "source": details.get("source"),
        "reset_url": mail.link("auth.forgot_password"),
        **(_whose(key) if key else {"key_url": mail.link("settings.api_keys")}),
    }


def stewards(organization_id: int, preference=None) -> list[str]:
    """The addresses of an organisation's active owners and admins, who look after its service
    accounts' keys (`preference`: only those who have that notice on, e.g. User.notify_expiring)."""
    stmt = select(User.email).join(Membership).where(
        Membership.organization_id == organization_id,
        Membership.role.in_(("owner", "admin")), User.is_active.is_(True))
    if preference is not None:
        stmt = stmt.where(preference.is_(True))
    return list(db.session.scalars(stmt.order_by(User.id)))


def _whose(key: ApiKey) -> dict:
    """A key mail's words about whose key it is, and the link to its page."""
    account = key.service_account
    if account is None:
        return {"key_url": mail.link("settings.key_page", public_id=key.public_id)}
    organization = account.organization
    return {"service_account": account.name, "organization": organization.name,
            "key_url": mail.link("settings.sa_key_page", org_id=organization.public_id,
                                 sa_id=account.public_id, public_id=key.public_id)}


def _recipients(key: ApiKey, preference) -> list[str]:
    """Who hears about this key: its person (when `preference` is theirs), or its service
    account's stewards who have `preference` on."""
    if key.service_account is not None:
        return stewards(key.service_account.organization_id, preference)
    user = key.user
    wants = getattr(user, preference.key) if user is not None else False
    return [user.email] if wants and user.is_active else []


def _noticed(key_id: int, kind: str, period: str) -> bool:
    return bool(db.session.scalar(select(exists().where(
        KeyNotice.key_id == key_id, KeyNotice.kind == kind, KeyNotice.period == period))))


def notify_expiring(now: datetime | None = None) -> int:
    """Queue the reminders due now: a live key expiring within 7 days gets one, and again
    within 1 day; each once per key, threshold and expiry date (a key whose expiry moves gets
    reminded of the new one). Commits each; returns how many were queued."""
    now = now or clock.now()
    longest = EXPIRY_THRESHOLDS[-1][1]
    live = (ApiKey.revoked_at.is_(None), ApiKey.expires_at > now,
            ApiKey.expires_at <= now + longest)
    personal = select(ApiKey.id).join(User).where(*live, User.is_active.is_(True),
                                                  User.notify_expiring.is_(True))
    of_accounts = select(ApiKey.id).join(ServiceAccount).join(Organization).where(
        *live, Organization.is_active.is_(True))
    keys = db.session.scalars(select(ApiKey).where(
        ApiKey.id.in_(personal.union(of_accounts).scalar_subquery())).order_by(ApiKey.id)).all()
    queued = 0
    for key in keys:
        kind = next(kind for kind, before in EXPIRY_THRESHOLDS if key.expires_at - now <= before)
        period = key.expires_at.isoformat(timespec="seconds")
        if _noticed(key.id, kind, period):
            continue
        db.session.add(KeyNotice(key_id=key.id, kind=kind, period=period, created_at=now))
        for email in _recipients(key, User.notify_expiring):
            mail.queue(email, "key_expiring", label=key.label, mask=key.mask,
                       expires_at=key.expires_at, within=clock.relative(key.expires_at, now),
                       settings_url=mail.link("settings.account"), **_whose(key))
        try:
            db.session.commit()
        except IntegrityError:  # another run queued this one a moment ago
            db.session.rollback()
            continue
        queued += 1
    return queued


def key_presented(key_id: int, state: str, address: str | None) -> bool:
    """Queue today's "your <expired|revoked> key is still being used" mail unless it went
    today or the owner turned it off; the caller commits (an IntegrityError: it just went)."""
    now = clock.now()
    day = now.date().isoformat()
    if _noticed(key_id, "presented", day):
        return False
    key = db.session.get(ApiKey, key_id)
    recipients = _recipients(key, User.notify_presented) if key is not None else []
    if not recipients:
        return False  # gone, or nobody who looks after it wants to hear
    db.session.add(KeyNotice(key_id=key_id, kind="presented", period=day, created_at=now))
    for email in recipients:
        mail.queue(email, "key_presented", label=key.label, mask=key.mask, state=state,
                   when=now, address=address, settings_url=mail.link("settings.account"),
                   **_whose(key))
    return True


def warn_unused(key: ApiKey, organization: Organization, revoke_at: datetime,
                now: datetime) -> bool:
    """Mail the organisation's owners and admins that its policy will revoke this unused
    service-account key at `revoke_at`, once per key and date; commits. False when it already
    went."""
    period = revoke_at.isoformat(timespec="seconds")
    if _noticed(key.id, "unused_7d", period):
        return False
    db.session.add(KeyNotice(key_id=key.id, kind="unused_7d", period=period, created_at=now))
    for email in stewards(organization.id):
        mail.queue(email, "key_unused", label=key.label, mask=key.mask,
                   service_account=key.service_account.name, organization=organization.name,
                   days=organization.revoke_unused_after_days, revoke_at=revoke_at,
                   within=clock.relative(revoke_at, now))
    try:
        db.session.commit()
    except IntegrityError:  # another run mailed about it a moment ago
        db.session.rollback()
        return False
    return True


def quota_reached(limits_id: int, kind: str, period: str, now: datetime) -> bool:
    """Mail that a quota fell below 10% (`low`) or is used up, once per quota, threshold and
    refill period: a conditional UPDATE claims the threshold for `period`, so of any number of
    racing uses in any worker or instance exactly one queues the mail, in the same transaction.
    Commits; False when it already went."""
    column = QUOTA_THRESHOLDS[kind]
    claimed = db.session.execute(
        update(KeyLimits).where(KeyLimits.id == limits_id,
                                or_(column.is_(None), column != period))
        .values({column.key: period}).execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        db.session.rollback()
        return False
    row = db.session.get(KeyLimits, limits_id)
    terms = row.terms()
    context = {"used_up": kind == "used_up", "remaining": terms.live_remaining(now) or 0,
               "total": row.refill_amount or row.quota or 0, "refills_at": terms.refills_at(now)}
    for email, about in _quota_readers(row):
        mail.queue(email, "key_quota", **context, **about)
    db.session.commit()
    return True


def _quota_readers(row: KeyLimits) -> list[tuple[str, dict]]:
    """Who hears about a quota, and how it is named: a person's key, its owner; a service
    account's key or pool, the organisation's owners and admins."""
    key = row.api_key
    if key is not None and key.user is not None:
        if not key.user.is_active:
            return []
        return [(key.user.email, {
            "who": f"the key “{key.label}”",
            "what": f"Your API key “{key.label}” ({key.mask})", "reason": "",
            "url": mail.link("settings.key_page", public_id=key.public_id)})]
    account = key.service_account if key is not None else row.service_account
    organization = account.organization
    if key is not None:
        who, what = (f"the key “{key.label}”", f"The key “{key.label}” ({key.mask}) of the "
                     f"service account “{account.name}” in “{organization.name}”")
    else:
        who, what = (f"the pool of “{account.name}”", "The pool shared by the keys of the "
                     f"service account “{account.name}” in “{organization.name}”")
    about = {"who": who, "what": what, "url": None, "reason": "You are told because you are "
             f"an owner or admin of “{organization.name}”."}
    emails = db.session.scalars(select(User.email).join(Membership).where(
        Membership.organization_id == organization.id, Membership.role.in_(("owner", "admin")),
        User.is_active.is_(True)).order_by(User.email)).all()
    return [(email, about) for email in emails]


def set_preferences(user: User, *, expiring: bool, presented: bool) -> None:
    """The person's choice of the notices that may be turned off."""
    user.notify_expiring, user.notify_presented = expiring, presented
    db.session.commit()
