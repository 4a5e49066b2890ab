"""One account per mailbox: an address that only looks like a taken one (full-width, Cyrillic
in the local part or the domain, an accent, a Turkish dotted İ) makes no second account, at
sign-up, through `keyvault users create`, or two at once; accounts that already share a mailbox
survive the migration and are listed by `keyvault users doubles`; mail to an address the server
can never take is given up after the first refusal."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from datetime import timedelta

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, select, text

from keyvault import create_app, mailbox, service
from keyvault.extensions import db
from keyvault.models import MailOutbox, User
from keyvault.service import mail
from tests.conftest import (
    PASSWORD,
    PROJECT_ROOT,
    T0,
    TEST_PEPPER,
    TEST_SECRET_KEY,
    SmtpServer,
    base_overrides,
    fresh_postgresql_database,
    send_mail,
)
from tests.test_auth import errors_in

KEYVAULT = str(PROJECT_ROOT / ".venv" / "bin" / "keyvault")
ALICE = "alice@example.com"
LOOK_ALIKES = [
    pytest.param("ａlice@example.com", id="full-width a"),
    pytest.param("\u0430lice@example.com", id="Cyrillic a in the local part"),
    pytest.param("alice@ex\u0430mple.com", id="Cyrillic a in the domain"),
    pytest.param("álice@example.com", id="a with an acute accent"),
    pytest.param("ALİCE@example.com", id="Turkish dotted capital I"),
    pytest.param("a1ice@Example.COM", id="digit one for l"),
]
# The sign-up form refuses it as no address at all (email-validator); the command line takes it.
INVISIBLE = pytest.param("ali\u200bce@example.com", id="a zero-width space")


def accounts() -> list[User]:
    db.session.expire_all()
    return list(db.session.scalars(select(User).order_by(User.id)))


# ---------------------------------------------------------------- what is one mailbox


@pytest.mark.parametrize("address", [*LOOK_ALIKES, INVISIBLE])
def test_a_look_alike_has_the_mailbox_key_of_the_address_it_imitates(address):
    assert address != ALICE
    assert mailbox.mailbox_key(address) == mailbox.mailbox_key(ALICE)


@pytest.mark.parametrize("address", ["bob@example.com", "alice@example.org", "alicia@example.com",
                                     "alice2@example.com", "alice@example.co"])
def test_different_addresses_have_different_keys(address):
    assert mailbox.mailbox_key(address) != mailbox.mailbox_key(ALICE)


@pytest.mark.parametrize(("typed", "stored"), [
    ("  Alice@Example.COM ", "alice@example.com"),
    ("ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "alice@example.com"),  # full-width: NFKC makes it ASCII
    ("user@Bücher.de", "user@xn--bcher-kva.de"),  # the domain in IDNA
    ("alice@ex\u0430mple.com", "alice@xn--exmple-4nf.com"),  # a look-alike domain shows as one
    ("\u0430lice@example.com", "\u0430lice@example.com"),  # the local part stays as typed
])
def test_addresses_are_stored_in_their_normal_form(typed, stored):
    assert mailbox.normal_form(typed) == stored


def test_the_skeleton_is_the_tr39_one_without_accents():
    """TR39's skeleton maps look-alikes to one prototype (Cyrillic а to a, 1 to l, m to rn)
    and keeps accents; the mailbox key drops them as well."""
    assert mailbox.tr39_skeleton("\u0430") == "a"
    assert mailbox.tr39_skeleton("a1ice") == "alice"
    assert mailbox.tr39_skeleton("á") == "a\u0301"
    assert mailbox.skeleton("Álice@Exámple.com") == "alice@exarnple.corn"


# ---------------------------------------------------------------- sign-up


@pytest.mark.parametrize("address", LOOK_ALIKES)
def test_signing_up_with_a_look_alike_is_answered_as_for_the_taken_address(app, auth, user,
                                                                           address):
    """The page cannot tell a look-alike from the address itself: same status, same words."""
    taken = auth.signup(ALICE)
    look_alike = auth.signup(address)
    assert taken.status_code == look_alike.status_code == 400
    assert errors_in(look_alike.get_data(True)) == errors_in(taken.get_data(True)) == [
        "An account with this email already exists."]
    assert ALICE not in look_alike.get_data(True)  # the page does not name the account
    assert [u.email for u in accounts()] == [ALICE]


def test_a_full_width_address_signs_up_as_its_ascii_form(app, auth):
    """NFKC: the account's address is the plain one mail servers take."""
    assert auth.signup("ｂｏｂ@example.com").status_code == 302
    assert [(u.email, u.mailbox_key) for u in accounts()] == [
        ("bob@example.com", mailbox.mailbox_key("bob@example.com"))]


