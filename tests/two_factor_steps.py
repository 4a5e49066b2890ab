"""Steps of the two-factor tests (tests/test_two_factor*.py, tests/conftest.py's `enrolled`):
reading the set-up page, computing codes, the login's second step."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
from sqlalchemy import select

from keyvault.extensions import db
from keyvault.models import SecurityEvent
from tests.conftest import csrf_from


def secret_on(page: str) -> str:
    match = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', page)
    assert match, "the set-up page shows no secret"
    return match.group(1).replace(" ", "")


def recovery_codes_on(page: str) -> list[str]:
    return re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", page)


def code_at(secret: str, when, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(when + timedelta(seconds=30 * steps))


def events(user, name: str) -> list[SecurityEvent]:
    return list(db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.user_id == user.id, SecurityEvent.event == name)))


def enrol(client, frozen) -> tuple[str, list[str]]:
    """Set up two-factor through the pages (the person is logged in); (secret, recovery codes)."""
    page = client.get("/settings/two-factor/setup").get_data(as_text=True)
    secret = secret_on(page)
    response = client.post("/settings/two-factor/setup", data={
        "code": code_at(secret, frozen.at), "csrf_token": csrf_from(page)})
    assert response.status_code == 200
    codes = recovery_codes_on(response.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def second_step(client, code: str):
    page = client.get("/login/two-factor")
    assert page.status_code == 200
    return client.post("/login/two-factor", data={
        "code": code, "csrf_token": csrf_from(page.get_data(as_text=True))})
