"""The `keyvault` command line: users, keys and the database, as operators and scripts use it."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from importlib import metadata

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, select, text

from keyvault import clock, passwords, service, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent, User
from tests.conftest import (
    CHEAP_ARGON2,
    PASSWORD,
    PROJECT_ROOT,
    TEST_PEPPER,
    TEST_SECRET_KEY,
    AuthActions,
    verify,
)

KEYVAULT = str(PROJECT_ROOT / ".venv" / "bin" / "keyvault")


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args, stdin=None):
        return runner.invoke(args=list(args), input=stdin)

    return invoke


def run_keyvault(database_url: str, *args: str, stdin: str | None = None):
    """`keyvault …` as a separate process, configured only through its environment."""
    env = {**os.environ, "KEYVAULT_DATABASE_URL": database_url,
           "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY, "KEYVAULT_KEY_PEPPER": TEST_PEPPER}
    return subprocess.run([KEYVAULT, *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=PROJECT_ROOT, timeout=120, check=False)


def fresh(model, **where):
    db.session.expire_all()
    return db.session.scalar(select(model).filter_by(**where))


# ---------------------------------------------------------------- users


@pytest.mark.parametrize("admin", [False, True])
def test_users_create_reads_the_password_from_stdin(cli, admin):
    """`users create EMAIL --password-stdin [--admin]` makes an account with that password."""
    args = ["users", "create", "Dana@Example.com", "--password-stdin"] + (["--admin"] if admin
                                                                         else [])
    result = cli(*args, stdin="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "dana@example.com" in result.stderr
    assert result.stdout == ""
    user = fresh(User, email="dana@example.com")
    assert user.is_admin is admin
    hasher = passwords.make_hasher(**CHEAP_ARGON2)
    assert passwords.verify_password(hasher, user.password_hash, "a long enough password")
    assert not passwords.verify_password(hasher, user.password_hash, "a long enough password\n")


@pytest.mark.parametrize(("email", "password", "message"), [
    ("alice@example.com", "another password", "An account with this email already exists."),
    ("ALICE@example.com", "another password", "An account with this email already exists."),
    ("new@example.com", "short", "Choose a password of at least 8 characters."),
    ("not-an-email", "long enough password", "Enter a valid email address."),
])
def test_users_create_refusals(cli, user, email, password, message):
    """A taken email or a bad password exits non-zero with the reason."""
    result = cli("users", "create", email, "--password-stdin", stdin=password + "\n")
    assert result.exit_code != 0
    assert message in result.stderr
    db.session.expire_all()
    assert len(db.session.scalars(select(User)).all()) == 1


def login(app, email="alice@example.com", password=PASSWORD):
    """A fresh browser session: (its client, the login's status code)."""
    client = app.test_client()
    return client, AuthActions(client).login(email, password).status_code


def events(name: str) -> list[SecurityEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(SecurityEvent).filter_by(event=name)))


def test_users_set_password_from_stdin_ends_every_session(app, cli, user):
    """`users set-password EMAIL --password-stdin`: the new password works, the old one does
    not, the user's open sessions end, and the event says it came from the command line."""
    session, status = login(app)
    assert status == 302 and session.get("/settings/account").status_code == 200
    result = cli("users", "set-password", "Alice@Example.com", "--password-stdin",
                 stdin="a brand new password\n")
    assert result.exit_code == 0, result.output
    assert "alice@example.com" in result.stdout
    assert session.get("/settings/account").status_code == 302  # logged out
    assert login(app, password=PASSWORD)[1] == 400
    assert login(app, password="a brand new password")[1] == 302
    [event] = events("password.changed")
    assert event.user_id == user.id and event.user_agent == "keyvault-cli"
    assert event.ip_address is None


@pytest.mark.parametrize(("email", "password", "message"), [
    ("nobody@example.com", "a brand new password", "There is no account with the email "
     "nobody@example.com."),
    ("alice@example.com", "short", "Choose a password of at least 8 characters."),
])
def test_users_set_password_refusals(app, cli, user, email, password, message):
    """An unknown email or a too-short password: exit non-zero, say why, change nothing."""
    result = cli("users", "set-password", email, "--password-stdin", stdin=password + "\n")
    assert result.exit_code == 1
    assert message in result.stderr
    assert login(app)[1] == 302
    assert events("password.changed") == []