def test_a_different_address_still_signs_up(app, auth, user):
    assert auth.signup("alicia@example.com").status_code == 302
    assert [u.email for u in accounts()] == [ALICE, "alicia@example.com"]


def test_look_alikes_signing_up_at_once_make_one_account(app):
    """The check and the insert happen under one lock per mailbox (advisory on PostgreSQL, the
    write lock on SQLite): of eight look-alikes racing, exactly one gets the account."""
    addresses = [ALICE] + [param.values[0] for param in LOOK_ALIKES]
    start = threading.Barrier(len(addresses))
    outcomes: list[str] = []

    def sign_up(address: str) -> None:
        with app.app_context():
            start.wait()
            try:
                service.sign_up(address, PASSWORD, service.Origin("127.0.0.1", "pytest"))
                outcomes.append("created")
            except service.EmailTaken:
                outcomes.append("taken")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=sign_up, args=(a,)) for a in addresses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created"] + ["taken"] * (len(addresses) - 1)
    assert len(accounts()) == 1


# ---------------------------------------------------------------- the command line


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args, stdin=None: runner.invoke(args=list(args), input=stdin)


@pytest.mark.parametrize("address", [*LOOK_ALIKES, INVISIBLE])
def test_users_create_refuses_a_look_alike_naming_the_account(cli, user, address):
    result = cli("users", "create", address, "--password-stdin", stdin=PASSWORD + "\n")
    assert result.exit_code == 1
    assert "An account with this email already exists." in result.stderr
    assert f"is the same mailbox as the account {ALICE} (id {user.id})" in result.stderr
    assert [u.email for u in accounts()] == [ALICE]


def test_users_create_refuses_the_same_address_in_the_old_words(cli, user):
    result = cli("users", "create", "ALICE@example.com", "--password-stdin",
                 stdin=PASSWORD + "\n")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: An account with this email already exists."


def test_users_doubles_says_when_there_are_none(cli, user):
    result = cli("users", "doubles")
    assert result.exit_code == 0
    assert result.stdout == "No accounts share a mailbox.\n"


# ---------------------------------------------------------------- accounts made before


BEFORE = "a1c4e7f9d2b6"  # the revision before users.mailbox_key


@pytest.fixture
def old_database(tmp_path):
    """A database migrated only up to the revision before mailbox keys existed."""
    server_url = os.environ.get("KEYVAULT_TEST_DATABASE_URL")
    if server_url:
        with fresh_postgresql_database(server_url, "kv_mailbox") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'old.db'}"


