"""Webhooks: a key's change reaches its owner's endpoints, signed as Standard Webhooks says
(checked with the `standardwebhooks` package), at least once (retries after 500s and time-outs,
a sender killed with kill -9), never with a key value, never to a private address in production
(refused at registration and at delivery, before any connection), never following a redirect;
3 days of failures disable the endpoint and mail its owner. A real HTTP server on loopback
receives everything."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook as StandardWebhook

from keyvault import service, webhook_http
from keyvault.extensions import db
from keyvault.service import submissions, webhook_delivery
from keyvault.webhook_models import Webhook, WebhookDelivery
from tests.conftest import PROJECT_ROOT, T0, TEST_PEPPER, TEST_SECRET_KEY, send_mail

ORIGIN = service.Origin("127.0.0.1", "pytest")
# Production as operators run it: private addresses are refused there by default.
PRODUCTION = {"KEYVAULT_ENV": "production", "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY,
              "KEYVAULT_KEY_PEPPER": TEST_PEPPER}


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that records each POST and answers from `script`
    (one entry per request, the last repeated): a status, ("hang", seconds), or ("redirect",
    path). `release` ends every hang at once."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list = [204]
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                step = receiver.script[min(len(receiver.requests), len(receiver.script)) - 1]
                if isinstance(step, tuple) and step[0] == "hang":
                    receiver.release.wait(step[1])
                    step = 204
                if isinstance(step, tuple):  # a redirect
                    self.send_response(302)
                    self.send_header("Location", step[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = b"x" * 5000 if step >= 500 else b""
                self.send_response(step)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, *script):
        self.requests.clear()
        self.script = list(script) or [204]
        self.release.clear()


@pytest.fixture(scope="module")
def receiver_process():
    receiver = Receiver()
    yield receiver
    receiver.release.set()
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def receiver(receiver_process):
    receiver_process.reset()
    yield receiver_process
    receiver_process.release.set()


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def register(client, key_value: str, url: str, events=("key.created", "key.revoked"), **more):
    return client.post("/api/webhooks/", json={"url": url, "events": list(events), **more},
                       headers=bearer(key_value))


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def send(app):
    with app.app_context():
        return webhook_delivery.send_pending(app)


def test_key_events_arrive_signed_and_never_carry_a_key_value(app, client, make_user, make_key,
                                                               receiver, caplog, database_url):
    person = make_user()
    _, admin_value = make_key(person, label="webhook admin", scopes=["webhook:write"])
    created = register(client, admin_value, receiver.url, description="CI")
    assert created.status_code == 201, created.json
    assert created.headers["Cache-Control"] == "no-store"
    secret = created.json["secret"]
    assert secret.startswith("whsec_")
    shown = client.get(f"/api/webhooks/{created.json['id']}/", headers=bearer(admin_value))
    assert "secret" not in shown.json and shown.json["events"] == ["key.created", "key.revoked"]

    key, value = make_key(person, label="deploys", scopes=["user:read"])
    service.update_key(person, key.public_id, origin=ORIGIN, label="renamed")  # not asked for
    service.revoke_key(person, key.public_id, ORIGIN)
    assert send(app) == (2, 0, 0)

    verifier = StandardWebhook(secret)
    events = []
    for request in receiver.requests:
        events.append(verifier.verify(request["body"], request["headers"]))
        assert request["headers"]["webhook-signature"].startswith("v1,")
    assert [event["type"] for event in events] == ["key.created", "key.revoked"]
    assert events[0]["data"]["key"] == {**events[0]["data"]["key"], "id": key.public_id,
                                        "label": "deploys", "mask": key.mask}
    assert events[1]["data"]["key"]["revoked_at"] is not None
    assert events[0]["data"]["owner"] == {"type": "user", "id": person.id}
    tampered = dict(receiver.requests[0]["headers"])
    with pytest.raises(Exception, match="(?i)signature"):
        verifier.verify(receiver.requests[0]["body"] + b" ", tampered)
    # The key's value is nowhere: not in what was sent, stored or logged.
    stored = [row.payload + (row.response_body or "") for row in deliveries()]
    assert all(value not in text for text in stored)
    assert all(value.encode() not in request["body"] for request in receiver.requests)
    assert value not in caplog.text
    if database_url.startswith("sqlite"):
        db.session.commit()
        assert value.encode() not in Path(database_url.removeprefix("sqlite:///")).read_bytes()
    log = client.get(f"/api/webhooks/{created.json['id']}/deliveries/", headers=bearer(admin_value))
    assert [row["state"] for row in log.json["results"]] == ["sent", "sent"]
    assert all(row["status_code"] == 204 for row in log.json["results"])


def test_retries_after_a_500_and_a_time_out_keep_the_start_of_the_answer(
        app, make_user, make_key, receiver, frozen, monkeypatch):
    monkeypatch.setattr(webhook_delivery, "TIMEOUT_SECONDS", 1)
    receiver.reset(500, ("hang", 3), 204)
    person = make_user()
    created = service.webhooks.create_webhook(person, receiver.url, ["key.created"],
                                              origin=ORIGIN)
    make_key(person, label="retried")
    assert send(app) == (0, 1, 0)
    [row] = deliveries()
    assert (row.status_code, len(row.response_body)) == (500, 1024)  # 1 KiB of 5000 bytes kept
    assert row.next_attempt_at == T0 + timedelta(seconds=10)
    assert send(app) == (0, 0, 0)  # not due yet
    frozen.at = row.next_attempt_at
    assert send(app) == (0, 1, 0)
    [row] = deliveries()
    assert "timed out" in row.last_error.lower() and row.attempts == 2
    assert row.next_attempt_at == frozen.at + timedelta(seconds=20)  # doubled
    receiver.release.set()
    frozen.at = row.next_attempt_at
    assert send(app) == (1, 0, 0)
    [row] = deliveries()
    assert row.sent_at == frozen.at and row.status_code == 204 and row.attempts == 3
    ids = {request["headers"]["webhook-id"] for request in receiver.requests}
    assert len(receiver.requests) == 3 and ids == {row.message_id}  # one message, three tries
    assert created.webhook.disabled_at is None


def test_three_days_of_failures_disable_the_endpoint_and_mail_its_owner(
        app, make_user, make_key, receiver, frozen, smtp_server):
    receiver.reset(503)
    person = make_user("hooked@example.com")
    created = service.webhooks.create_webhook(person, receiver.url, ["key.created"],
                                              origin=ORIGIN)
    make_key(person, label="never heard of")
    send_mail(app)  # the key.created notice
    smtp_server.messages.clear()
    tries = 0
    while (row := deliveries()[0]).gave_up_at is None:
        frozen.at = row.next_attempt_at
        send(app)
        tries += 1
        assert tries < 100
    # 10 s, 20 s, 40 s, ... doubling to the 6-hour cap: 24 tries, the last at the 3-day mark
    assert row.gave_up_at == T0 + timedelta(days=3) and row.attempts == tries == 24
    webhook = db.session.get(Webhook, created.webhook.id)
    assert webhook.disabled_at == row.gave_up_at and "3 days" in webhook.disabled_reason
    send_mail(app)
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "hooked@example.com" and "turned off" in message["Subject"]
    assert "answered 503" in message.get_body(("plain",)).get_content()
    make_key(person, label="after")  # a disabled endpoint is sent nothing more
    assert len(deliveries()) == 1


def test_a_redirect_is_not_followed(app, make_user, make_key, receiver):
    receiver.reset(("redirect", "/elsewhere"))
    person = make_user()
    service.webhooks.create_webhook(person, receiver.url, ["key.created"], origin=ORIGIN)
    make_key(person)
    assert send(app) == (0, 1, 0)
    [row] = deliveries()
    assert row.status_code == 302 and "not followed" in row.last_error
    assert [request["path"] for request in receiver.requests] == ["/hook"]


@pytest.fixture
def silent_port():
    """A listening socket that must never see a connection; yields its port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        yield listener.getsockname()[1]
        with pytest.raises(BlockingIOError):
            listener.accept()