def test_users_set_password_prompts_twice_without_stdin(app, cli, user):
    """Without --password-stdin the password is asked for twice, hidden."""
    result = cli("users", "set-password", "alice@example.com",
                 stdin="typed at a prompt\ntyped at a prompt\n")
    assert result.exit_code == 0, result.output
    assert "typed at a prompt" not in result.output
    assert login(app, password="typed at a prompt")[1] == 302


def test_users_set_admin_and_revoke(app, cli, user):
    """`users set-admin` opens the admin pages to the user; `--revoke` (or `--no-admin`) closes
    them again; each change is one event from the command line, a repeat changes nothing."""
    session, _ = login(app)
    assert session.get("/admin/keys").status_code == 404  # not an admin: no such page
    result = cli("users", "set-admin", "alice@example.com")
    assert result.exit_code == 0, result.output
    assert "alice@example.com is now an administrator." in result.stdout
    assert session.get("/admin/keys").status_code == 200
    again = cli("users", "set-admin", "alice@example.com")
    assert again.exit_code == 0 and "already an administrator; nothing changed" in again.stdout
    for flag in ("--revoke", "--no-admin"):
        result = cli("users", "set-admin", "alice@example.com", flag)
        assert result.exit_code == 0, result.output
    assert session.get("/admin/keys").status_code == 404  # not an admin: no such page
    granted, revoked = events("user.admin_granted"), events("user.admin_revoked")
    assert len(granted) == len(revoked) == 1
    assert {e.user_agent for e in granted + revoked} == {"keyvault-cli"}


def test_users_deactivate_and_activate(app, cli, user, make_key, verifier):
    """Deactivation ends the user's sessions, refuses their login and makes every key of theirs
    verify as user_inactive; activation undoes it, but does not bring old sessions back."""
    _, value = make_key(user, label="theirs", scopes=["user:read"])
    session, _ = login(app)
    result = cli("users", "deactivate", "alice@example.com")
    assert result.exit_code == 0, result.output
    assert "Deactivated alice@example.com" in result.stdout
    assert session.get("/settings/account").status_code == 302
    assert login(app)[1] == 400
    client = app.test_client()
    assert verify(client, verifier, value)["code"] == "user_inactive"
    assert client.get("/api/users/@me/", headers={"Authorization": f"Bearer {value}"}
                      ).status_code == 401
    again = cli("users", "deactivate", "alice@example.com")
    assert again.exit_code == 0 and "already deactivated; nothing changed" in again.stdout

    result = cli("users", "activate", "alice@example.com")
    assert result.exit_code == 0, result.output
    assert verify(client, verifier, value)["code"] == "valid"
    assert session.get("/settings/account").status_code == 302  # the old session stays ended
    assert login(app)[1] == 302
    [off], [on] = events("user.deactivated"), events("user.activated")
    assert off.user_agent == on.user_agent == "keyvault-cli"
    assert "by_admin" not in off.details


@pytest.mark.parametrize("command", [
    ["users", "set-admin"], ["users", "set-admin", "--revoke"], ["users", "deactivate"],
    ["users", "activate"],
])
def test_users_commands_refuse_an_unknown_email(cli, user, command):
    """An email nobody has: a clear message and exit status 1, nothing logged."""
    before = len(events("user.deactivated") + events("user.admin_granted"))
    result = cli(*command[:2], "nobody@example.com", *command[2:])
    assert result.exit_code == 1
    assert "There is no account with the email nobody@example.com." in result.stderr
    assert len(events("user.deactivated") + events("user.admin_granted")) == before


# ---------------------------------------------------------------- keys


def test_keys_create_prints_the_key_alone_on_stdout(cli, user):
    """stdout is exactly one line, the key, so `KEY=$(keyvault keys create …)` works."""
    before = clock.now()
    result = cli("keys", "create", "alice@example.com", "--label", "deploy",
                 "--scope", "user:read", "--scope", "key:verify", "--expires-in-days", "7")
    after = clock.now()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and result.stdout == lines[0] + "\n"
    value = lines[0]
    assert tokens.is_well_formed(value)
    assert value not in result.stderr

    key = fresh(ApiKey, label="deploy")
    assert key.public_id in result.stderr and key.mask in result.stderr
    assert key.user_id == user.id
    assert key.scopes == ["user:read", "key:verify"]
    assert before + timedelta(days=7) <= key.expires_at <= after + timedelta(days=7)
    assert key.digest == tokens.digest_of(value, TEST_PEPPER.encode())
    verdict = service.verify_key(value)
    assert verdict.code == "valid" and verdict.user_email == "alice@example.com"
    event = fresh(SecurityEvent, event="key.created")
    assert event.key_id == key.id and event.user_agent == "keyvault-cli"


