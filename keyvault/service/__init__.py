"""What KeyVault does: accounts, keys and verification. Owns transactions and the ownership check.

Nothing here knows about HTTP: callers pass plain values and an Origin (address, user agent) and
get models, verdicts or a ServiceError back. One module per concern:

- errors      the refusals (ServiceError and its kinds), each with the HTTP status it maps to
- validation  what people type: labels, descriptions, emails, passwords, expiries
- scopes      the catalogue, the built-in scope names, holding and granting scopes
- events      the security log, and Origin (where a change came from)
- event_text  the security log in words (titles, particulars, who made a change)
- pagination  keyset pages and their cursors
- accounts    sign-up, login and its guessing limit, sudo checks, sessions
- keys        the ownership check; create, edit, roll, revoke
- key_lists   a person's key list searched, filtered and sorted; revoking several keys at once
- submissions one-time form tokens: create and roll forms act once
- verify      judging presented keys (the hot path), then recording their use
- usage       per-key, per-day use counts: counted in memory, written every few seconds
- admin       across accounts: list, revoke, (de)activate users, prune unused keys
- second_factor  two-factor: authenticator app (TOTP), recovery codes, the login's second step
  (used as `service.second_factor.methods(user)`, …)
- leaks       keys found in public (secret scanning reports): recognise, revoke, log
- mail        the outbox: mail queued in the caller's transaction, sent by leased senders
- notifications  which events mail whom; expiry reminders; a dead key still presented
- resets      password reset by a signed, single-use link mailed to the account
- confirmations  the sign-up address confirmed by a signed, single-use link (24 hours)
- signups     sign-up that tells no one who has an account, and using the confirmation link
- organizations  organisations, members and roles (the one rights check), policy, their log
- service_accounts  an organisation's non-human identities and their keys
- invitations signed, single-use, 7-day invitation links mailed through the outbox
- outbox      what leaves the process: queued in the caller's transaction, sent by leased
              senders, retried with backoff (mail and webhooks are its two couriers)
- webhook_delivery  the webhook events a key's changes queue, signed and sent (SSRF-checked)
- webhooks    webhook endpoints: register, change, roll the secret, deliveries, redeliver, test
- services    an organisation's services: audience, scopes, their own verify keys
- restrictions  where a key works: at chosen services, or the services of chosen organisations

Views and the command line use the names below (`service.create_key`, …).
"""

from . import (
    confirmations,
    invitations,
    key_limits,
    organizations,
    second_factor,
    service_accounts,
    services,
    webhook_delivery,
    webhooks,
)
from .accounts import (
    FAILURE_WINDOW,
    change_password,
    check_password,
    delete_account,
    end_sessions,
    find_user,
    get_user,
    log_in,
    set_admin,
    set_password,
    sign_up,
)
from .admin import (
    admin_list_keys,
    admin_list_users,
    admin_revoke_key,
    mailbox_doubles,
    prune_by_policy,
    prune_unused_keys,
    revoke_key_by_id,
    set_user_active,
)
from .errors import (
    ConfirmLinkInvalid,
    EmailNotConfirmed,
    EmailTaken,
    InvalidInput,
    KeyLimitReached,
    KeyNotFound,
    KeyNotLive,
    NeedsPassword,
    NotAllowed,
    ResetLinkInvalid,
    ScopeNotAllowed,
    ServiceError,
    TooManyFailures,
    UserNotFound,
    WrongPassword,
)
from .event_text import EventText, describe, event_kinds, performed_by
from .events import LogFilter, Origin, page_events
from .key_expiry import NO_EXPIRY, extends_life
from .key_lists import KeyQuery, find_keys, keys_named, revoke_keys
from .keys import (
    create_key,
    events_for_key,
    get_key,
    list_keys,
    live_key_count,
    page_keys,
    revoke_key,
    roll_key,
    update_key,
)
from .leaks import FoundToken, report_found_tokens
from .pagination import Page
from .resets import count_reset_ask, request_reset, reset_password, user_for_token
from .scopes import FULL_ACCESS, clean_scopes, has_scope, is_narrowing, valid_scopes
from .scopes import catalogue as scope_catalogue
from .signups import confirm_email, register
from .validation import (
    DESCRIPTION_MAX,
    GRACE_MAX_SECONDS,
    LABEL_MAX,
    clean_description,
    clean_label,
    normalise_email,
)
from .verify import (
    AnswerLater,
    AnswerOnAThread,
    Verdict,
    check_keys,
    digests_of,
    rates_to_count,
    record_use,
    settle,
    spends_a_quota,
    verify_key,
)

__all__ = [
    "DESCRIPTION_MAX", "FAILURE_WINDOW", "FULL_ACCESS", "GRACE_MAX_SECONDS", "LABEL_MAX",
    "EmailTaken", "InvalidInput", "KeyLimitReached", "KeyNotFound", "KeyNotLive", "Origin",
    "AnswerLater", "AnswerOnAThread", "NotAllowed", "Page", "ScopeNotAllowed", "ServiceError",
    "TooManyFailures", "UserNotFound", "Verdict",
    "EventText", "FoundToken", "WrongPassword", "report_found_tokens", "change_password",
    "describe", "events_for_key",
    "performed_by", "set_admin", "set_password", "valid_scopes",
    "admin_list_keys", "admin_list_users", "admin_revoke_key", "check_keys", "digests_of", "check_password",
    "clean_description", "clean_label", "clean_scopes", "create_key", "delete_account",
    "end_sessions", "find_user", "get_key", "get_user", "has_scope", "is_narrowing",
    "list_keys", "live_key_count", "log_in", "mailbox_doubles", "normalise_email", "page_events",
    "page_keys",
    "prune_by_policy", "prune_unused_keys", "rates_to_count", "record_use", "revoke_key", "revoke_key_by_id",
    "roll_key", "settle", "spends_a_quota",
    "scope_catalogue", "second_factor", "set_user_active", "sign_up", "update_key", "verify_key",
    "KeyQuery", "LogFilter", "NO_EXPIRY", "NeedsPassword", "event_kinds", "extends_life", "find_keys",
    "keys_named", "revoke_keys",
    "ConfirmLinkInvalid", "EmailNotConfirmed", "confirm_email", "confirmations", "register",
    "invitations", "key_limits", "organizations", "service_accounts", "services",
    "webhook_delivery", "webhooks",
    "ResetLinkInvalid", "count_reset_ask", "request_reset", "reset_password", "user_for_token",
]
