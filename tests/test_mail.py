"""The outbox: a mail exists iff its action committed, each due mail is sent exactly once by
whichever sender claims it (threads, processes, a killed one's lease runs out), refusals are
retried with backoff and given up on with the error kept, and `keyvault serve` sends in the
background. A real SMTP server (aiosmtpd) receives everything."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from keyvault import config as config_module
from keyvault.extensions import db
from keyvault.models import MailOutbox
from keyvault.service import mail
from tests.conftest import (
    PASSWORD,
    PROJECT_ROOT,
    T0,
    TEST_PEPPER,
    TEST_SECRET_KEY,
    csrf_from,
    html_of,
    send_mail,
    start_server,
    stop_server,
    text_of,
)


def queue_notice(to: str = "ada@example.com", title: str = "Something happened") -> MailOutbox:
    return mail.queue(to, "account_notice", title=title, summary="Details.", when=T0,
                      address="192.0.2.1", agent="pytest", log_url="https://k.example/log",
                      reset_url="https://k.example/reset")


def rows() -> list[MailOutbox]:
    db.session.expire_all()
    return db.session.scalars(select(MailOutbox).order_by(MailOutbox.id)).all()


def test_a_committed_mail_is_sent_with_text_and_html_bodies(app, smtp_server):
    queue_notice(title="Password changed")
    db.session.commit()
    assert send_mail(app) == (1, 0, 0)
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert message["From"] == "KeyVault <keyvault@localhost>"
    assert message["Subject"] == "KeyVault: Password changed"
    assert "Password changed on your KeyVault account ada@example.com." in text_of(message)
    assert "<strong>Password changed</strong>" in html_of(message)
    [row] = rows()
    assert row.sent_at is not None and row.attempts == 1 and row.claimed_until is None


def test_a_mail_queued_in_a_rolled_back_transaction_is_never_sent(app, smtp_server):
    queue_notice()
    db.session.rollback()
    assert send_mail(app) == (0, 0, 0)
    assert rows() == []
    time.sleep(0.2)
    assert smtp_server.messages == []


def test_send_pending_sends_each_due_mail_once(app, smtp_server):
    for number in range(3):
        queue_notice(title=f"Event {number}")
    db.session.commit()
    runner = app.test_cli_runner()
    first = runner.invoke(args=["mail", "send-pending"])
    assert first.exit_code == 0, first.output
    assert "Sent 3 mail(s)" in first.output
    again = runner.invoke(args=["mail", "send-pending"])
    assert "Sent 0 mail(s)" in again.output
    time.sleep(0.2)
    assert sorted(m["Subject"] for m in smtp_server.messages) == [
        "KeyVault: Event 0", "KeyVault: Event 1", "KeyVault: Event 2"]


def test_two_senders_racing_send_each_mail_exactly_once(app, smtp_server):
    for number in range(30):
        queue_notice(title=f"Event {number}")
    db.session.commit()
    reports, errors = [], []

    def sender():
        try:
            reports.append(send_mail(app))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(report.sent for report in reports) == 30
    smtp_server.wait_for(30)
    time.sleep(0.3)
    subjects = [m["Subject"] for m in smtp_server.messages]
    assert len(subjects) == 30 and len(set(subjects)) == 30
    assert all(row.sent_at is not None for row in rows())


def _cli_env(database_url: str, smtp_url: str, **extra) -> dict:
    return {**os.environ, "KEYVAULT_DATABASE_URL": database_url,
            "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY, "KEYVAULT_KEY_PEPPER": TEST_PEPPER,
            "KEYVAULT_SMTP_URL": smtp_url, **extra}


def test_a_sender_killed_after_claiming_loses_no_mail(app, smtp_server, database_url):
    """A `keyvault mail send-pending` is SIGKILLed while it holds a mail (its SMTP server never
    answers); once its lease runs out, another sender delivers the mail, once."""
    queue_notice(title="Survives a crash")
    db.session.commit()
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        stalled = subprocess.Popen(
            [sys.executable, "-m", "keyvault", "mail", "send-pending"], cwd=PROJECT_ROOT,
            env=_cli_env(database_url, f"smtp://127.0.0.1:{silent.getsockname()[1]}",
                         KEYVAULT_MAIL_LEASE_SECONDS="3"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not (claimed := rows()[0]).claimed_by:
                assert stalled.poll() is None, stalled.stdout.read()
                assert time.monotonic() < deadline, "the sender never claimed the mail"
                time.sleep(0.05)
            stalled.send_signal(signal.SIGKILL)
            stalled.wait(10)
        finally:
            if stalled.poll() is None:
                stalled.kill()
                stalled.wait()
            stalled.stdout.close()
    assert claimed.sent_at is None
    assert send_mail(app) == (0, 0, 0), "the dead sender's lease still holds the mail"
    deadline = time.monotonic() + 10
    while rows()[0].claimed_until > mail.clock.now():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert send_mail(app).sent == 1
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == "KeyVault: Survives a crash"
    assert send_mail(app).sent == 0


def test_a_refusing_server_means_retries_with_backoff_then_success(app, smtp_server, frozen,
                                                                    caplog):
    caplog.set_level(logging.INFO, "keyvault.mail")
    queue_notice(title="Eventually")
    db.session.commit()
    smtp_server.refuse = "451 4.3.0 Try again later"
    assert send_mail(app) == (0, 1, 0)
    [row] = rows()
    assert row.attempts == 1 and row.sent_at is None
    assert row.next_attempt_at == T0 + timedelta(seconds=60)
    assert "451" in row.last_error
    frozen.at = T0 + timedelta(seconds=59)
    assert send_mail(app) == (0, 0, 0)  # not due yet
    frozen.at = T0 + timedelta(seconds=60)
    assert send_mail(app) == (0, 1, 0)
    assert rows()[0].next_attempt_at == frozen.at + timedelta(seconds=120)  # doubled
    smtp_server.refuse = None
    frozen.at += timedelta(seconds=120)
    assert send_mail(app) == (1, 0, 0)
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == "KeyVault: Eventually"
    assert rows()[0].attempts == 3
    failures = [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]
    assert len(failures) == 2 and all("\n" not in line for line in failures)
    assert not any("Details." in r.getMessage() for r in caplog.records)  # never a body


def test_after_the_last_attempt_the_mail_is_given_up_with_its_error(make_app, smtp_server,
                                                                   frozen):
    app = make_app(KEYVAULT_MAIL_MAX_ATTEMPTS="2")
    with app.app_context():
        queue_notice()
        db.session.commit()
        smtp_server.refuse = "554 5.7.1 Rejected"
        assert send_mail(app) == (0, 1, 0)
        frozen.at = T0 + timedelta(hours=2)
        assert send_mail(app) == (0, 0, 1)
        [row] = rows()
        assert row.gave_up_at == frozen.at and "554" in row.last_error
        smtp_server.refuse = None
        frozen.at = T0 + timedelta(days=2)
        assert send_mail(app) == (0, 0, 0)
    assert smtp_server.messages == []


def test_starttls_required_but_not_offered_is_a_failure(make_app, smtp_server):
    app = make_app(KEYVAULT_SMTP_URL=smtp_server.url + "?starttls=require")
    with app.app_context():
        queue_notice()
        db.session.commit()
        assert send_mail(app) == (0, 1, 0)
        assert "STARTTLS" in rows()[0].last_error
    assert smtp_server.messages == []


def test_development_without_smtp_writes_the_whole_mail_to_the_log(make_app, caplog):
    caplog.set_level(logging.INFO, "keyvault.mail")
    app = make_app()
    with app.app_context():
        assert app.config["KEYVAULT_SMTP_URL"] is None
        queue_notice(title="Shown to the developer")
        db.session.commit()
        assert send_mail(app) == (1, 0, 0)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "ada@example.com" in logged and "KeyVault: Shown to the developer" in logged
    assert "Details." in logged


def test_production_without_smtp_keeps_the_mail_and_warns(make_app, caplog):
    app = make_app(KEYVAULT_ENV="production", KEYVAULT_SECRET_KEY=TEST_SECRET_KEY,
                   KEYVAULT_KEY_PEPPER=TEST_PEPPER)
    with app.app_context():
        queue_notice(title="Kept")
        db.session.commit()
        stop = mail.start_sender(app)
        stop()
        assert "KEYVAULT_SMTP_URL is not set" in caplog.text
        assert send_mail(app) == (0, 0, 0)
        assert rows()[0].sent_at is None
    assert "Details." not in caplog.text


@pytest.mark.parametrize("url", ["http://mail.example.com", "smtp://", "smtp://h:port",
                                 "smtp://h?starttls=maybe", "smtp://h?tls=1"])
def test_a_bad_smtp_url_stops_start_up_with_its_name(tmp_path, url):
    with pytest.raises(config_module.ConfigError, match="KEYVAULT_SMTP_URL"):
        config_module.load(tmp_path, {"KEYVAULT_SMTP_URL": url})


def test_smtp_urls_are_read_as_documented():
    from keyvault.smtp import parse_url

    assert parse_url("smtp://me%40x:p%3Aw@mail.example.com") == (
        "mail.example.com", 587, False, "auto", "me@x", "p:w")
    assert parse_url("smtps://mail.example.com")[1:3] == (465, True)
    assert parse_url("smtp://h:2525?starttls=require")[1:4] == (2525, False, "require")


def test_the_live_server_sends_mail_a_request_caused_in_the_background(
        app, make_user, smtp_server, database_url, tmp_path):
    """`keyvault serve` answers the request at once; its background sender delivers the mail."""
    make_user("ada@example.com")
    server = start_server(database_url, tmp_path / "serve.log", workers=1, smtp=smtp_server)
    try:
        browser = requests.Session()
        page = browser.get(f"{server.url}/password/forgot", timeout=10).text
        answer = browser.post(f"{server.url}/password/forgot", timeout=10,
                              data={"email": "ada@example.com", "csrf_token": csrf_from(page)})
        assert answer.status_code == 200 and "Check your mail" in answer.text
        [message] = smtp_server.wait_for(1, timeout=20)
        assert message["To"] == "ada@example.com"
        assert message["Subject"] == "Reset your KeyVault password"
    finally:
        stop_server(server)
    assert PASSWORD not in text_of(message)