@pytest.mark.parametrize(("host", "reason"), [
    ("10.0.0.1", "private"), ("169.254.169.254", "metadata"), ("[::1]", "loopback"),
    ("localhost", "loopback"), ("[fd00:ec2::254]", "metadata"), ("[::ffff:127.0.0.1]", "loopback"),
])
def test_production_refuses_private_addresses_at_registration(app_with, make_user, make_key,
                                                              silent_port, host, reason):
    production = app_with(**PRODUCTION)
    with production.app_context():
        _, value = make_key(make_user(), scopes=["webhook:write"])
        answer = register(production.test_client(), value, f"https://{host}:{silent_port}/hook")
    assert answer.status_code == 400
    assert answer.content_type == "application/problem+json"
    assert reason in answer.json["detail"] and answer.json["field"] == "url"


def test_production_takes_https_only_and_checks_again_at_delivery(app, app_with, make_user,
                                                                  make_key, silent_port):
    """An endpoint registered while private addresses were allowed is refused at delivery
    once they are not, before any connection (the silent socket sees none)."""
    person = make_user()
    service.webhooks.create_webhook(person, f"https://127.0.0.1:{silent_port}/hook",
                                    ["key.created"], origin=ORIGIN)
    make_key(person)
    production = app_with(**PRODUCTION)
    with production.app_context():
        _, value = make_key(make_user(), scopes=["webhook:write"])
        refused = register(production.test_client(), value, "http://hooks.example.com/")
        assert refused.status_code == 400 and "https" in refused.json["detail"]
    assert send(production) == (0, 1, 0)
    [row] = deliveries()
    assert "loopback" in row.last_error and row.status_code is None


