"""The API reference (/api/docs/) is one people can work from: a navigation entry, a curl command
and an example answer for every operation, all taken from the OpenAPI document's examples, and
the curl commands work as printed against a running server (the real `curl` binary)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import NamedTuple

import pytest
import requests

from keyvault import service
from keyvault.api.examples import EXAMPLE_KEY_ID, example_value
from keyvault.api.org_operations import EXAMPLE_INVITATION_ID, EXAMPLE_ORG_ID, EXAMPLE_SA_ID
from keyvault.api.reference import KEY_VARIABLE, URL_VARIABLE
from keyvault.api.service_operations import EXAMPLE_SERVICE_ID
from keyvault.api.webhook_operations import EXAMPLE_DELIVERY_ID, EXAMPLE_WEBHOOK_ID
from keyvault.service import key_changes
from keyvault.service.scopes import READ_KEYS

OPERATION = re.compile(r'<section class="card op" id="([^"]+)" data-testid="operation">(.*?)</section>',
                       re.S)
NAV = re.compile(r'<nav [^>]*data-testid="docs-nav">(.*?)</nav>', re.S)


def blocks(section: str, testid: str) -> list[str]:
    return [html.unescape(text) for text in
            re.findall(rf'<pre data-testid="{testid}" tabindex="0"><code>(.*?)</code></pre>', section, re.S)]


class Shown(NamedTuple):
    curl: list[str]
    answers: list[str]


def reference(page: str) -> dict[str, Shown]:
    """Operation id -> the curl commands and example answers its section shows."""
    return {op_id: Shown(blocks(section, "curl"), blocks(section, "response-example"))
            for op_id, section in OPERATION.findall(page)}


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


@pytest.fixture
def spec(client) -> dict:
    return client.get("/api/schema/").json


@pytest.fixture
def page(client) -> str:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_every_operation_is_in_the_navigation(spec, page):
    """The navigation links to every operation, in groups named after the document's tags."""
    [nav] = NAV.findall(page)
    linked = re.findall(r'href="#([^"]+)"', nav)
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert set(ids) <= set(linked)
    assert set(ids) == set(reference(page))  # and each has its section
    for tag in spec["tags"]:
        assert f"<h3>{tag['name']}</h3>" in nav


def test_every_operation_has_a_curl_command_and_an_example_answer(spec, page):
    """Each section shows a curl command for its method and path, with the example body of the
    document, and example answers whose bodies are the document's examples."""
    shown = reference(page)
    for path, method, operation in operations(spec):
        commands, answers = shown[operation["operationId"]]
        assert len(commands) == 1, operation["operationId"]
        command = commands[0]
        assert command.startswith("curl ")
        assert (path.replace("{public_id}", EXAMPLE_KEY_ID).replace("{org_id}", EXAMPLE_ORG_ID)
                .replace("{sa_id}", EXAMPLE_SA_ID).replace("{user_id}", "42")
                .replace("{invitation_id}", EXAMPLE_INVITATION_ID)
                .replace("{service_id}", EXAMPLE_SERVICE_ID)
                .replace("{webhook_id}", EXAMPLE_WEBHOOK_ID)
                .replace("{delivery_id}", EXAMPLE_DELIVERY_ID)) in command
        assert (f"-X {method.upper()}" in command) is (method != "get")
        assert (f"${KEY_VARIABLE}" in command) is bool(operation["security"])
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            [example] = body["examples"].values()
            sent = re.search(r"-d '(.*)'$", command, re.S).group(1)
            assert json.loads(sent) == example["value"]
        assert answers, operation["operationId"]
        success = min(code for code in operation["responses"] if code.startswith("2"))
        assert all(a.startswith(f"HTTP/1.1 {success} ") for a in answers)
        content = operation["responses"][success].get("content", {})
        for media, media_type in content.items():
            expected = [e["value"] for e in media_type["examples"].values()]
            bodies = [a.split("\n\n", 1)[1] for a in answers]
            if media == "application/json":
                assert [json.loads(b) for b in bodies] == expected
            else:
                assert bodies == expected


def test_key_presentation_comes_first(page):
    """Before any operation, the page says how to present a key: the Bearer header first, the
    three places in order, only the first one used."""
    presenting = page.index('id="presenting-your-key"')
    assert presenting < page.index('data-testid="operation"')
    section = page[presenting:page.index("</section>", presenting)]
    assert "Authorization: Bearer" in section
    places = [section.index(p) for p in ("Authorization: Bearer &lt;key&gt;",
                                         "<code>personal_api_key</code> field",
                                         "<code>personal_api_key</code> query parameter")]
    assert places == sorted(places)
    assert "only the first one it\n       finds" in section or "only the first one it finds" in section


# ---------------------------------------------------------------- the commands, run for real

CURL = shutil.which("curl")


