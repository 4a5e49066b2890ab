"""The `keyvault` command line as scripts use it: --json on every listing and on `keys create`,
times in ISO 8601 UTC, `keyvault db` showing an operator's commands only, help on every option,
and the exit-status table (0 done, 1 refused, 2 usage) the README documents."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import click
import pytest
from sqlalchemy import select, update

from keyvault import clock, service, tokens
from keyvault.cli import cli as keyvault_cli
from keyvault.extensions import db
from keyvault.models import ApiKey, User
from tests.test_cli import run_keyvault

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
KEY_FIELDS = {"id", "label", "description", "mask_value", "scopes", "status", "created_at",
              "last_used_at", "expires_at", "revoked_at", "last_rolled_at",
              "old_value_expires_at", "allowed_ips", "services", "organizations", "rate_limit",
              "usage_limit"}


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args, stdin=None: runner.invoke(args=list(args), input=stdin)


def times_of(obj: dict) -> list[str]:
    return [value for name, value in obj.items() if name.endswith("_at") and value is not None]


# ---------------------------------------------------------------- --json


def test_keys_list_json_is_the_apis_key_objects(cli, client, user, make_key):
    """`keys list EMAIL --json`: a JSON list of exactly what the API answers for each key (the
    same fields, the same ISO 8601 UTC times), revoked keys included, no values."""
    live, live_value = make_key(user, label="live one", scopes=["*"])
    gone, gone_value = make_key(user, label="gone one", scopes=["user:read"],
                                expires_at=clock.now() + timedelta(days=3))
    service.revoke_key(user, gone.public_id, service.Origin())
    result = cli("keys", "list", "alice@example.com", "--json")
    assert result.exit_code == 0, result.output
    listed = {key["id"]: key for key in json.loads(result.stdout)}
    assert set(listed) == {live.public_id, gone.public_id}
    for key in listed.values():
        assert set(key) == KEY_FIELDS
        assert all(ISO_UTC.match(moment) for moment in times_of(key))
    assert (listed[gone.public_id]["status"], listed[live.public_id]["status"]) == ("revoked",
                                                                                     "active")
    assert listed[gone.public_id]["expires_at"] and listed[gone.public_id]["revoked_at"]
    api = client.get(f"/api/personal_api_keys/{gone.public_id}/",
                     headers={"Authorization": f"Bearer {live_value}"}).json
    assert listed[gone.public_id] == api
    for value in (live_value, gone_value):
        assert value not in result.output


def test_keys_list_json_of_a_user_without_keys_is_an_empty_list(cli, user):
    result = cli("keys", "list", "alice@example.com", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_keys_create_json_holds_the_value(cli, user):
    """`keys create … --json`: the API's create answer, one JSON document on stdout with the
    value inside; the value works."""
    result = cli("keys", "create", "alice@example.com", "--label", "ci", "--scope", "key:verify",
                 "--expires-in-days", "30", "--description", "for the CI runner", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert set(created) == KEY_FIELDS | {"value"}
    assert (created["label"], created["scopes"], created["description"]) == (
        "ci", ["key:verify"], "for the CI runner")
    assert tokens.is_well_formed(created["value"])
    assert created["mask_value"] == tokens.mask(created["value"])
    assert ISO_UTC.match(created["expires_at"]) and ISO_UTC.match(created["created_at"])
    assert service.verify_key(created["value"]).public_id == created["id"]
    assert created["value"] not in result.stderr


def test_installed_keys_list_json_parses(database_url, user, make_key):
    """As a script runs it: the installed `keyvault keys list EMAIL --json` prints JSON only."""
    key, _ = make_key(user, label="from a script")
    listed = run_keyvault(database_url, "keys", "list", "alice@example.com", "--json")
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)
    assert (shown["id"], shown["label"], shown["mask_value"]) == (key.public_id, "from a script",
                                                                  key.mask)


def test_users_doubles_json(cli, make_user):
    """Accounts that share a mailbox (made before KeyVault compared them), as JSON groups."""
    first, second = make_user("dana@example.com"), make_user("dan@example.com")
    make_user("solo@example.com")
    db.session.execute(update(User).where(User.id == second.id)
                       .values(mailbox_key=first.mailbox_key))
    db.session.commit()
    result = cli("users", "doubles", "--json")
    assert result.exit_code == 0, result.output
    [group] = json.loads(result.stdout)
    assert [u["email"] for u in group] == ["dana@example.com", "dan@example.com"]
    assert set(group[0]) == {"id", "email", "is_active", "is_admin", "created_at",
                             "last_login_at"}
    assert ISO_UTC.match(group[0]["created_at"]) and group[0]["last_login_at"] is None
    none = cli("users", "doubles", "--json")
    assert none.exit_code == 0


def test_users_doubles_json_when_there_are_none(cli, user):
    result = cli("users", "doubles", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_keys_scan_json(cli, user, make_key, tmp_path):
    """Each key found: where, mask, verdict code, live or not; exit 1 while one is live."""
    live_key, live = make_key(user, label="leaked")
    gone_key, gone = make_key(user, label="old")
    service.revoke_key(user, gone_key.public_id, service.Origin())
    env = tmp_path / ".env"
    env.write_text(f"A={live}\nB=nothing\nC={gone}\n")
    result = cli("keys", "scan", str(env), "--json")
    assert result.exit_code == 1, result.output
    found = json.loads(result.stdout)
    assert [(f["where"], f["code"], f["live"], f["key_id"]) for f in found] == [
        (f"{env}:1", "valid", True, live_key.public_id),
        (f"{env}:3", "revoked", False, gone_key.public_id)]
    assert live not in result.output and gone not in result.output


def test_keys_prune_json(cli, user, make_key):
    stale, _ = make_key(user, label="stale")
    db.session.execute(update(ApiKey).where(ApiKey.id == stale.id)
                       .values(created_at=clock.now() - timedelta(days=400)))
    db.session.commit()
    make_key(user, label="fresh")
    result = cli("keys", "prune", "--unused-days", "365", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    [pruned] = json.loads(result.stdout)
    assert (pruned["id"], pruned["user_email"], pruned["status"]) == (stale.public_id,
                                                                      "alice@example.com", "active")
    assert "Would revoke 1 key(s)" in result.stderr


# ---------------------------------------------------------------- text for people, times in UTC


def test_text_listing_times_are_iso_8601_utc(cli, user, make_key):
    key, _ = make_key(user, label="dated", expires_at=clock.now() + timedelta(days=2))
    result = cli("keys", "list", "alice@example.com")
    assert result.exit_code == 0, result.output
    row = result.stdout.splitlines()[1].split()
    created, expires = row[-3], row[-1]
    assert ISO_UTC.match(created) and ISO_UTC.match(expires)
    db.session.expire_all()
    stored = db.session.scalar(select(ApiKey).filter_by(id=key.id))
    assert expires == stored.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- what `keyvault` shows


def test_db_lists_an_operators_commands_only(database_url):
    """`keyvault db --help` lists upgrade, current, backup and restore; Alembic's other commands
    are hidden but still answer."""
    shown = run_keyvault(database_url, "db", "--help")
    assert shown.returncode == 0, shown.stderr
    listed = re.findall(r"^  (\S+)", shown.stdout.split("Commands:")[1], re.M)
    assert listed == ["backup", "current", "restore", "upgrade"]
    heads = run_keyvault(database_url, "db", "heads")
    assert heads.returncode == 0, heads.stderr
    assert "(head)" in heads.stdout


def commands(group: click.Group, path=("keyvault",)):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def test_every_option_and_command_has_help():
    """`--help` explains every option of every command an operator sees."""
    missing = [f"{' '.join(path)} {param.opts[0]}"
               for path, command in commands(keyvault_cli)
               for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not param.help]
    assert missing == []
    assert all(command.help or command.short_help for _, command in commands(keyvault_cli))


LISTINGS = [("keys", "list"), ("users", "doubles"), ("keys", "scan"), ("keys", "prune")]


@pytest.mark.parametrize("listing", LISTINGS, ids=" ".join)
def test_every_listing_offers_json(listing):
    group = keyvault_cli.commands[listing[0]]
    assert "--json" in {opt for p in group.commands[listing[1]].params for opt in p.opts}


# ---------------------------------------------------------------- exit status


@pytest.mark.parametrize(("args", "status"), [
    (["keys", "list", "alice@example.com"], 0),
    (["keys", "list", "nobody@example.com"], 1),  # refused: no such account
    (["keys", "revoke", "no-such-key"], 1),
    (["keys", "create", "alice@example.com", "--label", "x", "--scope", "nope:read"], 1),
    (["keys", "list"], 2),  # usage: a missing argument
    (["keys", "list", "alice@example.com", "--frobnicate"], 2),  # an unknown option
    (["keys", "create", "alice@example.com", "--label", "x", "--scope", "*",
      "--expires-in-days", "0"], 2),  # a value out of range
    (["keys", "create", "alice@example.com", "--label", "x"], 2),  # no --scope
    (["nonsense"], 2),
])
def test_exit_status_table(database_url, user, args, status):
    """The installed command exits 0 done, 1 refused, 2 usage, the reason on stderr."""
    done = run_keyvault(database_url, *args)
    assert done.returncode == status, done.stderr
    if status:
        assert done.stderr.strip() and "Traceback" not in done.stderr


def test_a_database_that_does_not_answer_exits_3(tmp_path):
    """3, as keyvault-client's "KeyVault unreachable": one line naming the cause, no traceback."""
    done = run_keyvault("postgresql+psycopg://keyvault:secret-pw@127.0.0.1:1/keyvault",
                        "keys", "list", "alice@example.com")
    assert done.returncode == 3
    assert done.stderr.startswith("Error: the database did not answer (connection failed")
    assert len(done.stderr.splitlines()) == 1
    assert "secret-pw" not in done.stderr and done.stdout == ""
