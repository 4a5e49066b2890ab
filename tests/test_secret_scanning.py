"""Leaked-key intake: POST /api/secret_scanning/ in GitHub's secret scanning partner format.

Reports are signed here with a P-256 key pair made for the test; the server trusts its public
half through KEYVAULT_SECRET_SCANNING_KEYS (a file, or a URL served by a real local HTTP server).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from keyvault import service, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import FreshContextClient, bad_checksum, start_server, stop_server, verify

URL = "/api/secret_scanning/"
FOUND_AT = "https://github.com/octo/app/blob/5f2a1c0/deploy/.env"
TYPE = "keyvault_personal_api_key"


class Signer:
    """A reporter's P-256 key pair, as GitHub holds one: signs raw bodies, lists its public half."""

    def __init__(self):
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.identifier = hashlib.sha256(der).hexdigest()

    def entry(self) -> dict:
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"key_identifier": self.identifier, "key": pem.decode(), "is_current": True}

    def signature(self, body: bytes) -> str:
        return base64.b64encode(self.private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()

    def headers(self, body: bytes) -> dict:
        return {"Github-Public-Key-Identifier": self.identifier,
                "Github-Public-Key-Signature": self.signature(body)}


def document(*signers: Signer) -> bytes:
    return json.dumps({"public_keys": [s.entry() for s in signers]}).encode()


def report(*tokens_: str, url: str = FOUND_AT, source: str = "content") -> bytes:
    return json.dumps([{"token": t, "type": TYPE, "url": url, "source": source}
                       for t in tokens_]).encode()


def post(client, body: bytes, headers: dict | None = None):
    return client.post(URL, data=body, headers={"Content-Type": "application/json",
                                                **(headers or {})})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def keys_file(tmp_path, signer) -> Path:
    path = tmp_path / "public_keys.json"
    path.write_bytes(document(signer))
    return path


@pytest.fixture
def app(make_app, keys_file):
    """The app, trusting `signer` through a public_keys file."""
    app = make_app(KEYVAULT_SECRET_SCANNING_KEYS=str(keys_file))
    app.test_client_class = FreshContextClient
    with app.app_context():
        yield app


def leaked_events(key: ApiKey | None = None) -> list[SecurityEvent]:
    db.session.expire_all()
    stmt = select(SecurityEvent).where(SecurityEvent.event == "key.leaked")
    if key is not None:
        stmt = stmt.where(SecurityEvent.key_id == key.id)
    return list(db.session.scalars(stmt))


def event_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(SecurityEvent.id)))


def revoked_at(key: ApiKey):
    db.session.expire_all()
    return db.session.get(ApiKey, key.id).revoked_at


# ---------------------------------------------------------------- a genuine report


def test_a_signed_report_revokes_the_key_and_logs_where_it_was_found(
        client, signer, user, make_key, verifier):
    key, value = make_key(user, label="deploy")
    before = event_count()
    body = report(value)
    response = post(client, body, signer.headers(body))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json == [{"token_hash": sha256(value), "token_type": TYPE,
                              "label": "true_positive"}]
    assert value not in response.get_data(as_text=True)  # the hash, never the token
    assert response.headers["Cache-Control"] == "no-store"
    [event] = leaked_events(key)
    assert (event.user_id, event.key_label, event.key_mask) == (user.id, "deploy", key.mask)
    assert event.details == {"url": FOUND_AT, "source": "content", "type": TYPE}
    assert event_count() == before + 1  # the revocation is that one event, not two
    assert verify(client, verifier, value) == {"active": False, "code": "revoked"}
    text = service.describe(event)
    assert text.title == "Key revoked: found in public"
    assert text.summary == f"Revoked because it was found in public at {FOUND_AT}. Found in: content."