def test_keys_create_with_the_explicit_full_access_scope(cli, user):
    """`--scope '*'` is how full access is asked for; without --expires-in-days it never expires."""
    result = cli("keys", "create", "alice@example.com", "--label", "everything", "--scope", "*")
    assert result.exit_code == 0, result.output
    key = fresh(ApiKey, label="everything")
    assert key.scopes == ["*"]
    assert key.expires_at is None


@pytest.mark.parametrize(("args", "message"), [
    (["nobody@example.com", "--label", "x", "--scope", "*"],
     "There is no account with the email nobody@example.com."),
    (["alice@example.com", "--label", "x", "--scope", "nope:read"],
     "There is no scope called “nope:read”. The scopes are: *, personal_api_key:read, "
     "personal_api_key:write, user:read, key:verify, metrics:read, organization:read, organization:write, "
     "webhook:read, webhook:write."),
    (["alice@example.com", "--label", "   ", "--scope", "*"], "Give the key a label"),
    (["alice@example.com", "--label", "x" * 41, "--scope", "*"],
     "Keep the label to 40 characters or fewer; this one has 41."),
    (["alice@example.com", "--label", "x", "--scope", "*", "--expires-in-days", "0"],
     "--expires-in-days"),
    (["alice@example.com", "--scope", "*"], "Missing option '--label'"),
    (["alice@example.com", "--label", "x"],
     "Choose what the key may do with --scope (repeat it for more), or --scope '*' for full "
     "access. The scopes are: *, personal_api_key:read, personal_api_key:write, user:read, "
     "key:verify, metrics:read, organization:read, organization:write, webhook:read, webhook:write."),
])
def test_keys_create_refusals(cli, user, args, message):
    """Unknown users, unknown scopes and bad labels exit non-zero, print no key, make no key."""
    result = cli("keys", "create", *args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert result.stdout == ""
    db.session.expire_all()
    assert db.session.scalars(select(ApiKey)).all() == []


def test_keys_create_respects_the_limit(make_app, make_user):
    """The per-user limit applies on the command line too."""
    app = make_app(KEYVAULT_MAX_KEYS_PER_USER=1)
    make_user("erin@example.com")
    runner = app.test_cli_runner()
    with app.app_context():  # with_appcontext reuses whichever app context is current
        first = runner.invoke(args=["keys", "create", "erin@example.com", "--label", "a",
                                    "--scope", "user:read"])
        result = runner.invoke(args=["keys", "create", "erin@example.com", "--label", "b",
                                     "--scope", "user:read"])
    assert first.exit_code == 0, first.output
    assert result.exit_code != 0
    assert "You already have 1 active keys" in result.stderr
    assert result.stdout == ""


def test_keys_list_shows_masks_never_values(cli, user, make_key):
    """The list names each key by id, label and mask, and shows no value."""
    live, live_value = make_key(user, label="live one")
    gone, gone_value = make_key(user, label="gone one")
    service.revoke_key(user, gone.public_id, service.Origin())
    result = cli("keys", "list", "alice@example.com")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "LABEL", "KEY", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {live.public_id, gone.public_id}
    assert "live one" in rows[live.public_id] and live.mask in rows[live.public_id]
    assert "active" in rows[live.public_id]
    assert "revoked" in rows[gone.public_id]
    for value in (live_value, gone_value):
        assert value not in result.output and value[3:43] not in result.output


def test_keys_list_for_an_unknown_user_fails(cli):
    """Listing the keys of an email nobody has exits non-zero and says so."""
    result = cli("keys", "list", "nobody@example.com")
    assert result.exit_code != 0
    assert "There is no account with the email nobody@example.com." in result.stderr


def test_keys_revoke(cli, user, make_key):
    """`keys revoke ID` stops the key at once and logs who it belonged to."""
    key, value = make_key(user, label="to revoke")
    result = cli("keys", "revoke", key.public_id)
    assert result.exit_code == 0, result.output
    assert key.public_id in result.stdout and "alice@example.com" in result.stdout
    assert value not in result.output
    assert service.verify_key(value).code == "revoked"
    event = fresh(SecurityEvent, event="key.revoked")
    assert event.user_id == user.id and event.user_agent == "keyvault-cli"


def test_keys_revoke_twice_says_so_and_fails(cli, user, make_key):
    """Revoking a key that is already revoked says so, exits non-zero and logs nothing more."""
    key, _ = make_key(user, label="twice")
    assert cli("keys", "revoke", key.public_id).exit_code == 0
    result = cli("keys", "revoke", key.public_id)
    assert result.exit_code == 1
    assert f"Key {key.public_id} (twice, {key.mask}) was already revoked on " in result.stderr
    assert "nothing changed" in result.stderr
    assert "Revoked" not in result.stdout
    assert len(events("key.revoked")) == 1


def test_keys_revoke_unknown_id_fails(cli, user, make_key):
    """An id that names no key exits non-zero with a clear message and revokes nothing."""
    _, value = make_key(user)
    result = cli("keys", "revoke", "no-such-key")
    assert result.exit_code != 0
    assert "No such API key." in result.stderr
    assert service.verify_key(value).code == "valid"


# ---------------------------------------------------------------- as a real process


def test_installed_command_shows_keyvaults_own_help_and_version(database_url):
    """`keyvault --help` lists KeyVault's commands only; `--version` is KeyVault's version."""
    shown = run_keyvault(database_url, "--help")
    assert shown.returncode == 0, shown.stderr
    commands = shown.stdout.split("Commands:")[1].split()
    assert [word for word in commands if word in ("db", "keys", "serve", "users", "run", "shell",
                                                  "routes")] == ["db", "keys", "serve", "users"]
    for flask_own in ("Flask", "python-dotenv", "--env-file", "--app", "FLASK_"):
        assert flask_own not in shown.stdout + shown.stderr
    version = run_keyvault(database_url, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"keyvault {metadata.version('keyvault')}"
    assert "Flask" not in version.stdout and "Python" not in version.stdout
    users = run_keyvault(database_url, "users", "--help")
    for command in ("create", "set-password", "set-admin", "deactivate", "activate"):
        assert f"  {command} " in users.stdout


def test_installed_command_manages_users(database_url, user):
    """The installed script resets a password from stdin and (de)activates, as operators do."""
    reset = run_keyvault(database_url, "users", "set-password", "alice@example.com",
                         "--password-stdin", stdin="reset from a shell\n")
    assert reset.returncode == 0, reset.stderr
    db.session.expire_all()
    stored = fresh(User, email="alice@example.com")
    hasher = passwords.make_hasher(**CHEAP_ARGON2)
    assert passwords.verify_password(hasher, stored.password_hash, "reset from a shell")
    off = run_keyvault(database_url, "users", "deactivate", "alice@example.com")
    assert off.returncode == 0, off.stderr
    assert fresh(User, email="alice@example.com").is_active is False
    missing = run_keyvault(database_url, "users", "activate", "nobody@example.com")
    assert missing.returncode == 1
    assert "There is no account with the email nobody@example.com." in missing.stderr


def test_installed_command_prints_only_the_key(database_url, user):
    """The installed `keyvault` script, configured by environment, prints one well-formed line."""
    created = run_keyvault(database_url, "keys", "create", "alice@example.com", "--label", "ci",
                           "--scope", "key:verify")
    assert created.returncode == 0, created.stderr
    assert len(created.stdout.splitlines()) == 1
    value = created.stdout.strip()
    assert tokens.is_well_formed(value)
    assert service.verify_key(value).code == "valid"

    listed = run_keyvault(database_url, "keys", "list", "alice@example.com")
    assert listed.returncode == 0, listed.stderr
    assert tokens.mask(value) in listed.stdout and value not in listed.stdout

    missing = run_keyvault(database_url, "keys", "revoke", "no-such-key")
    assert missing.returncode != 0
    assert "No such API key." in missing.stderr


def test_db_upgrade_on_a_brand_new_sqlite_file_reaches_head(tmp_path):
    """`keyvault db upgrade` on a file that does not exist yet creates the whole schema."""
    path = tmp_path / "brand-new.db"
    result = run_keyvault(f"sqlite:///{path}", "db", "upgrade")
    assert result.returncode == 0, result.stderr
    head = ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_current_head()
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
            tables = {row[0] for row in conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
    finally:
        engine.dispose()
    assert {"users", "api_keys", "security_events"} <= tables


def test_users_create_for_a_taken_address_refuses_before_asking_for_a_password(cli, user):
    """No prompt for a password that could not be used: the refusal comes first, for the
    address itself and for a look-alike of it (naming the account it is the mailbox of)."""
    for address in (user.email, user.email.upper(), "ａ" + user.email[1:]):
        result = cli("users", "create", address)  # no stdin: a prompt would abort instead
        assert result.exit_code == 1, result.output
        assert "Password" not in result.output and "Aborted" not in result.output
        assert "already exists" in result.output
