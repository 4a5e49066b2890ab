"""Text that leaves KeyVault is tamed. Characters that turn text around (bidi controls) are
refused in labels, descriptions and passkey names, on the page, in the API and on the command
line alike; text that came from elsewhere reaches a mail as escapes, never as a line of its own
(a leak report's `source` with CR/LF), and a mail's subject is one line without bidi controls;
a background task meeting the same failure again and again logs it once a minute, and says when
it works again."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import create_engine, func, select, update

from keyvault import clock, create_app, logs, service
from keyvault.extensions import db
from keyvault.models import ApiKey
from keyvault.service import mail, usage
from keyvault.service.passkeys import clean_name
from keyvault.service.validation import BIDI_CONTROLS, inert
from tests.conftest import FreshContextClient, base_overrides, html_of, send_mail, text_of
from tests.test_edit import edit_on_page
from tests.test_secret_scanning import Signer, document, post, report

RLO = "\u202e"
BIDI = sorted(BIDI_CONTROLS)
DIRECTION = "change the direction of text"


def key_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(ApiKey.id)))


# ---------------------------------------------------------------- bidi controls, refused


def test_the_bidi_controls_are_exactly_the_twelve():
    assert {f"{ord(c):04X}" for c in BIDI_CONTROLS} == {
        "061C", "200E", "200F", "202A", "202B", "202C", "202D", "202E",
        "2066", "2067", "2068", "2069"}


@pytest.mark.parametrize("char", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
def test_every_bidi_control_is_refused_in_labels_descriptions_and_names(char):
    """Anywhere in the text, at either end too, with a message that says why."""
    for text in (f"invoice{char}gpj.exe", f"{char}deploy", f"deploy{char}"):
        for clean, field in ((service.clean_label, "label"),
                             (service.clean_description, "description"),
                             (clean_name, "name")):
            with pytest.raises(service.InvalidInput) as refused:
                clean(text)
            assert refused.value.field == field and DIRECTION in refused.value.detail


def test_text_of_other_scripts_and_joiners_is_still_welcome():
    """Right-to-left letters themselves, emoji with joiners, accents: all fine."""
    for text in ("مفتاح النشر", "שלום", "👩‍💻 laptop", "Café déploiement", "日本語のキー"):
        assert service.clean_label(text) == text
        assert service.clean_description(text + "\nsecond line") == text + "\nsecond line"


def test_the_api_refuses_a_bidi_label_or_description_with_a_400(app, client, user, make_key):
    _, tool = make_key(user, label="tool", scopes=["*"])
    bearer = {"Authorization": f"Bearer {tool}"}
    before = key_count()
    for body in ({"label": f"invoice{RLO}gpj.exe", "scopes": ["user:read"]},
                 {"label": "ok", "description": f"from{RLO}here", "scopes": ["user:read"]}):
        answer = client.post("/api/personal_api_keys/", json=body, headers=bearer)
        assert answer.status_code == 400, answer.json
        assert answer.mimetype == "application/problem+json"
        assert DIRECTION in answer.json["detail"]
    key, _ = make_key(user, label="target", scopes=["user:read"])
    answer = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                          json={"label": f"tar{RLO}get"}, headers=bearer)
    assert answer.status_code == 400 and DIRECTION in answer.json["detail"]
    assert key_count() == before + 1
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).label == "target"


def test_the_page_refuses_a_bidi_label_with_a_form_error(client, auth, user, make_key):
    auth.login()
    before = key_count()
    page = auth.create_key(label=f"invoice{RLO}gpj.exe")
    assert page.status_code == 400
    assert DIRECTION in page.get_data(as_text=True)
    assert key_count() == before
    key, _ = make_key(user, label="target", description="plain", scopes=["user:read"])
    answer = edit_on_page(client, key, "target", f"now{RLO}reversed", ["user:read"])
    assert answer.status_code == 400 and DIRECTION in answer.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).description == "plain"


def test_the_command_line_refuses_a_bidi_label(app, user):
    before = key_count()
    result = app.test_cli_runner().invoke(args=[
        "keys", "create", user.email, "--label", f"invoice{RLO}gpj.exe", "--scope", "user:read"])
    assert result.exit_code != 0
    assert DIRECTION in result.output
    assert key_count() == before


# ---------------------------------------------------------------- what reaches a mail


def test_inert_writes_line_breaks_and_bidi_controls_as_escapes():
    assert inert("content") == "content"
    assert inert("a\r\nBcc: x") == "a\\r\\nBcc: x"
    assert inert(f"{RLO}abc\u2066") == "\\u202eabc\\u2066"
    assert inert("x\u2028y\u2029z\x85\x00\t") == "x\\u2028y\\u2029z\\u0085\\u0000\\t"
    assert inert("مفتاح 👩‍💻 é\u00a0") == "مفتاح 👩‍💻 é\u00a0"


@pytest.fixture
def intake(make_app, tmp_path, smtp_server):
    """An app trusting a reporter's signing key, sending mail to the test's SMTP server."""
    signer = Signer()
    keys = tmp_path / "public_keys.json"
    keys.write_bytes(document(signer))
    app = make_app(KEYVAULT_SECRET_SCANNING_KEYS=str(keys))
    app.test_client_class = FreshContextClient
    with app.app_context():
        yield app, signer


def test_a_leak_reports_line_breaks_reach_the_mail_as_escapes(intake, make_user, make_key,
                                                              smtp_server):
    """A signed report's `source` and `url` with CR/LF (and a bidi control) are the reporter's
    text: the key is revoked all the same, and the mail shows them escaped, on their line."""
    app, signer = intake
    owner = make_user("ada@example.com")
    key, value = make_key(owner, label="deploy", scopes=["user:read"])
    send_mail(app)
    smtp_server.messages.clear()
    body = report(value, url="https://example.com/a\r\nBcc: mallory@example.com",
                  source=f"content\r\n\r\nClick https://evil.example/reset{RLO}")
    answer = post(app.test_client(), body, signer.headers(body))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert send_mail(app).sent == 1
    [message] = smtp_server.wait_for(1)
    text, html = text_of(message), html_of(message)
    lines = text.splitlines()
    assert not any(line.startswith(("Bcc:", "Click")) for line in lines), text
    assert "https://example.com/a\\r\\nBcc: mallory@example.com" in text
    assert "(reported by content\\r\\n\\r\\nClick https://evil.example/reset\\u202e)" in text
    assert message["Bcc"] is None
    for part in (text, html, message["Subject"]):
        assert BIDI_CONTROLS.isdisjoint(part) and "\r" not in part.replace("\r\n", "\n")
    assert "\\r\\nBcc: mallory@example.com" in html


def test_a_mail_subject_is_one_line_without_bidi_controls(app, user, make_key, smtp_server):
    """A label kept from before the rule (written straight into the database) reaches the
    subject and the body tamed; the subject is never more than one line."""
    key, _ = make_key(user, label="deploy", scopes=["user:read"])
    send_mail(app)
    smtp_server.messages.clear()
    db.session.execute(update(ApiKey).where(ApiKey.id == key.id)
                       .values(label=f"invoice{RLO}gpj.exe\r\nX: y"))
    db.session.commit()
    service.revoke_key(user, key.public_id, service.Origin())
    from keyvault.service.events import record

    db.session.expire_all()
    record("key.leaked", user.id, service.Origin(), db.session.get(ApiKey, key.id),
           url="https://example.com", source="content")
    db.session.commit()
    assert send_mail(app).sent == 1
    [message] = smtp_server.wait_for(1)
    subject = message["Subject"]
    assert "\n" not in subject and "\r" not in subject and BIDI_CONTROLS.isdisjoint(subject)
    assert "invoice\\u202egpj.exe X: y" in subject
    assert "invoice\\u202egpj.exe\\r\\nX: y" in text_of(message)
    assert message["X"] is None


# ---------------------------------------------------------------- a background task's failures


def test_a_failure_log_writes_one_line_per_kind_per_interval_and_one_on_recovery(caplog):
    failures = logs.FailureLog(logging.getLogger("keyvault.test"), "a task", every=0.5)
    with caplog.at_level(logging.INFO, logger="keyvault.test"):
        assert failures.failed("OperationalError", "down (%s)", "OperationalError")
        for _ in range(20):
            assert not failures.failed("OperationalError", "down (%s)", "OperationalError")
        assert failures.failed("TimeoutError", "slow")  # another kind has its own line
        time.sleep(0.6)
        assert failures.failed("OperationalError", "down (%s)", "OperationalError")
        failures.recovered()
        failures.recovered()  # nothing failed since: nothing to say
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "a task: down (OperationalError); said at most every 0.5 s",
        "a task: slow; said at most every 0.5 s",
        "a task: down (OperationalError); said at most every 0.5 s (20 more since the last line)",
        "a task: working again (after OperationalError, TimeoutError)",
    ]


def test_the_usage_flush_logs_an_outage_once_and_its_end(app, user, make_key, caplog):
    """Flushes that fail again and again (the database is gone) write one line; the first one
    that works says so."""
    key, _ = make_key(user, label="counted")
    counter = usage.counter(app)
    counter.add(key.id, key.public_id, "valid", clock.now(), "203.0.113.9")
    working = counter._engine_for_flush()
    counter._engine = create_engine("sqlite:////nonexistent-keyvault-dir/gone.db")
    with caplog.at_level(logging.INFO, logger="keyvault"):
        for _ in range(10):
            assert counter.flush() is False
        counter._engine.dispose()
        counter._engine = working
        assert counter.flush() is True
        assert counter.flush() is True
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("key usage:")]
    assert lines == [
        "key usage: 1 rows not written yet (OperationalError); kept for the next flush; said at "
        "most every 60 s",
        "key usage: working again (after rows: OperationalError, 9 more not written)",
    ]


def test_the_mail_sender_logs_an_outage_once(tmp_path, caplog):
    """The background sender, every 0.05 s against a database that cannot be opened: one line,
    not one per round. (Under `keyvault serve` and a real PostgreSQL stopped and started:
    tests/test_database_outage.py.)"""
    app = create_app(base_overrides(f"sqlite:///{tmp_path}/missing/keyvault.db"))
    app.config["KEYVAULT_MAIL_SEND_SECONDS"] = 0.05
    with caplog.at_level(logging.INFO, logger="keyvault.mail"):
        stop = mail.start_sender(app)
        time.sleep(1)
        stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mail sender")]
    assert lines == ["mail sender: OperationalError; trying again every 0.05 s; said at most "
                     "every 60 s"], lines