def test_a_signed_report_mails_the_owner(app, client, signer, user, make_key, smtp_server):
    """The owner hears of it at once: one mail through a real SMTP server naming the key, where
    it was found and that it was revoked, and never its value."""
    from tests.conftest import send_mail, text_of

    _, value = make_key(user, label="deploy")
    send_mail(app)  # the key-created notice, out of the way
    smtp_server.messages.clear()
    body = report(value)
    assert post(client, body, signer.headers(body)).status_code == 200
    send_mail(app)
    [message] = smtp_server.wait_for(1)
    assert message["To"] == user.email
    text = text_of(message)
    assert "deploy" in text and FOUND_AT in text and "revoked" in text.lower()
    assert value not in message.as_string()


def test_the_owner_reads_the_event_in_the_security_log(client, signer, user, make_key):
    _, value = make_key(user, label="deploy")
    _, reader = make_key(user, label="reader", scopes=["user:read"])
    body = report(value)
    assert post(client, body, signer.headers(body)).status_code == 200
    log = client.get("/api/users/@me/security_log/",
                     headers={"Authorization": f"Bearer {reader}"}).json["results"]
    assert log[0]["event"] == "key.leaked"
    assert log[0]["details"]["url"] == FOUND_AT
    assert FOUND_AT in log[0]["summary"]


def test_a_report_mixing_ours_theirs_and_malformed_gets_the_right_labels(
        client, signer, user, make_key, frozen, verifier):
    live, live_value = make_key(user, label="live")
    gone, gone_value = make_key(user, label="already revoked")
    service.revoke_key(user, gone.public_id, service.Origin("127.0.0.1", "pytest"))
    gone_revoked_at = revoked_at(gone)
    ending, ending_value = make_key(user, label="expires", expires_at=frozen.at + timedelta(days=1))
    frozen.at += timedelta(days=2)  # `ending` has expired: it cannot be used, so no revocation
    rolled, old_value = make_key(user, label="rolled")
    service.roll_key(user, rolled.public_id, origin=service.Origin(), grace_period_seconds=3600)
    unknown = tokens.generate("kv")  # well-formed, checksum and all, but never issued
    broken = bad_checksum(live_value)  # checksum fails
    theirs = "ghp_" + "x" * 36
    sent = [live_value, gone_value, old_value, ending_value, unknown, broken, theirs, live_value]
    before = event_count()
    body = report(*sent)
    response = post(client, body, signer.headers(body))
    assert response.status_code == 200
    assert [item["label"] for item in response.json] == [
        "true_positive", "true_positive", "true_positive", "true_positive",
        "false_positive", "false_positive", "false_positive", "true_positive"]
    assert [item["token_hash"] for item in response.json] == [sha256(t) for t in sent]
    # The live key and the rolled one (its old value still worked) are revoked, once each.
    assert {e.key_id for e in leaked_events()} == {live.id, rolled.id}
    assert event_count() == before + 2
    assert revoked_at(gone) == gone_revoked_at  # no second revoke
    assert revoked_at(ending) is None
    for value in (live_value, old_value):
        assert verify(client, verifier, value)["code"] == "revoked"


def test_a_deactivated_owners_key_is_revoked_so_reactivation_cannot_bring_it_back(
        client, signer, user, make_key):
    key, value = make_key(user)
    service.set_user_active(None, user.id, False, service.Origin())
    body = report(value)
    assert post(client, body, signer.headers(body)).json[0]["label"] == "true_positive"
    assert revoked_at(key) is not None
    assert leaked_events(key)


def test_an_empty_url_and_source_are_allowed(client, signer, user, make_key):
    key, value = make_key(user)
    body = json.dumps([{"token": value, "type": TYPE}]).encode()
    assert post(client, body, signer.headers(body)).json[0]["label"] == "true_positive"
    [event] = leaked_events(key)
    assert service.describe(event).summary == "Revoked because it was found in public."


# ---------------------------------------------------------------- forged and broken reports


@pytest.fixture
def live(user, make_key):
    key, value = make_key(user, label="live")
    return key, value


def assert_nothing_changed(key: ApiKey, events_before: int) -> None:
    assert revoked_at(key) is None
    assert event_count() == events_before


