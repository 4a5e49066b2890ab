"""Mails to a key's owner: a key created (label, scopes, from where), a key found leaked, the
password changed; expiry reminders 7 days and 1 day ahead, each once however often cron runs;
a revoked or expired key still presented, at most once a day; the reminders can be turned off
on the account page, the security notices cannot. Never a key's value."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from keyvault import service
from keyvault.extensions import db
from keyvault.models import KeyNotice, SecurityEvent, User
from keyvault.service import notifications
from keyvault.service.events import record
from tests.conftest import PASSWORD, T0, csrf_from, html_of, send_mail, shown_key, text_of, verify


def mails(app, smtp_server, count: int | None = None):
    """Send what is queued; the messages that arrived now (exactly `count`, when given)."""
    before = len(smtp_server.messages)
    report = send_mail(app)
    if count is not None:
        assert report.sent == count, report
    return smtp_server.wait_for(before + report.sent)[before:]


def test_a_key_created_in_the_browser_mails_its_owner_where_from(app, client, auth, user,
                                                                 smtp_server):
    client.environ_base.update(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="Firefox/130")
    auth.login()
    page = auth.create_key(label="deploy bot", preset="read_only")
    value = shown_key(page.get_data(as_text=True))
    assert value
    [message] = mails(app, smtp_server, 1)
    key = service.list_keys(user)[0]
    text, html = text_of(message), html_of(message)
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "KeyVault: a new API key “deploy bot” was created"
    assert "KeyVault account alice@example.com" in text
    assert "Label: deploy bot" in text and f"Key: {key.mask}" in text
    assert "Scopes: " + ", ".join(key.scopes) in text
    assert "From: 203.0.113.7" in text and "Browser or program: Firefox/130" in text
    assert f"/settings/api-keys/{key.public_id}" in text and f"/settings/api-keys/{key.public_id}" in html
    assert value not in text and value not in html and value not in message.as_string()


def test_links_in_mails_are_absolute_on_the_base_url(make_app, make_key, smtp_server):
    app = make_app(KEYVAULT_BASE_URL="https://keys.example.com")
    with app.app_context():
        owner = service.sign_up("ada@example.com", PASSWORD, service.Origin())
        public_id = make_key(owner, scopes=["*"])[0].public_id
        [message] = mails(app, smtp_server, 1)
    assert f"https://keys.example.com/settings/api-keys/{public_id}" in text_of(message)
    assert "Scopes: * (full access)" in text_of(message)


def test_a_leaked_key_mails_where_it_was_found(app, user, make_key, smtp_server):
    """What the leaked-key intake records after revoking a key mails its owner."""
    key, value = make_key(user, label="ci token", scopes=["user:read"])
    mails(app, smtp_server, 1)  # the creation notice
    service.revoke_key(user, key.public_id, service.Origin())
    record("key.leaked", user.id, service.Origin(), key,
           url="https://github.com/ada/site/blob/main/.env", source="github")
    db.session.commit()
    message = mails(app, smtp_server, 1)[-1]
    text = text_of(message)
    assert message["Subject"] == "KeyVault: your key “ci token” was found in public and revoked"
    assert "https://github.com/ada/site/blob/main/.env" in text and "reported by github" in text
    assert "it no longer works" in text and key.mask in text
    assert f"/settings/api-keys/{key.public_id}" in text
    assert value not in message.as_string()


def test_a_password_change_always_mails_a_notice(app, client, auth, user, smtp_server):
    user.notify_expiring = user.notify_presented = False  # reminders off: security still goes
    db.session.commit()
    auth.login()
    page = client.get("/settings/account").get_data(as_text=True)
    client.post("/settings/account/password", data={
        "current_password": PASSWORD, "new_password": "another fine passphrase",
        "confirm": "another fine passphrase", "csrf_token": csrf_from(page)})
    [message] = mails(app, smtp_server, 1)
    assert message["Subject"] == "KeyVault: Password changed"
    assert "Every other session was logged out." in text_of(message)
    assert "/password/forgot" in text_of(message)


# ---------------------------------------------------------------- expiry reminders


def run_cron(app) -> str:
    answer = app.test_cli_runner().invoke(args=["notify", "expiring"])
    assert answer.exit_code == 0, answer.output
    return answer.output


def test_expiry_reminders_go_7_days_and_1_day_ahead_once_each(app, user, make_key, smtp_server,
                                                              frozen):
    key, _ = make_key(user, label="nightly", scopes=["user:read"],
                      expires_at=T0 + timedelta(days=10))
    mails(app, smtp_server, 1)  # creation
    assert "Queued 0" in run_cron(app)
    frozen.at = T0 + timedelta(days=3)  # 7 days left
    assert "Queued 1" in run_cron(app)
    for _ in range(3):
        assert "Queued 0" in run_cron(app)
    frozen.at = T0 + timedelta(days=8)
    assert notifications.notify_expiring() == 0
    [week] = mails(app, smtp_server, 1)[-1:]
    assert week["Subject"] == "KeyVault: your key “nightly” expires in 7 days"
    assert f"/settings/api-keys/{key.public_id}" in text_of(week)
    assert "/settings/account" in text_of(week)
    frozen.at = T0 + timedelta(days=9, hours=1)  # 23 hours left
    assert notifications.notify_expiring() == 1
    assert notifications.notify_expiring() == 0
    [day] = mails(app, smtp_server, 1)[-1:]
    assert day["Subject"] == "KeyVault: your key “nightly” expires in 23 hours"
    frozen.at = T0 + timedelta(days=11)
    assert notifications.notify_expiring() == 0
    assert send_mail(app).sent == 0


def test_a_key_created_inside_the_last_day_gets_only_the_1_day_reminder(app, user, make_key,
                                                                        smtp_server, frozen):
    make_key(user, scopes=["user:read"], expires_at=T0 + timedelta(hours=12))
    assert notifications.notify_expiring() == 1
    assert notifications.notify_expiring() == 0
    kinds = db.session.scalars(select(KeyNotice.kind)).all()
    assert kinds == ["expires_1d"]


def test_revoked_extended_and_unwanted_keys_get_no_reminder(app, make_user, make_key, smtp_server,
                                                           frozen):
    owner = make_user("ada@example.com")
    revoked, _ = make_key(owner, label="revoked", scopes=["user:read"],
                          expires_at=T0 + timedelta(days=5))
    service.revoke_key(owner, revoked.public_id, service.Origin())
    extended, _ = make_key(owner, label="extended", scopes=["user:read"],
                           expires_at=T0 + timedelta(days=5))
    extended.expires_at = T0 + timedelta(days=60)  # moved past the threshold
    db.session.commit()
    quiet = make_user("quiet@example.com")
    quiet.notify_expiring = False
    db.session.commit()
    make_key(quiet, scopes=["user:read"], expires_at=T0 + timedelta(days=2))
    assert notifications.notify_expiring() == 0
    send_mail(app)
    assert not [m for m in smtp_server.messages if "expires" in m["Subject"]]


# ---------------------------------------------------------------- dead keys still presented


def presented_mails(smtp_server) -> list:
    return [m for m in smtp_server.messages if "still being used" in m["Subject"]]


def test_an_expired_key_still_presented_mails_at_most_once_a_day(app, client, user, make_key,
                                                                 verifier, smtp_server, frozen):
    key, value = make_key(user, label="old cron", scopes=["user:read"],
                          expires_at=T0 + timedelta(hours=1))
    client.environ_base.update(REMOTE_ADDR="198.51.100.4")
    frozen.at = T0 + timedelta(minutes=30)
    assert verify(client, verifier, value)["code"] == "valid"
    assert db.session.scalars(select(KeyNotice)).all() == []
    for later in (timedelta(hours=2), timedelta(hours=2, minutes=5), timedelta(hours=5)):
        frozen.at = T0 + later
        assert verify(client, verifier, value)["code"] == "expired"
    mails(app, smtp_server)
    [message] = presented_mails(smtp_server)
    assert message["Subject"] == "KeyVault: your expired key “old cron” is still being used"
    assert "from 198.51.100.4" in text_of(message)
    assert f"/settings/api-keys/{key.public_id}" in text_of(message)
    frozen.at = T0 + timedelta(days=1, hours=3)  # the next UTC day
    assert verify(client, verifier, value)["code"] == "expired"
    mails(app, smtp_server)
    assert len(presented_mails(smtp_server)) == 2


def test_a_revoked_key_still_presented_is_logged_and_mailed(app, client, user, make_key, verifier,
                                                            smtp_server):
    key, value = make_key(user, label="leaky", scopes=["user:read"])
    service.revoke_key(user, key.public_id, service.Origin())
    for _ in range(3):
        assert client.get("/api/users/@me/", headers={"Authorization": f"Bearer {value}"}
                          ).status_code == 401
        assert verify(client, verifier, value)["code"] == "revoked"
    mails(app, smtp_server)
    [message] = presented_mails(smtp_server)
    assert message["Subject"] == "KeyVault: your revoked key “leaky” is still being used"
    events = db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.key_id == key.id, SecurityEvent.event == "key.revoked_use")).all()
    assert len(events) == 1
    assert service.describe(events[0]).title == "Revoked key presented"


def test_turned_off_presented_notices_are_not_mailed_but_still_logged(app, user, make_key,
                                                                      smtp_server):
    user.notify_presented = False
    db.session.commit()
    key, value = make_key(user, scopes=["user:read"])
    service.revoke_key(user, key.public_id, service.Origin())
    assert service.verify_key(value).code == "revoked"
    mails(app, smtp_server)
    assert presented_mails(smtp_server) == []
    assert db.session.scalar(select(SecurityEvent.id).where(
        SecurityEvent.event == "key.revoked_use")) is not None


# ---------------------------------------------------------------- preferences


def mail_csrf(page: str) -> str:
    return re.search(r'name="mail-csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def test_the_account_page_turns_the_reminders_off_and_on(app, client, auth, user):
    auth.login()
    page = client.get("/settings/account").get_data(as_text=True)
    assert page.count('checked') == 2
    assert "We always mail" in page
    answer = client.post("/settings/account/notifications",
                         data={"mail-presented": "y", "mail-csrf_token": mail_csrf(page)})
    assert answer.status_code == 303
    db.session.expire_all()
    stored = db.session.get(User, user.id)
    assert (stored.notify_expiring, stored.notify_presented) == (False, True)
    page = client.get("/settings/account").get_data(as_text=True)
    assert "Saved your mail preferences." in page and page.count('checked') == 1
    assert client.post("/settings/account/notifications", data={}).status_code == 400


def test_second_factor_changes_always_mail_the_person(app, user, smtp_server):
    """Turning two-factor on and off (security notices: no preference turns them off)."""
    import pyotp

    from keyvault.service import second_factor

    user.notify_expiring = user.notify_presented = False
    db.session.commit()
    origin = service.Origin("198.51.100.7", "pytest")
    second_factor.enable(user, pyotp.TOTP(second_factor.pending_secret(user)).now(), origin)
    second_factor.disable(user, origin)
    on, off = mails(app, smtp_server, 2)
    assert on["To"] == off["To"] == user.email
    assert "Two-factor authentication turned on" in text_of(on)
    assert "Two-factor authentication turned off" in text_of(off)
    assert "198.51.100.7" in text_of(on)
