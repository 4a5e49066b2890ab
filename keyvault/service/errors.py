"""Refusals the service raises; each carries the HTTP status it maps to and a message for people."""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal the caller can show as is: `status` is the HTTP status it maps to."""

    status = 400
    title = "Bad request"
    code: str | None = None  # a machine-readable reason, when the API states one

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(ServiceError):
    title = "Invalid input"


class KeyNotFound(ServiceError):
    status = 404
    title = "Not found"

    def __init__(self, detail: str = "No such API key."):
        super().__init__(detail)


class UserNotFound(KeyNotFound):
    def __init__(self, detail: str = "No such user."):
        super().__init__(detail)


class WrongPassword(ServiceError):
    """The password given to confirm a change is not the account's."""

    status = 403
    title = "Wrong password"


class TooManyFailures(ServiceError):
    status = 429
    title = "Too many failed attempts"


class KeyLimitReached(ServiceError):
    status = 409
    title = "Key limit reached"


class KeyNotLive(ServiceError):
    status = 409
    title = "Key is not active"


class ScopeNotAllowed(ServiceError):
    """A key tried to give a key scopes it does not hold itself."""

    status = 403
    title = "Insufficient scope"
    code = "insufficient_scope"


class NeedsPassword(ServiceError):
    """A change that gives a key more power (a later expiry) asks for the password: only the
    browser can, after re-authentication; the API is refused."""

    status = 403
    title = "Password confirmation needed"


class EmailTaken(ServiceError):
    """The address, or one that looks the same (keyvault.mailbox), has an account: `existing`
    and `existing_id` name it for operators (the sign-up page never shows them)."""

    status = 409
    title = "Email already registered"

    def __init__(self, detail: str, field: str | None = None, *, existing: str | None = None,
                 existing_id: int | None = None):
        super().__init__(detail, field)
        self.existing = existing
        self.existing_id = existing_id


class EmailNotConfirmed(ServiceError):
    """The account's address is not confirmed yet (service.confirmations)."""

    status = 403
    title = "Email address not confirmed"


class ConfirmLinkInvalid(ServiceError):
    """A confirmation link that was altered, has expired, or was already used."""

    title = "Confirmation link not valid"


class ResetLinkInvalid(ServiceError):
    """A password-reset link that was altered, has expired, or was already used."""

    title = "Reset link not valid"


class OrganizationNotFound(KeyNotFound):
    """No such organisation, or one the asker is no part of: the two look the same."""

    def __init__(self, detail: str = "No such organisation."):
        super().__init__(detail)


class ServiceAccountNotFound(KeyNotFound):
    def __init__(self, detail: str = "No such service account in this organisation."):
        super().__init__(detail)


class MemberNotFound(KeyNotFound):
    def __init__(self, detail: str = "No such member of this organisation."):
        super().__init__(detail)


class InvitationNotFound(KeyNotFound):
    def __init__(self, detail: str = "No such pending invitation in this organisation."):
        super().__init__(detail)


class NotAllowed(ServiceError):
    """The asker is in the organisation, but their role (or the key's kind) does not allow this."""

    status = 403
    title = "Forbidden"
    code = "not_allowed"


class LastOwner(ServiceError):
    """The organisation's last owner cannot be removed, demoted or leave."""

    status = 409
    title = "Last owner"


class OrganizationInactive(ServiceError):
    """An organisation the instance's administrator deactivated: nothing in it changes."""

    status = 409
    title = "Organisation deactivated"


class InvitationInvalid(ServiceError):
    """An invitation link that was altered, has expired, was revoked or was already used."""

    title = "Invitation not valid"


class InvitationForSomeoneElse(InvitationInvalid):
    status = 403


class AlreadyMember(ServiceError):
    status = 409
    title = "Already a member"


class WebhookNotFound(KeyNotFound):
    """No such webhook, or one the asker may not manage: the two look the same."""

    def __init__(self, detail: str = "No such webhook."):
        super().__init__(detail)


class DeliveryNotFound(KeyNotFound):
    def __init__(self, detail: str = "No such delivery of this webhook."):
        super().__init__(detail)


class WebhookLimitReached(ServiceError):
    status = 409
    title = "Webhook limit reached"


class ServiceNotFound(KeyNotFound):
    def __init__(self, detail: str = "No such service in this organisation."):
        super().__init__(detail)


class NameTaken(ServiceError):
    """A service's name, audience or scope name that another service on the instance holds."""

    status = 409
    title = "Already taken"


class ScopeInUse(ServiceError):
    """A service's scope that keys still carry: removed only when asked to narrow them."""

    status = 409
    title = "Scope in use"
    code = "scope_in_use"