def test_an_unsigned_report_is_refused_and_changes_nothing(client, live):
    key, value = live
    before = event_count()
    response = post(client, report(value))
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert "signed" in response.json["detail"]
    assert response.headers["WWW-Authenticate"] == (
        'Signature realm="keyvault", '
        'headers="Github-Public-Key-Identifier Github-Public-Key-Signature"')
    assert_nothing_changed(key, before)


@pytest.mark.parametrize("which", ["identifier", "signature"])
def test_a_report_missing_one_signature_header_is_refused(client, signer, live, which):
    key, value = live
    before = event_count()
    body = report(value)
    headers = signer.headers(body)
    del headers[f"Github-Public-Key-{which.capitalize()}"]
    assert post(client, body, headers).status_code == 401
    assert_nothing_changed(key, before)


def test_an_unknown_key_identifier_is_refused(client, signer, live):
    key, value = live
    before = event_count()
    body = report(value)
    headers = {**signer.headers(body), "Github-Public-Key-Identifier": "f" * 64}
    response = post(client, body, headers)
    assert response.status_code == 401
    assert "no key this server trusts" in response.json["detail"]
    assert_nothing_changed(key, before)


def test_a_body_changed_after_signing_is_refused(client, signer, live, make_user, make_key):
    """A captured genuine report, replayed with another body under the same signature."""
    key, value = live
    _, other = make_key(make_user(), label="someone else's")
    before = event_count()
    signed = report(other)
    headers = signer.headers(signed)
    for changed in (report(value), signed + b" ", signed.replace(b"content", b"commit")):
        response = post(client, changed, headers)
        assert response.status_code == 401
        assert response.json["detail"] == "The signature does not match the request body."
    assert_nothing_changed(key, before)


def test_a_signature_by_a_key_the_server_does_not_trust_is_refused(client, signer, live):
    key, value = live
    before = event_count()
    body = report(value)
    forger = Signer()
    # the trusted key's identifier, the forger's signature; then the forger's own identifier
    for headers in ({**forger.headers(body), "Github-Public-Key-Identifier": signer.identifier},
                    forger.headers(body)):
        assert post(client, body, headers).status_code == 401
    assert_nothing_changed(key, before)


@pytest.mark.parametrize("signature", ["", "not base64!", base64.b64encode(b"garbage").decode(),
                                       "A" * 600])
def test_a_garbled_signature_is_refused(client, signer, live, signature):
    key, value = live
    before = event_count()
    body = report(value)
    headers = {**signer.headers(body), "Github-Public-Key-Signature": signature}
    assert post(client, body, headers).status_code == 401
    assert_nothing_changed(key, before)


@pytest.mark.parametrize(("body", "detail"), [
    (b"[{\"token\": ", "The request body is not valid JSON."),
    (b"", "Send a JSON list of matches"),
    (b'{"token": "kv_x"}', "Send a JSON list of matches"),
    (b"[]", "A report lists 1 to 1000 matches."),
    (b'["kv_x"]', "Match 1 must be an object."),
    (b'[{"type": "t"}]', "Match 1: “token” is missing."),
    (b'[{"token": 42, "type": "t"}]', "Match 1: “token” must be text."),
    (b'[{"token": "a", "type": "t"}, {"token": "b", "type": ["t"]}]',
     "Match 2: “type” must be text."),
    (json.dumps([{"token": "k" * 257, "type": "t"}]).encode(), "Match 1: “token” is too long."),
    (json.dumps([{"token": "k", "type": "t"}] * 1001).encode(),
     "A report lists 1 to 1000 matches."),
])
def test_a_signed_report_that_is_not_a_list_of_matches_is_a_400(client, signer, live, body,
                                                                 detail):
    key, _ = live
    before = event_count()
    response = post(client, body, signer.headers(body))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.json["detail"].startswith(detail)
    assert_nothing_changed(key, before)