def run_keyvault(database_url: str, *args: str, stdin: str | None = None):
    env = {**os.environ, "KEYVAULT_DATABASE_URL": database_url,
           "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY, "KEYVAULT_KEY_PEPPER": TEST_PEPPER}
    return subprocess.run([KEYVAULT, *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=PROJECT_ROOT, timeout=120, check=False)


def test_upgrading_a_database_with_look_alike_accounts_keeps_and_reports_them(old_database):
    """The migration computes every account's key, merges nothing, fails on nothing, and names
    the accounts that share a mailbox; `keyvault users doubles` lists them; a further
    look-alike cannot sign up; the old full-width account still logs in as typed."""
    app = create_app(base_overrides(old_database))
    with app.app_context():
        upgrade(revision=BEFORE)
        db.engine.dispose()
    engine = create_engine(old_database)
    emails = [ALICE, "\u0430lice@example.com", "ａlice@example.com", "bob@example.com",
              "BOB@ex\u0430mple.com", "carol@example.com"]
    with engine.begin() as conn:
        for email in emails:
            conn.execute(text("INSERT INTO users (email, password_hash, is_active, is_admin, "
                              "created_at) VALUES (:email, 'x', true, false, :at)"),
                         {"email": email, "at": T0.replace(tzinfo=None)})
    engine.dispose()

    result = run_keyvault(old_database, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert ("accounts that share one mailbox (kept, not merged): id 1 'alice@example.com', "
            "id 2 '\\u0430lice@example.com', id 3 '\\uff41lice@example.com'") in result.stderr
    assert "id 4 'bob@example.com', id 5 'BOB@ex\\u0430mple.com'" in result.stderr
    assert "2 group(s) of accounts share a mailbox" in result.stderr

    doubles = run_keyvault(old_database, "users", "doubles")
    assert doubles.returncode == 0, doubles.stderr
    lines = doubles.stdout.splitlines()
    assert lines[0] == "3 accounts share one mailbox:"
    assert lines[1].startswith("  id 1  alice@example.com  created 2030-03-10T12:00:00Z")
    assert lines[2].startswith("  id 2  \u0430lice@example.com (\\u0430lice@example.com)")
    assert lines[3].startswith("  id 3  ａlice@example.com (\\uff41lice@example.com)")
    assert lines[4] == "2 accounts share one mailbox:"
    assert len(lines) == 7 and "carol" not in doubles.stdout

    refused = run_keyvault(old_database, "users", "create", "alice@exаmple.com",
                           "--password-stdin", stdin=PASSWORD + "\n")
    assert refused.returncode == 1
    assert "is the same mailbox as the account alice@example.com (id 1)" in refused.stderr
    app = create_app(base_overrides(old_database))
    with app.app_context():
        assert [u.email for u in db.session.scalars(select(User).order_by(User.id))] == emails
        assert service.find_user("ａlice@example.com").id == 3  # as it was stored, wins
        assert service.find_user("Alice@Example.com").id == 1
        db.session.remove()
        db.engine.dispose()


# ---------------------------------------------------------------- mail it cannot take


def outbox() -> list[MailOutbox]:
    db.session.expire_all()
    return list(db.session.scalars(select(MailOutbox).order_by(MailOutbox.id)))


def queue_notice(to: str) -> None:
    mail.queue(to, "account_notice", title="Password changed", summary="Details.", when=T0,
               address="192.0.2.1", agent="pytest", log_url="https://k.example/log",
               reset_url="https://k.example/reset")
    db.session.commit()


def test_mail_to_an_address_needing_smtputf8_is_given_up_after_one_try(app, smtp_server, frozen,
                                                                       caplog):
    """The server does not offer SMTPUTF8 (aiosmtpd's default, as a server with it turned off):
    one attempt, then given up with the reason kept and logged, never tried again."""
    queue_notice("\u0430lice@example.com")
    with caplog.at_level(logging.ERROR, logger="keyvault.mail"):
        assert send_mail(app) == (0, 0, 1)
    [row] = outbox()
    assert row.attempts == 1 and row.gave_up_at == T0 and row.sent_at is None
    assert row.last_error.startswith("RecipientRefused: ")
    assert "SMTPUTF8" in row.last_error
    [line] = [r.getMessage() for r in caplog.records if r.name == "keyvault.mail"]
    assert "not sent; giving up after 1 attempt(s): RecipientRefused" in line
    assert "SMTPUTF8" in line
    frozen.at = T0 + timedelta(days=2)
    assert send_mail(app) == (0, 0, 0)
    assert smtp_server.messages == [] and smtp_server.recipients_tried == []


def test_the_same_mail_goes_through_a_server_that_offers_smtputf8(make_app, frozen):
    """The refusal above is the server's missing capability, not the address itself."""
    server = SmtpServer(smtputf8=True)
    server.controller.start()
    try:
        app = make_app(KEYVAULT_SMTP_URL=server.url)
        with app.app_context():
            queue_notice("\u0430lice@example.com")
            assert send_mail(app) == (1, 0, 0)
        [message] = server.wait_for(1)
        assert message["To"] == "\u0430lice@example.com"
    finally:
        server.controller.stop()


def test_a_permanent_refusal_of_the_recipient_is_given_up_after_one_try(app, smtp_server):
    smtp_server.refuse_recipient = "550 5.1.1 No such user here"
    queue_notice("nobody@example.com")
    assert send_mail(app) == (0, 0, 1)
    [row] = outbox()
    assert row.attempts == 1 and row.gave_up_at is not None
    assert "550 5.1.1 No such user here" in row.last_error
    assert smtp_server.recipients_tried == ["nobody@example.com"]


def test_a_temporary_refusal_of_the_recipient_is_retried(app, smtp_server, frozen):
    smtp_server.refuse_recipient = "450 4.2.1 Mailbox busy, try later"
    queue_notice("busy@example.com")
    assert send_mail(app) == (0, 1, 0)
    [row] = outbox()
    assert row.gave_up_at is None and "450" in row.last_error
    smtp_server.refuse_recipient = None
    frozen.at = T0 + timedelta(hours=1)
    assert send_mail(app) == (1, 0, 0)
    assert smtp_server.wait_for(1)[0]["To"] == "busy@example.com"