class Hook(NamedTuple):
    """Ada's webhook (disabled by her) and its test delivery: what the webhooks' example ids
    stand for, and what their answers are checked against."""

    webhook: str
    secret: str
    delivery: str
    message_id: str


class World(NamedTuple):
    caller_id: str
    caller: str  # the value in $KEYVAULT_KEY: full access
    subject_id: str  # the key the examples' id stands for
    subject: str
    hook: Hook | None = None  # for the webhooks' commands


def check_verify(out: str, w: World) -> None:
    answer = json.loads(out)
    assert (answer["active"], answer["code"], answer["key_id"]) == (True, "valid", w.subject_id)


def check_list(out: str, w: World) -> None:
    ids = {key["id"] for key in json.loads(out)["results"]}
    assert ids == {w.caller_id, w.subject_id}


def check_me(out: str, w: World) -> None:
    assert json.loads(out)["email"] == "ada@example.com"


def check_current(out: str, w: World) -> None:
    assert json.loads(out)["id"] == w.caller_id


def check_get(out: str, w: World) -> None:
    assert json.loads(out)["id"] == w.subject_id


def check_create(out: str, w: World) -> None:
    key = json.loads(out)
    assert (key["label"], key["scopes"], key["value"][:3]) == ("CI deploys", [READ_KEYS], "kv_")


def check_update(out: str, w: World) -> None:
    assert json.loads(out)["label"] == "CI deploys (production)"


def check_roll(out: str, w: World) -> None:
    key = json.loads(out)
    assert key["id"] == w.subject_id and key["value"] != w.subject
    assert key["old_value_expires_at"] is not None  # the example's grace period


def check_revoke(out: str, w: World) -> None:
    assert out.startswith("HTTP/1.1 204")