def test_a_signed_report_that_is_not_json_is_a_415(client, signer, live):
    key, value = live
    before = event_count()
    body = report(value)
    response = client.post(URL, data=body, headers={"Content-Type": "text/plain",
                                                     **signer.headers(body)})
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"
    assert_nothing_changed(key, before)


def test_malformed_json_unsigned_is_a_401_not_a_400(client):
    """Nobody learns anything about the body's handling without a valid signature."""
    assert post(client, b"[{\"token\": ").status_code == 401


def test_a_body_over_the_limit_is_a_413(make_app, keys_file, signer):
    app = make_app(KEYVAULT_SECRET_SCANNING_KEYS=str(keys_file), KEYVAULT_MAX_BODY_BYTES="1024")
    body = report("kv_" + "x" * 49, url="https://github.com/" + "a" * 1100)
    response = post(app.test_client(), body, signer.headers(body))
    assert response.status_code == 413


def test_the_intake_is_off_without_configured_keys(make_app, signer):
    app = make_app()
    body = report(tokens.generate("kv"))
    for headers in ({}, signer.headers(body)):
        response = post(app.test_client(), body, headers)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("content", [b"not json", b'{"public_keys": "none"}',
                                     b'{"public_keys": [{"key_identifier": "a", "key": "b"}]}'])
def test_an_unreadable_keys_file_is_a_503_not_a_500(client, signer, live, keys_file, content):
    key, value = live
    before = event_count()
    keys_file.write_bytes(content)
    body = report(value)
    response = post(client, body, signer.headers(body))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    assert_nothing_changed(key, before)


def test_a_keys_file_edit_applies_at_once(client, signer, live, keys_file):
    """Rotating keys in the file needs no restart: a new key is trusted, a removed one not."""
    key, value = live
    successor = Signer()
    keys_file.write_bytes(document(successor))
    body = report(value)
    assert post(client, body, signer.headers(body)).status_code == 401
    assert post(client, body, successor.headers(body)).json[0]["label"] == "true_positive"
    assert revoked_at(key) is not None


def test_a_non_p256_key_in_the_document_is_refused(client, signer, live, keys_file):
    from cryptography.hazmat.primitives.asymmetric import rsa

    key, value = live
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key() \
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    keys_file.write_text(json.dumps({"public_keys": [
        signer.entry(), {"key_identifier": "rsa", "key": pem.decode()}]}))
    body = report(value)
    assert post(client, body, signer.headers(body)).status_code == 503
    assert revoked_at(key) is None


def test_an_old_value_past_its_grace_period_is_ours_but_not_revoked(
        client, signer, user, make_key, frozen):
    """It no longer works, so the key (whose current value did not leak) stays live."""
    key, old_value = make_key(user)
    service.roll_key(user, key.public_id, origin=service.Origin(), grace_period_seconds=60)
    frozen.at += timedelta(minutes=2)
    body = report(old_value)
    assert post(client, body, signer.headers(body)).json[0]["label"] == "true_positive"
    assert revoked_at(key) is None
    assert not leaked_events()


# ---------------------------------------------------------------- keys from a URL


