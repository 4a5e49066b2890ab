"""`keyvault orgs ...`, `keyvault service-accounts ...` and `keyvault keys create
--service-account`: ids and values alone on stdout, refusals as clear errors."""

from __future__ import annotations

from keyvault import service
from tests.conftest import verify


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_the_operator_builds_an_organisation_and_a_service_account_key(app, client, make_user,
                                                                        verifier):
    make_user("ops@example.com")
    make_user("dev@example.com")
    created = run(app, "orgs", "create", "Platform", "--owner", "ops@example.com")
    assert created.exit_code == 0, created.output
    org_id = created.stdout.strip()
    assert "\n" not in org_id and len(org_id) >= 8
    assert run(app, "orgs", "add-member", org_id, "dev@example.com", "--role", "admin"
               ).exit_code == 0
    assert "Platform" in run(app, "orgs", "list").stdout
    sa = run(app, "service-accounts", "create", org_id, "ci-bot")
    sa_id = sa.stdout.strip()
    assert sa.exit_code == 0 and sa_id in run(app, "service-accounts", "list", org_id).stdout
    made = run(app, "keys", "create", "--service-account", sa_id, "--label", "ci",
               "--scope", "key:verify")
    assert made.exit_code == 0, made.output
    value = made.stdout.strip()
    answer = verify(client, verifier, value)
    assert (answer["code"], answer["sub"]) == ("valid", f"sa_{sa_id}")
    assert run(app, "orgs", "remove-member", org_id, "dev@example.com").exit_code == 0
    last = run(app, "orgs", "remove-member", org_id, "ops@example.com")
    assert last.exit_code == 1 and "last owner" in last.stderr


def test_keys_create_needs_exactly_one_owner(app, make_user):
    make_user("ops@example.com")
    both = run(app, "keys", "create", "ops@example.com", "--service-account", "x", "--label",
               "l", "--scope", "*")
    neither = run(app, "keys", "create", "--label", "l", "--scope", "*")
    assert both.exit_code == neither.exit_code == 2
    unknown = run(app, "keys", "create", "--service-account", "nope", "--label", "l",
                  "--scope", "*")
    assert unknown.exit_code == 1 and "No service account" in unknown.stderr
    assert service.list_keys(service.find_user("ops@example.com")) == []