def check_forward_auth(out: str, w: World) -> None:
    status, *lines = out.split("\n\n", 1)[0].split("\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    assert status.startswith("HTTP/1.1 200")
    assert (headers["x-keyvault-key-id"], headers["x-keyvault-user-email"]) == (
        w.caller_id, "ada@example.com")


def check_log(out: str, w: World) -> None:
    assert {"key.created"} <= {event["event"] for event in json.loads(out)["results"]}


def check_schema(out: str, w: World) -> None:
    assert json.loads(out)["openapi"] == "3.1.0"


def check_docs(out: str, w: World) -> None:
    assert 'id="presenting-your-key"' in out


def check_report(out: str, w: World) -> None:
    # The suite's server trusts no reporter (no KEYVAULT_SECRET_SCANNING_KEYS): the intake is
    # off, and says so as a problem; signed reports: tests/test_secret_scanning.py.
    assert json.loads(out)["status"] == 404


RUNS: list[tuple[str, Callable[[str, World], None]]] = [
    ("verifyKey", check_verify), ("listKeys", check_list), ("getCurrentUser", check_me),
    ("getCurrentKey", check_current), ("getKey", check_get), ("createKey", check_create),
    ("updateKey", check_update), ("rollKey", check_roll), ("revokeKey", check_revoke),
    ("forwardAuth", check_forward_auth), ("listSecurityEvents", check_log),
    ("getSchema", check_schema), ("getDocs", check_docs), ("reportLeakedKeys", check_report),
]


class Team(NamedTuple):
    """Ada's organisation, its service account, that one's key, a member (Lin), a pending
    invitation, and a token inviting Ada to another organisation."""

    org: str
    sa: str
    sa_key: str
    member: int
    invitation: str
    token: str


def build_team(ada, member_email: str = "lin@example.com") -> Team:
    origin = service.Origin("127.0.0.1", "pytest")
    orgs = service.organizations
    grace = service.sign_up(member_email, "correct horse battery", origin)
    org = orgs.create_organization(ada, "Acme platform team", origin).organization
    orgs.add_member(org, grace, "member", origin)
    sa = service.service_accounts.create_service_account(ada, org.public_id, origin,
                                                         name="deploy-bot")
    key, _ = service.service_accounts.create_account_key(ada, org.public_id, sa.public_id,
                                                         origin, label="CI deploys",
                                                         scopes=["key:verify"])
    invitation = service.invitations.invite(ada, org.public_id, "newcomer@example.com",
                                            "member", origin)
    theirs = orgs.create_organization(grace, "Grace's", origin).organization
    sent = service.invitations.invite(grace, theirs.public_id, ada.email, "admin", origin)
    return Team(org.public_id, sa.public_id, key.public_id, grace.id, invitation.public_id,
                service.invitations.token_for(sent))


def _json_is(**expected):
    def check(out: str, w) -> None:
        body = json.loads(out)
        assert {name: body[name] for name in expected} == expected, body
    return check


def _results(count: int):
    def check(out: str, w) -> None:
        assert len(json.loads(out)["results"]) == count
    return check


TEAM_RUNS: list[tuple[str, Callable]] = [
    ("listOrganizations", _results(1)), ("createOrganization", _json_is(role="owner")),
    ("getOrganization", _json_is(name="Acme platform team")),
    ("updateOrganization", lambda out, w: json.loads(out)["policy"]["max_key_lifetime_days"]
     == 90 or pytest.fail(out)),
    ("deleteOrganization", check_revoke), ("listOrganizationEvents", lambda out, w: None
     if "org.created" in out else pytest.fail(out)),
    ("listMembers", _results(2)), ("changeRole", _json_is(role="owner")),
    ("removeMember", check_revoke), ("listInvitations", _results(1)),
    ("invite", _json_is(email="grace@example.com", role="admin")),
    ("revokeInvitation", check_revoke), ("acceptInvitation", _json_is(role="admin")),
    ("listServiceAccounts", _results(1)), ("createServiceAccount", _json_is(name="deploy-bot")),
    ("getServiceAccount", _json_is(name="deploy-bot")),
    ("updateServiceAccount", _json_is(description="Ships releases to production.")),
    ("deleteServiceAccount", check_revoke), ("listServiceAccountKeys", _results(1)),
    ("createServiceAccountKey", _json_is(label="CI deploys", scopes=["key:verify"])),
    ("getServiceAccountKey", _json_is(label="CI deploys")),
    ("updateServiceAccountKey", _json_is(label="CI deploys (production)")),
    ("revokeServiceAccountKey", check_revoke),
    ("rollServiceAccountKey", lambda out, w: json.loads(out)["value"].startswith("kv_")
     or pytest.fail(out)),
]
RUNS += TEAM_RUNS
TEAM_OPERATIONS = {op_id for op_id, _ in TEAM_RUNS}
SERVICE_RUNS: list[tuple[str, Callable]] = [
    ("listServices", _results(1)), ("createService", _json_is(name="Billing", audience="billing")),
    ("getService", _json_is(name="Reports")),
    ("updateService", _json_is(description="Invoices, payments and refunds.")),
    ("deleteService", check_revoke), ("listServiceKeys", _results(1)),
    ("createServiceKey", _json_is(label="billing verify", scopes=["key:verify"])),
    ("getServiceKey", _json_is(label="reports verify")), ("revokeServiceKey", check_revoke),
    ("rollServiceKey", lambda out, w: json.loads(out)["value"].startswith("kv_")
     or pytest.fail(out)),
]
RUNS += SERVICE_RUNS
SERVICE_OPERATIONS = {op_id for op_id, _ in SERVICE_RUNS}


def build_service(ada) -> tuple[str, str, str]:
    """Ada's organisation with one service (Reports: the examples' Billing is free to create)
    and its verify key: their ids."""
    origin = service.Origin("127.0.0.1", "pytest")
    org = service.organizations.create_organization(ada, "Acme", origin).organization
    made = service.services.create_service(ada, org.public_id, origin, name="Reports",
                                           audience="reports")
    key, _ = service.services.create_service_key(ada, org.public_id, made.public_id, origin,
                                                 label="reports verify")
    return org.public_id, made.public_id, key.public_id


# The examples' receiver is https://ci.example.com, which no test can reach: the commands send
# to this machine instead (the suite's server runs in development, which allows loopback; it
# sends no webhooks, so nothing needs to listen).
EXAMPLE_HOOK_URL = "https://ci.example.com/keyvault-events"
HOOK_URL = "http://127.0.0.1:9/keyvault-events"


def build_webhook(ada) -> Hook:
    """Ada's webhook to this machine with one (test) delivery, then disabled by her."""
    hooks, origin = service.webhooks, service.Origin("127.0.0.1", "pytest")
    made = hooks.create_webhook(ada, HOOK_URL, ["key.revoked"], "Ada's receiver", origin=origin)
    delivery = hooks.send_test(ada, made.webhook.public_id)
    hooks.update_webhook(ada, made.webhook.public_id, origin=origin, enabled=False)
    return Hook(made.webhook.public_id, made.secret, delivery.public_id, delivery.message_id)


def check_webhook_created(out: str, w: World) -> None:
    hook = json.loads(out)
    assert (hook["url"], hook["events"], hook["enabled"]) == (
        HOOK_URL, ["key.revoked", "key.leaked", "key.expiring"], True), hook
    assert hook["secret"].startswith("whsec_")


def check_secret_rolled(out: str, w: World) -> None:
    hook = json.loads(out)
    assert hook["id"] == w.hook.webhook
    assert hook["secret"].startswith("whsec_") and hook["secret"] != w.hook.secret


def check_redelivered(out: str, w: World) -> None:
    delivery = json.loads(out)
    assert delivery["id"] != w.hook.delivery  # a new delivery, with the same webhook-id
    assert (delivery["message_id"], delivery["event"], delivery["state"]) == (
        w.hook.message_id, "webhook.test", "pending"), delivery


WEBHOOK_RUNS: list[tuple[str, Callable]] = [
    ("listWebhooks", _results(1)), ("createWebhook", check_webhook_created),
    ("getWebhook", _json_is(url=HOOK_URL, description="Ada's receiver", enabled=False)),
    ("updateWebhook", _json_is(enabled=True, disabled_reason=None)),
    ("deleteWebhook", check_revoke), ("rollWebhookSecret", check_secret_rolled),
    ("listWebhookDeliveries", _results(1)), ("redeliverWebhook", check_redelivered),
    ("sendWebhookTest", _json_is(event="webhook.test", state="pending", attempts=0)),
]
RUNS += WEBHOOK_RUNS
WEBHOOK_OPERATIONS = {op_id for op_id, _ in WEBHOOK_RUNS}


def check_stream(out: str, w: World) -> None:
    """The stream opened, sent the revocation it missed first, and ended at its timeout."""
    assert out.startswith("retry: 1000\n: connected\n\n"), out
    sent = [json.loads(line[len("data: "):]) for line in out.split("\n")
            if line.startswith("data: ")]
    assert [(e["key_id"], e["event"]) for e in sent] == [(w.subject_id, "revoked")], out


RUNS.append(("verifyEvents", check_stream))


def test_every_operation_is_run_below(spec):
    assert {op_id for op_id, _ in RUNS} == {o["operationId"] for _, _, o in operations(spec)}


@pytest.mark.parametrize(("operation_id", "check"), RUNS, ids=[op_id for op_id, _ in RUNS])
def test_curl_command_works_as_printed(live_server, make_user, make_key, operation_id, check):
    """The page's command, with a real key in $KEYVAULT_KEY and the real key id (and, for verify,
    the value to check) in place of the examples', gets the answer the page promises."""
    assert CURL, "curl is missing: apt-get install -y curl"
    owner = make_user("ada@example.com")
    caller_key, caller = make_key(owner, label="my laptop", scopes=["*"])
    subject_key, subject = make_key(owner, label="CI deploys", scopes=[READ_KEYS])
    world = World(caller_key.public_id, caller, subject_key.public_id, subject)
    page = requests.get(f"{live_server.url}/api/docs/", timeout=10).text
    [command] = reference(page)[operation_id].curl
    # Without KEYVAULT_BASE_URL the page cannot know the server's address (a Host header proves
    # nothing): the commands read it from $KEYVAULT_URL, as the page tells the reader to set.
    assert f'"${URL_VARIABLE}"/api/' in command or f'"${URL_VARIABLE}"\'/api/' in command
    assert "127.0.0.1" not in command
    if operation_id in TEAM_OPERATIONS:
        team = build_team(owner)
        command = (command.replace(EXAMPLE_ORG_ID, team.org).replace(EXAMPLE_SA_ID, team.sa)
                   .replace(EXAMPLE_KEY_ID, team.sa_key).replace(EXAMPLE_INVITATION_ID,
                                                                 team.invitation)
                   .replace("/members/42/", f"/members/{team.member}/")
                   .replace("Ikludj…", team.token))
    if operation_id in SERVICE_OPERATIONS:
        org, made, key = build_service(owner)
        command = (command.replace(EXAMPLE_ORG_ID, org).replace(EXAMPLE_SERVICE_ID, made)
                   .replace(EXAMPLE_KEY_ID, key))
    if operation_id in WEBHOOK_OPERATIONS:
        world = world._replace(hook=build_webhook(owner))
        command = (command.replace(EXAMPLE_WEBHOOK_ID, world.hook.webhook)
                   .replace(EXAMPLE_DELIVERY_ID, world.hook.delivery)
                   .replace(EXAMPLE_HOOK_URL, HOOK_URL))
    if operation_id == "verifyEvents":
        # The example resumes after event 42 and ends after a minute: here it resumes just
        # before the subject's revocation, and ends after a second.
        before = key_changes.latest_id()
        service.revoke_key(owner, subject_key.public_id, service.Origin("127.0.0.1", "pytest"))
        assert "'Last-Event-ID: 42'" in command and "timeout=60" in command
        command = command.replace("Last-Event-ID: 42", f"Last-Event-ID: {before}").replace(
            "timeout=60", "timeout=1")
    command = command.replace(EXAMPLE_KEY_ID, world.subject_id).replace(
        example_value("kv"), world.subject)
    run = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30,
                         env={**os.environ, KEY_VARIABLE: caller, URL_VARIABLE: live_server.url})
    assert run.returncode == 0, run.stderr
    check(run.stdout.replace("\r\n", "\n"), world)