class KeysServer:
    """A real HTTP server on loopback serving a public_keys document, counting its fetches."""

    def __init__(self, body: bytes):
        self.body, self.fetches = body, 0
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the standard library's name
                served.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(served.body)))
                self.end_headers()
                self.wfile.write(served.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/meta/public_keys/secret_scanning"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def keys_server(signer):
    server = KeysServer(document(signer))
    yield server
    server.close()


def test_keys_from_a_url_are_fetched_once_and_cached(make_app, keys_server, signer, user,
                                                     make_key, frozen):
    app = make_app(KEYVAULT_SECRET_SCANNING_KEYS=keys_server.url)
    client = app.test_client()
    first, first_value = make_key(user)
    _, second_value = make_key(user)
    for value in (first_value, second_value):
        body = report(value)
        assert post(client, body, signer.headers(body)).json[0]["label"] == "true_positive"
    assert keys_server.fetches == 1
    assert revoked_at(first) is not None
    frozen.at += timedelta(hours=1)  # kept for an hour, then fetched again
    body = report(tokens.generate("kv"))
    assert post(client, body, signer.headers(body)).status_code == 200
    assert keys_server.fetches == 2


def test_an_unknown_identifier_refetches_at_most_once_a_minute(make_app, keys_server, signer,
                                                               user, make_key, frozen):
    """GitHub rotates its key: the new identifier prompts a fetch, but a stream of forged
    identifiers cannot make KeyVault hammer the URL."""
    app = make_app(KEYVAULT_SECRET_SCANNING_KEYS=keys_server.url)
    client = app.test_client()
    body = report(tokens.generate("kv"))
    assert post(client, body, signer.headers(body)).status_code == 200
    successor = Signer()
    keys_server.body = document(signer, successor)
    frozen.at += timedelta(seconds=61)  # a minute after the first fetch
    forged = {**signer.headers(body), "Github-Public-Key-Identifier": "0" * 64}
    assert post(client, body, forged).status_code == 401
    assert keys_server.fetches == 2  # the unknown identifier prompted one fetch
    assert post(client, body, successor.headers(body)).status_code == 200  # it came with it
    newest = Signer()
    keys_server.body = document(signer, successor, newest)
    frozen.at += timedelta(seconds=20)  # 20 s after the last fetch: not again yet
    assert post(client, body, newest.headers(body)).status_code == 401
    assert keys_server.fetches == 2
    frozen.at += timedelta(seconds=41)
    key, value = make_key(user)
    body = report(value)
    assert post(client, body, newest.headers(body)).json[0]["label"] == "true_positive"
    assert keys_server.fetches == 3
    assert revoked_at(key) is not None


def test_an_unreachable_keys_url_is_a_503_and_changes_nothing(make_app, live):
    key, value = live
    before = event_count()
    with socket_nobody_listens_on() as port:
        app = make_app(KEYVAULT_SECRET_SCANNING_KEYS=f"http://127.0.0.1:{port}/keys")
        body = report(value)
        response = post(app.test_client(), body, Signer().headers(body))
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "60"
    assert_nothing_changed(key, before)


def test_a_failed_refresh_keeps_the_keys_it_had(make_app, keys_server, signer, frozen):
    app = make_app(KEYVAULT_SECRET_SCANNING_KEYS=keys_server.url)
    client = app.test_client()
    body = report(tokens.generate("kv"))
    assert post(client, body, signer.headers(body)).status_code == 200
    keys_server.close()
    frozen.at += timedelta(hours=2)
    assert post(client, body, signer.headers(body)).status_code == 200


class socket_nobody_listens_on:  # noqa: N801 - used as a context manager, reads as one
    """A loopback port held bound but not listening, so a connection is refused at once."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


# ---------------------------------------------------------------- secrets and robustness


def test_the_token_never_reaches_the_log(client, signer, user, make_key, caplog):
    _, value = make_key(user)
    caplog.set_level(logging.DEBUG)
    for name in ("keyvault", "keyvault.access"):  # they may not propagate to the root logger
        logging.getLogger(name).addHandler(caplog.handler)
    try:
        too_long = json.dumps([{"token": value * 6, "type": TYPE}]).encode()
        wrong_type = json.dumps([{"token": value, "type": 1}]).encode()
        for body in (report(value), report(value), too_long, wrong_type):
            post(client, body, signer.headers(body))
            post(client, body)  # unsigned
            post(client, body, {**signer.headers(b"other"), "X-Note": "forged"})
    finally:
        for name in ("keyvault", "keyvault.access"):
            logging.getLogger(name).removeHandler(caplog.handler)
    assert value not in caplog.text
    assert value[len("kv_"):][:20] not in caplog.text


def test_the_live_server_log_never_holds_the_token(database_url, keys_file, signer, user,
                                                   make_key, tmp_path):
    """`keyvault serve` as operators run it: its access log and error log see the requests,
    never the token."""
    key, value = make_key(user)
    server = start_server(database_url, tmp_path / "serve.log", workers=1,
                          extra_env={"KEYVAULT_SECRET_SCANNING_KEYS": str(keys_file)})
    try:
        headers = {"Content-Type": "application/json"}
        too_long = json.dumps([{"token": value * 6, "type": TYPE}]).encode()
        for body in (report(value), too_long, b"[" + report(value)):
            requests.post(server.url + URL, data=body, headers=headers, timeout=10)
            answer = requests.post(server.url + URL, data=body,
                                   headers={**headers, **signer.headers(body)}, timeout=10)
            assert answer.status_code in (200, 400)
        assert revoked_at(key) is not None
    finally:
        stop_server(server)
    log = server.log()
    assert "/api/secret_scanning/" in log  # the requests were logged…
    assert value not in log  # …without the token
    assert value[len("kv_"):][:20] not in log


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["token", "type", "url", "source", "extra"]) | st.text(max_size=5),
        inner, max_size=5),
    max_leaves=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=JSON_VALUES.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200))
def test_no_signed_body_gets_a_500(client, signer, body):
    """Whatever a trusted reporter signs, the answer is a 200 with one label per match, or a
    400 in words."""
    response = post(client, body, signer.headers(body))
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 200:
        assert len(response.json) == len(json.loads(body))
        assert all(item["label"] == "false_positive" for item in response.json)
    else:
        assert response.mimetype == "application/problem+json"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.binary(max_size=200),
       identifier=st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80),
       signature=st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=120))
def test_no_forged_request_gets_anything_but_a_401(client, body, identifier, signature):
    response = post(client, body, {"Github-Public-Key-Identifier": identifier,
                                   "Github-Public-Key-Signature": signature})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_reported_tokens_are_counted_by_label(client, signer, user, make_key):
    from keyvault import metrics
    from tests.test_metrics import samples, value

    name = "keyvault_secret_scanning_tokens_total"
    before = samples(metrics.exposition().decode())
    _, ours = make_key(user)
    body = report(ours, tokens.generate("kv"), "ghp_" + "y" * 36)
    assert post(client, body, signer.headers(body)).status_code == 200
    post(client, body)  # unsigned: not a report, not counted
    after = samples(metrics.exposition().decode())
    assert value(after, name, label="true_positive") - value(before, name,
                                                            label="true_positive") == 1
    assert value(after, name, label="false_positive") - value(before, name,
                                                             label="false_positive") == 2


# ---------------------------------------------------------------- keyvault keys scan


def test_keys_scan_finds_keys_in_files_and_says_which_still_work(app, user, make_key, tmp_path):
    live, live_value = make_key(user, label="deploy")
    gone, gone_value = make_key(user, label="old")
    service.revoke_key(user, gone.public_id, service.Origin())
    unknown = tokens.generate("kv")
    broken = unknown[:-6] + ("000000" if unknown[-6:] != "000000" else "000001")
    env = tmp_path / ".env"
    env.write_text(f"# deploy\nKEYVAULT_KEY={live_value}\nOLD={gone_value} NEW={unknown}\n"
                   f"BROKEN={broken}\nGLUED=x{live_value}\n")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["keys", "scan", str(env), "-"], input=f"token: {live_value}\n")
    assert result.exit_code == 1  # a live key was found
    assert result.stdout.splitlines() == [
        f"{env}:2: {live.mask} LIVE (key {live.public_id}, deploy)",
        f"{env}:3: {gone.mask} revoked (key {gone.public_id}, old)",
        f"{env}:3: {tokens.mask(unknown)} not issued here",
        f"<stdin>:1: {live.mask} LIVE (key {live.public_id}, deploy)",
    ]
    assert "4 key(s) found, 2 live." in result.stderr
    assert live_value not in result.output and unknown not in result.output
    assert revoked_at(live) is None  # scanning changes nothing
    clean = tmp_path / "clean.txt"
    clean.write_text(f"OLD={gone_value}\n")
    assert runner.invoke(args=["keys", "scan", str(clean)]).exit_code == 0