def test_the_connection_goes_to_the_address_that_was_checked(receiver):
    """A name checked once is connected to at the checked address: no second DNS answer can
    aim the request elsewhere (this name resolves nowhere else at all)."""
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]])
    target = webhook_http.check(f"http://hooks.invalid:{port}/hook", allow_private=True,
                                https_only=False, resolve=lambda *a, **k: next(answers))
    answer = webhook_http.post(target, b"{}", {"content-type": "application/json"})
    assert answer.status == 204
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.invalid:{port}"
    with pytest.raises(webhook_http.Refused, match="metadata"):
        webhook_http.check("http://any.invalid/", allow_private=True, https_only=False,
                           resolve=lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "",
                                                     ("169.254.169.254", 80))])


def test_a_sender_killed_mid_delivery_loses_nothing(app, make_user, make_key, receiver,
                                                    database_url):
    """`keyvault webhooks send-pending` is SIGKILLed while the receiver holds its request; once
    its lease runs out another sender delivers the event (at least once: the same webhook-id)."""
    receiver.reset(("hang", 30), 204)
    person = make_user()
    service.webhooks.create_webhook(person, receiver.url, ["key.created"], origin=ORIGIN)
    make_key(person)
    env = {"KEYVAULT_DATABASE_URL": database_url, "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY,
           "KEYVAULT_KEY_PEPPER": TEST_PEPPER, "KEYVAULT_WEBHOOK_LEASE_SECONDS": "2",
           "PATH": "/usr/bin:/bin"}
    sender = subprocess.Popen([sys.executable, "-m", "keyvault", "webhooks", "send-pending"],
                              cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not receiver.requests:
            assert sender.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        sender.send_signal(signal.SIGKILL)
        sender.wait(10)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    receiver.release.set()
    [row] = deliveries()
    assert row.sent_at is None and row.claimed_by is not None
    assert send(app) == (0, 0, 0), "the dead sender's lease still holds the delivery"
    time.sleep(2.1)
    assert send(app) == (1, 0, 0)
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert send(app) == (0, 0, 0)


def test_expiry_events_go_once_per_threshold(app, make_user, make_key, receiver, frozen):
    person = make_user()
    service.webhooks.create_webhook(person, receiver.url, ["key.expiring", "key.expired"],
                                    origin=ORIGIN)
    make_key(person, label="short", expires_at=T0 + timedelta(days=3))
    assert webhook_delivery.queue_expiry_events() == 1
    assert webhook_delivery.queue_expiry_events() == 0  # once per threshold
    frozen.at = T0 + timedelta(days=2, hours=1)
    assert webhook_delivery.queue_expiry_events() == 1  # the 1-day one
    frozen.at = T0 + timedelta(days=3, minutes=10)
    assert webhook_delivery.queue_expiry_events() == 1
    assert webhook_delivery.queue_expiry_events() == 0
    assert [row.event for row in deliveries()] == ["key.expiring", "key.expiring", "key.expired"]


def test_organisation_endpoints_hear_of_its_service_accounts_keys(app, client, make_user,
                                                                  make_key, receiver):
    owner, member = make_user(), make_user()
    organization = service.organizations.create_organization(owner, "Acme", ORIGIN).organization
    service.organizations.add_member(organization, member, "member", ORIGIN)
    _, owner_value = make_key(owner, scopes=["webhook:write"])
    made = register(client, owner_value, receiver.url, events=["key.created"],
                    organization_id=organization.public_id)
    assert made.status_code == 201 and made.json["organization_id"] == organization.public_id
    _, member_value = make_key(member, scopes=["webhook:write"])
    assert register(client, member_value, receiver.url,
                    organization_id=organization.public_id).status_code in (403, 404)
    assert client.get(f"/api/webhooks/{made.json['id']}/",
                      headers=bearer(member_value)).status_code == 404
    account = service.service_accounts.create_service_account(
        owner, organization.public_id, ORIGIN, name="deploy-bot")
    service.service_accounts.create_account_key(
        owner, organization.public_id, account.public_id, ORIGIN, label="bot key",
        scopes=["user:read"])
    make_key(owner, label="personal")  # the owner's own key: not the organisation's endpoint
    assert send(app).sent == 1
    body = json.loads(receiver.requests[0]["body"])
    assert body["data"]["owner"]["type"] == "service_account"
    assert body["data"]["key"]["label"] == "bot key"


def test_the_api_rolls_redelivers_tests_and_refuses_bad_input(app, client, make_user, make_key,
                                                              receiver):
    person = make_user()
    _, value = make_key(person, scopes=["webhook:write"])
    _, reader = make_key(person, scopes=["webhook:read"])
    assert register(client, reader, receiver.url).status_code == 403
    for body, field in (({"url": receiver.url, "events": []}, "events"),
                        ({"url": receiver.url, "events": ["key.nope"]}, "events"),
                        ({"url": "ftp://example.com/", "events": ["key.created"]}, "url"),
                        ({"url": receiver.url, "events": ["key.created"], "colour": 1}, "colour")):
        answer = client.post("/api/webhooks/", json=body, headers=bearer(value))
        assert (answer.status_code, answer.json["field"]) == (400, field), answer.json
    hook = register(client, value, receiver.url).json
    path = f"/api/webhooks/{hook['id']}/"
    rolled = client.post(path + "roll_secret/", headers=bearer(value)).json
    assert rolled["secret"] != hook["secret"]
    queued = client.post(path + "test/", headers=bearer(value))
    assert queued.status_code == 202 and queued.json["event"] == "webhook.test"
    assert send(app).sent == 1
    StandardWebhook(rolled["secret"]).verify(receiver.requests[0]["body"],
                                             receiver.requests[0]["headers"])
    again = client.post(f"{path}deliveries/{queued.json['id']}/redeliver/", headers=bearer(value))
    assert again.status_code == 202 and again.json["message_id"] == queued.json["message_id"]
    assert send(app).sent == 1
    off = client.patch(path, json={"enabled": False}, headers=bearer(value))
    assert off.json["enabled"] is False
    listed = client.get("/api/webhooks/", headers=bearer(reader)).json["results"]
    assert [row["id"] for row in listed] == [hook["id"]]
    other = make_key(make_user(), scopes=["*"])[1]
    assert client.delete(path, headers=bearer(other)).status_code == 404
    assert client.delete(path, headers=bearer(value)).status_code == 204
    assert client.get(path, headers=bearer(value)).status_code == 404


def test_the_pages_show_the_secret_once_and_the_delivery_log(app, client, auth, user, receiver):
    auth.login()
    page = client.get("/settings/webhooks").get_data(as_text=True)
    token, once = hidden(page, "csrf_token"), hidden(page, "once")
    made = client.post("/settings/webhooks", data={"url": receiver.url, "events": "key.created",
                                                   "csrf_token": token, "once": once})
    html = made.get_data(as_text=True)
    assert made.status_code == 200 and "whsec_" in html
    assert made.headers["Cache-Control"].startswith("no-store")
    hook = db.session.scalar(select(Webhook).where(Webhook.user_id == user.id))
    client.post(f"/settings/webhooks/{hook.public_id}/test", data={"csrf_token": token})
    send(app)
    shown = client.get(f"/settings/webhooks/{hook.public_id}").get_data(as_text=True)
    assert "webhook.test" in shown and "204" in shown and "whsec_" not in shown
    refused = client.post("/settings/webhooks", data={"url": "nope", "csrf_token": token,
                                                      "once": submissions.new_token()})
    assert refused.status_code == 400 and "https URL" in refused.get_data(as_text=True)


def hidden(page: str, name: str) -> str:
    """The value of a form's hidden field `name` in an HTML page."""
    return page.split(f'name="{name}" value="')[1].split('"')[0]


def test_the_forms_that_show_a_secret_act_once(app, client, auth, user, receiver):
    """A reload, Back or double click of the add or roll form does not act again (DESIGN §3):
    a second roll would push the secret the receiver still uses out of its grace period."""
    auth.login()
    page = client.get("/settings/webhooks").get_data(as_text=True)
    form = {"url": receiver.url, "events": "key.created", "csrf_token": hidden(page, "csrf_token"),
            "once": hidden(page, "once")}
    assert client.post("/settings/webhooks", data=form).status_code == 200
    again = client.post("/settings/webhooks", data=form)
    assert again.status_code == 303 and "whsec_" not in again.get_data(as_text=True)
    assert "already submitted" in client.get(again.headers["Location"]).get_data(as_text=True)
    hooks = db.session.scalars(select(Webhook).where(Webhook.user_id == user.id)).all()
    assert len(hooks) == 1
    hook = hooks[0]
    original = hook.secret_encrypted
    shown = client.get(f"/settings/webhooks/{hook.public_id}").get_data(as_text=True)
    roll = {"grace_period_seconds": "86400", "csrf_token": form["csrf_token"],
            "once": hidden(shown, "once")}
    first = client.post(f"/settings/webhooks/{hook.public_id}/roll", data=roll)
    assert first.status_code == 200 and "whsec_" in first.get_data(as_text=True)
    second = client.post(f"/settings/webhooks/{hook.public_id}/roll", data=roll)
    assert second.status_code == 303 and "whsec_" not in second.get_data(as_text=True)
    assert "already submitted" in client.get(second.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Webhook, hook.id).previous_secret_encrypted == original  # still signs
    assert [event.event for event in logged(user.id)] == ["webhook.created",
                                                          "webhook.secret_rolled"]
    stale = client.post(f"/settings/webhooks/{hook.public_id}/roll",
                        data={**roll, "once": ""})  # a page without the token: refused too
    assert stale.status_code == 303
    assert "out of date" in client.get(stale.headers["Location"]).get_data(as_text=True)


def signed_by(request: dict, secret: str) -> bool:
    """Does one of the request's `webhook-signature` signatures come from `secret`? (Computed
    with the standardwebhooks package, whatever the delivery's timestamp.)"""
    headers = request["headers"]
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    expected = StandardWebhook(secret).sign(headers["webhook-id"], at, request["body"])
    return expected in headers["webhook-signature"].split(" ")


def test_a_roll_with_a_grace_period_signs_with_both_secrets_until_it_ends(
        app, client, make_user, make_key, receiver, monkeypatch):
    from keyvault import clock

    _, value = make_key(make_user(), scopes=["webhook:write"])
    hook = register(client, value, receiver.url).json
    path = f"/api/webhooks/{hook['id']}/"
    assert hook["previous_secret_expires_at"] is None
    for grace in (-1, 604801, "soon", True, 1.5):
        refused = client.post(path + "roll_secret/", json={"grace_period_seconds": grace},
                              headers=bearer(value))
        assert (refused.status_code, refused.json["field"]) == (400, "grace_period_seconds")
    client.post(path + "test/", headers=bearer(value))
    assert send(app).sent == 1
    StandardWebhook(hook["secret"]).verify(receiver.requests[0]["body"],  # nothing was rolled
                                           receiver.requests[0]["headers"])

    rolled = client.post(path + "roll_secret/", json={"grace_period_seconds": 3600},
                         headers=bearer(value))
    assert rolled.status_code == 200 and rolled.headers["Cache-Control"].startswith("no-store")
    expires = datetime.fromisoformat(rolled.json["previous_secret_expires_at"])
    assert timedelta(seconds=3590) < expires - datetime.now(UTC) <= timedelta(seconds=3600)
    receiver.reset()
    client.post(path + "test/", headers=bearer(value))
    assert send(app).sent == 1
    [during] = receiver.requests
    assert len(during["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], rolled.json["secret"]):  # a receiver with either accepts it
        StandardWebhook(secret).verify(during["body"], during["headers"])

    later = datetime.now(UTC) + timedelta(seconds=3601)  # the grace period is over
    monkeypatch.setattr(clock, "now", lambda: later)
    assert client.get(path, headers=bearer(value)).json["previous_secret_expires_at"] is None
    receiver.reset()
    client.post(path + "test/", headers=bearer(value))
    assert send(app).sent == 1
    [after] = receiver.requests
    assert signed_by(after, rolled.json["secret"]) and not signed_by(after, hook["secret"])
    assert " " not in after["headers"]["webhook-signature"]

    again = client.post(path + "roll_secret/", headers=bearer(value)).json  # no body: at once
    assert again["previous_secret_expires_at"] is None
    receiver.reset()
    client.post(path + "test/", headers=bearer(value))
    send(app)
    assert signed_by(receiver.requests[0], again["secret"])
    assert not signed_by(receiver.requests[0], rolled.json["secret"])


def test_a_roll_inside_a_grace_period_keeps_two_secrets_at_most(app, client, make_user,
                                                                make_key, receiver):
    _, value = make_key(make_user(), scopes=["webhook:write"])
    first = register(client, value, receiver.url).json
    path = f"/api/webhooks/{first['id']}/"
    second = client.post(path + "roll_secret/", json={"grace_period_seconds": 3600},
                         headers=bearer(value)).json
    third = client.post(path + "roll_secret/", json={"grace_period_seconds": 86400},
                        headers=bearer(value)).json
    client.post(path + "test/", headers=bearer(value))
    send(app)
    [request] = receiver.requests
    assert [signed_by(request, hook["secret"]) for hook in (first, second, third)] == [
        False, True, True]


def logged(user_id: int) -> list:
    from keyvault.models import SecurityEvent

    db.session.expire_all()
    return list(db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.user_id == user_id, SecurityEvent.event.like("webhook.%"))
        .order_by(SecurityEvent.id)))


def test_every_change_to_an_endpoint_is_in_its_owners_security_log(app, client, auth, make_user,
                                                                     make_key, receiver):
    """Who pointed an endpoint where, turned it off, rolled or removed it: in the log, with the
    API key that did it; the log names the URL's host, never its path or query (a receiver's
    token may be there)."""
    person = make_user()
    _, value = make_key(person, label="deployer", scopes=["webhook:write"])
    token_url = receiver.url + "?token=receiver-s3cret"
    hook = register(client, value, token_url, events=["key.created"]).json
    path = f"/api/webhooks/{hook['id']}/"
    host = receiver.url.split("/")[2]
    assert client.patch(path, json={"url": token_url}, headers=bearer(value)).status_code == 200
    assert client.patch(path, json={"url": "http://localhost:9/k?token=other-s3cret",
                                    "events": ["key.created", "key.revoked"]},
                        headers=bearer(value)).status_code == 200
    client.patch(path, json={"enabled": False}, headers=bearer(value))
    client.patch(path, json={"enabled": False}, headers=bearer(value))  # already off: no change
    client.post(path + "roll_secret/", json={"grace_period_seconds": 86400},
                headers=bearer(value))
    assert client.delete(path, headers=bearer(value)).status_code == 204

    events = logged(person.id)
    assert [event.event for event in events] == [
        "webhook.created", "webhook.updated", "webhook.updated", "webhook.secret_rolled",
        "webhook.deleted"]
    assert all(event.actor_label == "deployer" and event.details["webhook"] == hook["id"]
               for event in events)
    assert events[0].details["host"] == host
    assert events[1].details["host_from"] == host
    assert events[1].details["host_to"] == "localhost:9"
    assert events[1].details["events_added"] == ["key.revoked"]
    assert events[2].details["enabled"] is False
    assert events[3].details["grace_period_seconds"] == 86400
    texts = [service.describe(event) for event in events]
    assert texts[1].title == "Webhook changed"
    assert f"Now sends to localhost:9 instead of {host}." in texts[1].summary
    assert "Events added: key.revoked." in texts[1].summary
    assert texts[2].summary.endswith("Turned off.")
    assert "The old secret signs too for 1 day." in texts[3].summary

    everything = json.dumps([[e.details, e.user_agent, e.ip_address] for e in events])
    assert "s3cret" not in everything and "token=" not in everything
    auth.login(person.email)
    shown = client.get("/settings/security-log").get_data(as_text=True)
    assert "Webhook removed" in shown and "Webhook signing secret rolled" in shown
    assert "s3cret" not in shown


def test_an_organisations_endpoint_changes_are_in_its_log(app, client, make_user, make_key,
                                                           receiver):
    owner = make_user()
    organization = service.organizations.create_organization(owner, "Acme", ORIGIN).organization
    _, value = make_key(owner, scopes=["webhook:write"])
    hook = register(client, value, receiver.url, organization_id=organization.public_id).json
    client.post(f"/api/webhooks/{hook['id']}/roll_secret/", headers=bearer(value))
    page = service.organizations.page_organization_events(organization.id, 10, None)
    assert [event.event for event in page.results][:2] == ["webhook.secret_rolled",
                                                           "webhook.created"]
    assert all(event.user_id == owner.id for event in page.results[:2])


def test_the_page_rolls_with_a_grace_period_and_refuses_a_bad_one(app, client, auth, user,
                                                                   receiver):
    auth.login()
    page = client.get("/settings/webhooks").get_data(as_text=True)
    token = hidden(page, "csrf_token")
    client.post("/settings/webhooks", data={"url": receiver.url, "events": "key.created",
                                            "csrf_token": token, "once": hidden(page, "once")})
    hook = db.session.scalar(select(Webhook).where(Webhook.user_id == user.id))
    sealed = hook.secret_encrypted
    once = hidden(client.get(f"/settings/webhooks/{hook.public_id}").get_data(as_text=True),
                  "once")
    # Not whole seconds; "²" and "٣" are digits to str.isdigit, not to int; past int's limit.
    for grace in ("forever", "²", "٣", "1" * 5000, "-5", "604801"):
        bad = client.post(f"/settings/webhooks/{hook.public_id}/roll",
                          data={"grace_period_seconds": grace, "csrf_token": token,
                                "once": once})
        assert bad.status_code == 303, grace
        db.session.expire_all()
        assert db.session.get(Webhook, hook.id).secret_encrypted == sealed  # nothing rolled
        shown = client.get(bad.headers["Location"]).get_data(as_text=True)
        assert "grace period" in shown and 'data-testid="previous-secret"' not in shown
    nobody = client.post("/settings/webhooks/AAAAAAAAAAAAAAAA/roll",  # no such endpoint: 404,
                         data={"grace_period_seconds": "forever", "csrf_token": token,
                               "once": once})  # whatever the grace says
    assert nobody.status_code == 404
    rolled = client.post(f"/settings/webhooks/{hook.public_id}/roll",
                         data={"grace_period_seconds": "3600", "csrf_token": token,
                               "once": once})  # refusals left the form's token unspent
    html = rolled.get_data(as_text=True)
    assert rolled.status_code == 200 and rolled.headers["Cache-Control"].startswith("no-store")
    assert "whsec_" in html and 'data-testid="previous-secret"' in html
    assert [event.event for event in logged(user.id)] == ["webhook.created",
                                                          "webhook.secret_rolled"]
