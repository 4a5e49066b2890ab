"""The judges verify walks (keyvault.service.judges): each restriction alone, their order of
precedence, and a new judge added without touching the others."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from keyvault.addresses import networks_of
from keyvault.keystore import KeyRow
from keyvault.service.judges import JUDGES, CallingService, Case, first_refusal
from keyvault.service.verify import CODES

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def row(**changes) -> KeyRow:
    fields = dict(
        id=1, public_id="abc", label="ci", scopes=["key:read"], created_at=NOW - HOUR,
        expires_at=None, revoked_at=None, last_used_at=None, last_rolled_at=None,
        previous_expires_at=None, user_id=7, email="a@example.com", user_is_active=True,
        digest="d", previous_digest=None, service_account_id=None,
        service_account_public_id=None, service_account_name=None,
        organization_public_id=None, organization_name=None, organization_is_active=None)
    fields.update(changes)
    return KeyRow(**fields)


@pytest.mark.parametrize(("changes", "via_previous", "required", "code"), [
    ({}, False, (), None),
    ({}, False, ("key:read",), None),
    ({"scopes": ["*"]}, False, ("anything:write",), None),
    ({}, False, ("key:write",), "insufficient_scope"),
    ({"revoked_at": NOW - HOUR}, False, (), "revoked"),
    ({"user_is_active": False}, False, (), "user_inactive"),
    ({"expires_at": NOW}, False, (), "expired"),  # expiry is exclusive: at the instant, gone
    ({"expires_at": NOW + HOUR}, False, (), None),
    ({"previous_expires_at": NOW + HOUR}, True, (), None),  # old value inside its grace
    ({"previous_expires_at": NOW - HOUR}, True, (), "expired"),
    ({"previous_expires_at": None}, True, (), "expired"),
    # a service account's key: its organisation decides whether the owner is active
    ({"user_id": None, "user_is_active": None, "organization_is_active": False}, False, (),
     "user_inactive"),
    ({"user_id": None, "user_is_active": None, "organization_is_active": True}, False, (), None),
    # precedence: revoked over everything, inactive over expired, any of them over scopes
    ({"revoked_at": NOW, "user_is_active": False, "expires_at": NOW}, False, ("x:y",), "revoked"),
    ({"user_is_active": False, "expires_at": NOW}, False, ("x:y",), "user_inactive"),
    ({"expires_at": NOW}, False, ("x:y",), "expired"),
])
def test_each_judge_and_their_order(changes, via_previous, required, code):
    assert first_refusal(Case(row(**changes), via_previous, NOW, required)) == code


RANGES = networks_of(["10.0.0.0/8", "2001:db8::/32", "203.0.113.7/32"])


@pytest.mark.parametrize(("client_ip", "code"), [
    ("10.1.2.3", None),
    ("203.0.113.7", None),
    ("2001:db8::42", None),
    ("::ffff:10.9.9.9", None),  # IPv4-mapped IPv6: judged as its IPv4 address
    ("11.0.0.1", "ip_not_allowed"),
    ("203.0.113.8", "ip_not_allowed"),
    ("2001:db9::1", "ip_not_allowed"),
    ("::ffff:11.0.0.1", "ip_not_allowed"),
    (None, "ip_not_allowed"),  # no client address: fail closed
    ("", "ip_not_allowed"),
    ("not-an-address", "ip_not_allowed"),
])
def test_a_key_restricted_by_address_works_only_inside_its_ranges(client_ip, code):
    restricted = row(allowed_networks=RANGES)
    assert first_refusal(Case(restricted, False, NOW, (), client_ip)) == code
    assert first_refusal(Case(row(), False, NOW, (), client_ip)) is None  # unrestricted


def test_address_is_judged_after_expiry_and_before_scopes():
    restricted = dict(allowed_networks=RANGES)
    assert first_refusal(Case(row(expires_at=NOW, **restricted), False, NOW, (), "1.1.1.1")) \
        == "expired"
    assert first_refusal(Case(row(**restricted), False, NOW, ("x:y",), "1.1.1.1")) \
        == "ip_not_allowed"
    assert first_refusal(Case(row(**restricted), False, NOW, ("x:y",), "10.0.0.1")) \
        == "insufficient_scope"
BILLING = CallingService("svcBilling", "orgAcme", "billing",
                         frozenset({"key:read", "invoice:read"}))
SEARCH = CallingService("svcSearch", "orgOther", "search", frozenset({"key:read", "doc:read"}))
TO_BILLING = {"services": ["svcBilling"], "organizations": []}
TO_ACME = {"services": [], "organizations": ["orgAcme"]}


@pytest.mark.parametrize(("restricted_to", "at_service", "service", "required", "code"), [
    (None, True, BILLING, (), None),  # unrestricted: works at any service …
    (None, True, None, (), None),  # … and for a plain key:verify caller, as before
    (TO_BILLING, True, BILLING, (), None),
    (TO_BILLING, True, SEARCH, (), "wrong_service"),
    (TO_BILLING, True, None, (), "wrong_service"),  # a caller that is no service
    (TO_BILLING, False, None, (), None),  # KeyVault's own API is not a service
    (TO_ACME, True, BILLING, (), None),  # any service of the organisation, added later too
    (TO_ACME, True, SEARCH, (), "wrong_service"),
    # another service's scope is insufficient_scope, even for `*`; the wrong service first
    ({"services": ["svcSearch"]}, True, BILLING, ("doc:read",), "wrong_service"),
    (None, True, BILLING, ("doc:read",), "insufficient_scope"),
    (None, True, BILLING, ("invoice:read",), "insufficient_scope"),  # not held
])
def test_the_service_judges(restricted_to, at_service, service, required, code):
    key = row(restricted_to=restricted_to, scopes=["key:read"] if "invoice:read" in required
              else ["*"])
    assert first_refusal(Case(key, False, NOW, required, at_service=at_service,
                              service=service)) == code


def test_a_restricted_key_that_is_expired_answers_expired():
    key = row(restricted_to=TO_BILLING, expires_at=NOW)
    assert first_refusal(Case(key, False, NOW, (), at_service=True, service=SEARCH)) == "expired"


def test_verify_codes_follow_the_judges_in_order():
    assert CODES == ("valid", "malformed", "not_found", "revoked", "user_inactive", "expired",
                     "wrong_service", "ip_not_allowed", "insufficient_scope", "rate_limited",
                     "usage_exceeded")
    assert CODES[3:] == tuple(dict.fromkeys(judge.code for judge in JUDGES))


def test_a_new_judge_joins_without_touching_the_others():
    @dataclass(frozen=True)
    class OnlyLabelled:
        code: str = "unlabelled"

        def judge(self, case: Case) -> str | None:
            return None if case.row.label else self.code

    judges = (*JUDGES[:3], OnlyLabelled(), *JUDGES[3:])
    assert first_refusal(Case(row(label=""), False, NOW), judges) == "unlabelled"
    assert first_refusal(Case(row(label="", revoked_at=NOW), False, NOW), judges) == "revoked"
    assert first_refusal(Case(row(label="x"), False, NOW, ("z:z",)), judges) == "insufficient_scope"
    assert first_refusal(Case(row(label="x"), False, NOW), judges) is None
