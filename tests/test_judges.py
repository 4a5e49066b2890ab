"""The judges verify walks (keyvault.service.judges): each restriction alone, their order of
precedence, and a new judge added without touching the others."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from keyvault.keystore import KeyRow
from keyvault.service.judges import JUDGES, Case, first_refusal
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


def test_verify_codes_follow_the_judges_in_order():
    assert CODES == ("valid", "malformed", "not_found", "revoked", "user_inactive", "expired",
                     "insufficient_scope", "rate_limited", "usage_exceeded")
    assert CODES[3:] == tuple(judge.code for judge in JUDGES)


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
