"""Whose keys a key page shows (KeyHome): a person's own, or a service account's, with who may
change them, their limits and where their pages are. settings/key_pages.py serves both with one
set of handlers and templates."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import abort, current_app, url_for

from .. import service
from ..http.context import origin
from ..models import User
from ..org_models import ServiceAccount
from ..service import scopes
from ..service import service_accounts as accounts

KEY_EVENTS = 20


@dataclass(frozen=True)
class KeyHome:
    """Whose keys a page shows: `person` (the one signed in) acting on their own keys, or on
    `account`'s, a service account of organisation `org_id`. `may_manage`: the buttons and forms
    that change keys are shown (the service refuses them all the same when the role does not
    reach). Its pages' endpoints are the personal ones' names with `prefix`."""

    person: User
    account: ServiceAccount | None = None
    org_id: str | None = None
    may_manage: bool = True
    prefix: str = ""
    url_args: dict = field(default_factory=dict)

    @property
    def owner(self) -> User | ServiceAccount:
        return self.account if self.account is not None else self.person

    def url(self, page: str, **values) -> str:
        """This owner's version of the personal key page `page` (api_keys, key_page, ...)."""
        return url_for(f"settings.{self.prefix}{page}", **self.url_args, **values)

    @property
    def max_keys(self) -> int:
        return current_app.config["KEYVAULT_MAX_KEYS_PER_USER" if self.account is None
                                  else "KEYVAULT_MAX_KEYS_PER_SERVICE_ACCOUNT"]

    @property
    def max_days(self) -> int | None:
        """The longest lifetime a new key may have: the instance's cap, or the organisation's
        policy when shorter."""
        days = current_app.config["KEYVAULT_MAX_KEY_LIFETIME_DAYS"]
        policy = self.account.organization.max_key_lifetime_days if self.account else None
        return policy if policy is not None and (days is None or policy < days) else days

    def offered_scopes(self, kept: list[str] = ()) -> list[str]:
        """The scopes a key of this owner may be given (`kept`: a key's own, still shown)."""
        offered = (scopes.FULL_ACCESS, *scopes.catalogue())
        if self.account is not None:
            org = self.account.organization
            offered = [s for s in offered if s in kept or service.organizations.policy_allows(org, s)]
        return list(offered)

    def get(self, public_id: str):
        return service.get_key(self.owner, public_id)

    def _for_account(self, key_id: str | None = None) -> tuple:
        ids = (self.person, self.org_id, self.account.public_id)
        return ids if key_id is None else (*ids, key_id)

    def create(self, **fields):
        if self.account is None:
            return service.create_key(self.person, origin=origin(), **fields)
        return accounts.create_account_key(*self._for_account(), origin(), **fields)

    def update(self, public_id: str, **fields):
        if self.account is None:
            return service.key_limits.update_key_and_limits(self.person, public_id,
                                                            origin=origin(), **fields)
        return accounts.update_account_key(*self._for_account(public_id), origin(), **fields)

    def roll(self, public_id: str, **fields):
        if self.account is None:
            return service.roll_key(self.person, public_id, origin=origin(), **fields)
        return accounts.roll_account_key(*self._for_account(public_id), origin(), **fields)

    def revoke(self, public_id: str):
        if self.account is None:
            return service.revoke_key(self.person, public_id, origin())
        return accounts.revoke_account_key(*self._for_account(public_id), origin())

    def events(self, public_id: str):
        if self.account is None:
            return service.events_for_key(self.person, public_id, KEY_EVENTS).results
        return accounts.account_key_events(*self._for_account(public_id), KEY_EVENTS).results

    def must_manage(self) -> None:
        """The pages that change keys (edit, roll) are not for those who may only look."""
        if not self.may_manage:
            abort(403)
