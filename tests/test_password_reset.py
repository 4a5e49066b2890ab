"""Password reset by e-mail: the same answer whether or not the address has an account, a
signed link that works once for 30 minutes, every session ended, the change logged and mailed,
a rate limit per address and client, and the token never in the access log."""

from __future__ import annotations

import re
from datetime import timedelta

import requests
from sqlalchemy import select

from keyvault import service
from keyvault.extensions import db
from keyvault.models import MailOutbox, SecurityEvent, User
from tests.conftest import PASSWORD, T0, AuthActions, csrf_from, send_mail, text_of

NEW_PASSWORD = "a brand new passphrase"


def ask_for_reset(client, email: str):
    page = client.get("/password/forgot").get_data(as_text=True)
    return client.post("/password/forgot", data={"email": email, "csrf_token": csrf_from(page)})


def link_in(message) -> str:
    return re.search(r"^(\S*/password/reset\?token=\S+)$", text_of(message), re.M).group(1)


def token_of(link: str) -> str:
    return link.split("token=", 1)[1]


def choose_password(client, token: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    page = client.get(f"/password/reset?token={token}")
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post("/password/reset", data={
        "token": token, "password": password, "confirm": confirm or password,
        "csrf_token": csrf_from(page.get_data(as_text=True))})


def mailed_link(app, smtp_server, client, email: str) -> str:
    assert ask_for_reset(client, email).status_code == 200
    send_mail(app)
    [message] = smtp_server.to(email)[-1:]
    return link_in(message)


def test_the_answer_is_the_same_whether_or_not_the_account_exists(app, client, make_user,
                                                                  smtp_server):
    ada = make_user("ada@example.com")
    gone = make_user("gone@example.com")
    service.set_user_active(None, gone.id, False, service.Origin.system())
    answers = {email: ask_for_reset(client, email) for email in
               ("ada@example.com", "nobody@example.com", "gone@example.com")}
    bodies = {email: re.sub(re.escape(email), "EMAIL", answer.get_data(as_text=True))
              for email, answer in answers.items()}
    bodies = {email: re.sub(r'name="csrf_token"[^>]*>', "", body) for email, body in bodies.items()}
    assert {answer.status_code for answer in answers.values()} == {200}
    assert len(set(bodies.values())) == 1
    assert "Check your mail" in bodies["ada@example.com"]
    assert send_mail(app).sent == 1  # the account's mail only: none for unknown or deactivated
    logged = db.session.execute(select(SecurityEvent.user_id, SecurityEvent.details).where(
        SecurityEvent.event == "password.reset_requested").order_by(SecurityEvent.id)).all()
    assert [(row.user_id, row.details.get("reason")) for row in logged] == [
        (ada.id, None), (None, "unknown_email"), (gone.id, "inactive")]
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert "within 30 minutes" in text_of(message)


def test_the_link_sets_a_new_password_and_ends_every_session(app, client, make_user, smtp_server,
                                                             auth):
    user = make_user("ada@example.com")
    other_browser = app.test_client()
    AuthActions(other_browser).login("ada@example.com")
    assert other_browser.get("/settings/api-keys").status_code == 200
    link = mailed_link(app, smtp_server, client, "ada@example.com")
    done = choose_password(client, token_of(link))
    assert done.status_code == 303 and done.headers["Location"] == "/login"
    assert other_browser.get("/settings/api-keys").status_code == 302  # logged out
    assert "Wrong email or password." in auth.login("ada@example.com", PASSWORD).get_data(
        as_text=True)
    assert auth.login("ada@example.com", NEW_PASSWORD).status_code == 302
    events = db.session.scalars(select(SecurityEvent.event).where(
        SecurityEvent.user_id == user.id)).all()
    assert "password.reset" in events and "password.reset_requested" in events
    send_mail(app)
    notice = smtp_server.wait_for(2)[-1]
    assert notice["Subject"] == "KeyVault: Password reset by e-mail link"
    assert "every session was logged out" in text_of(notice)


def test_the_link_works_once(app, client, make_user, smtp_server):
    make_user("ada@example.com")
    token = token_of(mailed_link(app, smtp_server, client, "ada@example.com"))
    assert choose_password(client, token).status_code == 303
    again = client.get(f"/password/reset?token={token}")
    assert again.status_code == 400
    assert "already used" in again.get_data(as_text=True)
    replay = client.post("/password/reset", data={"token": token, "password": "x" * 20,
                                                  "confirm": "x" * 20})
    assert replay.status_code == 400


def test_any_other_password_change_voids_the_link(app, client, make_user, smtp_server):
    user = make_user("ada@example.com")
    token = token_of(mailed_link(app, smtp_server, client, "ada@example.com"))
    service.change_password(user, PASSWORD, "another good password", service.Origin())
    answer = client.get(f"/password/reset?token={token}")
    assert answer.status_code == 400 and "already used" in answer.get_data(as_text=True)


def test_the_link_expires_after_30_minutes(app, client, make_user, smtp_server, frozen):
    make_user("ada@example.com")
    token = token_of(mailed_link(app, smtp_server, client, "ada@example.com"))
    frozen.at = T0 + timedelta(minutes=29, seconds=59)
    assert client.get(f"/password/reset?token={token}").status_code == 200
    frozen.at = T0 + timedelta(minutes=30)
    expired = client.get(f"/password/reset?token={token}")
    assert expired.status_code == 400
    assert "expired" in expired.get_data(as_text=True)
    assert "Ask for a new reset link" in expired.get_data(as_text=True)


def test_an_altered_or_missing_token_gets_a_clear_400(app, client, make_user, smtp_server):
    make_user("ada@example.com")
    token = token_of(mailed_link(app, smtp_server, client, "ada@example.com"))
    altered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for target in (f"/password/reset?token={altered}", "/password/reset?token=garbage",
                   "/password/reset", "/password/reset?token=%00"):
        answer = client.get(target)
        assert answer.status_code == 400, target
        assert "not valid" in answer.get_data(as_text=True)
    forged = client.post("/password/reset", data={"token": altered, "password": "x" * 20,
                                                  "confirm": "x" * 20})
    assert forged.status_code == 400
    user = db.session.scalar(select(User).where(User.email == "ada@example.com"))
    assert user.session_epoch == 0


def test_a_weak_new_password_is_refused_in_words(app, client, make_user, smtp_server):
    make_user("ada@example.com")
    token = token_of(mailed_link(app, smtp_server, client, "ada@example.com"))
    answer = choose_password(client, token, "short")
    assert answer.status_code == 400
    assert "Too short" in answer.get_data(as_text=True)
    assert choose_password(client, token).status_code == 303  # the link still works


def test_reset_mails_are_limited_per_address(make_app, make_user, smtp_server):
    """From one client, KEYVAULT_RATELIMIT_RESET links per address (the whole rule, with other
    clients and the owner's browser: tests/test_rate_limits.py, on the real server)."""
    app = make_app(KEYVAULT_RATELIMIT_RESET="2/hour")
    client = app.test_client()
    with app.app_context():
        make_user_in(app, "ada@example.com")
    assert ask_for_reset(client, "ada@example.com").status_code == 200
    assert ask_for_reset(client, "ADA@example.com").status_code == 200
    refused = ask_for_reset(client, "ada@example.com")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "Too many reset links" in refused.get_data(as_text=True)
    assert ask_for_reset(client, "bob@example.com").status_code == 200
    assert send_mail(app).sent == 2


def make_user_in(app, email: str) -> None:
    service.sign_up(email, PASSWORD, service.Origin())


def test_the_token_stays_out_of_the_access_log_and_the_sent_mail_row(live_server, app, make_user,
                                                                     smtp_server):
    make_user("ada@example.com")
    browser = requests.Session()
    page = browser.get(f"{live_server.url}/password/forgot", timeout=10).text
    browser.post(f"{live_server.url}/password/forgot", timeout=10,
                 data={"email": "ada@example.com", "csrf_token": csrf_from(page)})
    row = db.session.scalar(select(MailOutbox))
    token = token_of(re.search(r"\S*/password/reset\?token=\S+", row.text_body).group(0))
    form = browser.get(f"{live_server.url}/password/reset?token={token}", timeout=10)
    assert form.status_code == 200
    assert form.headers["Referrer-Policy"] == "no-referrer"
    browser.get(f"{live_server.url}/readyz?after=reset", timeout=10)
    log = live_server.log()
    assert "/password/reset?token=[redacted]" in log
    assert token not in log
    send_mail(app)
    smtp_server.wait_for(1)
    db.session.expire_all()
    assert token not in db.session.scalar(select(MailOutbox.text_body))
