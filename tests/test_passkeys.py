"""Passkeys through the test client, answered by a software authenticator: registration and
login, and every way an answer is refused (malformed, unknown, replayed, stale, wrong origin,
another account's, an unverified person, no CSRF token). The real browser is in
tests/browser/test_passkeys.py."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from datetime import timedelta

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, encode_cbor

from keyvault import service
from keyvault.config import ConfigError, load
from keyvault.extensions import db
from keyvault.factor_models import Passkey, WebAuthnChallenge
from keyvault.models import SecurityEvent
from tests.conftest import PASSWORD, T0, csrf_from

ORIGIN = "http://localhost"  # the test client's requests come to http://localhost/
UP, UV, AT = 0x01, 0x04, 0x40


class SoftAuthenticator:
    """A passkey in Python: an ES256 key pair, answering like a browser's authenticator."""

    def __init__(self, rp_id: str = "localhost"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.rp_id = rp_id
        self.sign_count = 0
        self.user_handle: bytes | None = None

    def _auth_data(self, flags: int, attested: bytes = b"") -> bytes:
        return (hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags])
                + struct.pack(">I", self.sign_count) + attested)

    @staticmethod
    def _client_data(kind: str, options: dict, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": options["challenge"], "origin": origin,
                           "crossOrigin": False}).encode()

    def create(self, options: dict, origin: str = ORIGIN) -> dict:
        numbers = self.key.public_key().public_numbers()
        cose = encode_cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + cose
        self.user_handle = base64url_to_bytes(options["user"]["id"])
        attestation = encode_cbor({"fmt": "none", "attStmt": {},
                                   "authData": self._auth_data(UP | UV | AT, attested)})
        raw = bytes_to_base64url(self.credential_id)
        return {"id": raw, "rawId": raw, "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": bytes_to_base64url(
                    self._client_data("webauthn.create", options, origin)),
                    "attestationObject": bytes_to_base64url(attestation),
                    "transports": ["internal"]}}

    def get(self, options: dict, origin: str = ORIGIN, verified: bool = True) -> dict:
        self.sign_count += 1
        auth_data = self._auth_data(UP | (UV if verified else 0))
        client_data = self._client_data("webauthn.get", options, origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(),
                                  ec.ECDSA(hashes.SHA256()))
        raw = bytes_to_base64url(self.credential_id)
        response = {"clientDataJSON": bytes_to_base64url(client_data),
                    "authenticatorData": bytes_to_base64url(auth_data),
                    "signature": bytes_to_base64url(signature)}
        if self.user_handle is not None:
            response["userHandle"] = bytes_to_base64url(self.user_handle)
        return {"id": raw, "rawId": raw, "type": "public-key", "clientExtensionResults": {},
                "response": response}


def post_json(client, path: str, body=None, token: str | None = None, raw: str | None = None):
    headers = {"X-CSRFToken": token} if token else {}
    return client.post(path, data=raw if raw is not None else json.dumps(body or {}),
                       content_type="application/json", headers=headers)


def page_token(client, path: str = "/login") -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


@pytest.fixture
def passkey_owner(client, auth, user):
    """alice, logged in with a passkey registered through the account page's endpoints; her
    authenticator, and she is logged out again."""
    auth.login()
    token = page_token(client, "/settings/passkeys/new")
    options = post_json(client, "/settings/passkeys/options", token=token).json
    authenticator = SoftAuthenticator()
    answer = post_json(client, "/settings/passkeys", {"name": "Laptop", "credential":
                                                      authenticator.create(options)}, token)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json == {"redirect": "/settings/account"}
    auth.logout()
    return authenticator


def log_in_with(client, authenticator, **answer):
    token = page_token(client)
    options = post_json(client, "/login/passkey/options", token=token).json
    body = {"credential": authenticator.get(options, **answer), "next": "/settings/account"}
    return post_json(client, "/login/passkey", body, token), body, token


def failures(reason: str) -> int:
    return sum(1 for e in db.session.query(SecurityEvent).filter_by(event="passkey.failed")
               if e.details.get("reason") == reason)


def test_register_then_log_in_with_the_passkey_alone(client, passkey_owner, user):
    """The registration options ask for a discoverable credential with user verification, both
    preferred; the login options list no credential (no email needed). The passkey's answer
    logs alice in, counts its signature and is logged with the passkey's name."""
    [passkey] = db.session.query(Passkey).all()
    assert (passkey.user_id, passkey.name, passkey.transports) == (user.id, "Laptop", ["internal"])
    assert passkey.last_used_at is None

    token = page_token(client)
    options = post_json(client, "/login/passkey/options", token=token).json
    assert options["rpId"] == "localhost" and options["userVerification"] == "preferred"
    assert options.get("allowCredentials", []) == []
    answer = post_json(client, "/login/passkey", {"credential": passkey_owner.get(options),
                                                  "next": "/settings/account"}, token)
    assert answer.status_code == 200 and answer.json == {"redirect": "/settings/account"}
    assert client.get("/settings/account").status_code == 200  # logged in
    db.session.refresh(passkey)
    assert passkey.sign_count == 1 and passkey.last_used_at is not None
    [event] = db.session.query(SecurityEvent).filter_by(event="login.succeeded").filter(
        SecurityEvent.details.isnot(None)).order_by(SecurityEvent.id.desc()).limit(1)
    assert event.details == {"method": "passkey", "passkey": "Laptop"}
    assert service.describe(event).summary == ("With the passkey “Laptop”, instead of the "
                                               "password.")


def test_registration_options_exclude_the_accounts_passkeys(client, auth, passkey_owner):
    auth.login()
    token = page_token(client, "/settings/passkeys/new")
    options = post_json(client, "/settings/passkeys/options", token=token).json
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert [c["id"] for c in options["excludeCredentials"]] == [
        bytes_to_base64url(passkey_owner.credential_id)]
    again = post_json(client, "/settings/passkeys", {"name": "Again", "credential":
                                                     passkey_owner.create(options)}, token)
    assert again.status_code == 400
    assert again.json["detail"] == "This passkey is already registered."
    assert db.session.query(Passkey).count() == 1


def test_an_answer_counts_once(client, passkey_owner):
    first, body, token = log_in_with(client, passkey_owner)
    assert first.status_code == 200
    token = page_token(client, "/settings/account")
    again = post_json(client, "/login/passkey", body, token)
    assert again.status_code == 400
    assert again.json["detail"] == ("This passkey request has expired or was already used. "
                                    "Try again.")
    assert failures("challenge") == 1


def test_a_challenge_older_than_five_minutes_is_refused(client, passkey_owner, frozen):
    token = page_token(client)
    options = post_json(client, "/login/passkey/options", token=token).json
    frozen.at = T0 + timedelta(minutes=5, seconds=1)
    late = post_json(client, "/login/passkey", {"credential": passkey_owner.get(options)}, token)
    assert late.status_code == 400 and "expired" in late.json["detail"]
    assert db.session.query(WebAuthnChallenge).count() == 0


def test_an_unknown_passkey_is_refused(client, passkey_owner):
    answer, _, _ = log_in_with(client, SoftAuthenticator())
    assert answer.status_code == 400
    assert answer.json["detail"].startswith("KeyVault does not know this passkey")
    assert failures("unknown_credential") == 1
    assert client.get("/settings/account").status_code == 302  # not logged in


def test_failed_passkey_logins_count_toward_the_addresss_limit(app, client, passkey_owner):
    """As wrong passwords do (service.guessing): past the limit even the right passkey waits."""
    app.config["KEYVAULT_LOGIN_MAX_FAILURES"] = 2
    for _ in range(2):
        assert log_in_with(client, SoftAuthenticator())[0].status_code == 400
    refused, _, _ = log_in_with(client, passkey_owner)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.json["detail"] == ("Too many failed logins from your address: try again "
                                      "in 15 minutes.")
    assert client.get("/settings/account").status_code == 302  # not logged in


def test_an_answer_for_another_origin_is_refused(client, passkey_owner, user):
    answer, _, _ = log_in_with(client, passkey_owner, origin="https://evil.example")
    assert answer.status_code == 400
    assert answer.json["detail"].startswith("The passkey's answer could not be verified")
    [event] = db.session.query(SecurityEvent).filter_by(event="passkey.failed").all()
    assert event.user_id == user.id and event.details["reason"] == "invalid"
    assert "origin" in event.details["problem"]


def test_a_login_needs_the_person_verified(client, passkey_owner):
    """Instead of a password, the passkey must be two factors: device and PIN or biometrics."""
    answer, _, _ = log_in_with(client, passkey_owner, verified=False)
    assert answer.status_code == 400
    assert failures("invalid") == 1


def test_a_deactivated_accounts_passkey_does_not_log_in(client, passkey_owner, user):
    from keyvault.service.admin import set_user_active

    set_user_active(None, user.id, False, service.Origin.system())
    answer, _, _ = log_in_with(client, passkey_owner)
    assert answer.status_code == 400 and answer.json["detail"] == "This account is deactivated."
    assert failures("inactive") == 1


def test_an_unconfirmed_accounts_passkey_does_not_log_in(app, client, passkey_owner, user):
    """A passkey added while confirmation was off logs nobody in once it is on, until the
    address is confirmed (service.confirmations)."""
    user.email_confirmed_at = None
    db.session.commit()
    app.config["KEYVAULT_REQUIRE_EMAIL_CONFIRMATION"] = True
    answer, _, _ = log_in_with(client, passkey_owner)
    assert answer.status_code == 400
    assert answer.json["detail"].startswith("Confirm your email address first")
    assert failures("unconfirmed") == 1
    assert client.get("/settings/account").status_code == 302  # not logged in


def test_second_factor_takes_only_that_accounts_passkeys(app, passkey_owner, user, make_user):
    """authenticate(expected_user_id=…) (the second step after a password): the options list
    that account's passkeys, an answer by them passes without user verification, and one for
    another account is refused; the login is logged as made with the password and this
    passkey."""
    from keyvault.service import passkeys

    rp = passkeys.RelyingParty("localhost", ORIGIN)
    origin = service.Origin("127.0.0.1", "pytest")
    options = json.loads(passkeys.authentication_options(rp, expected_user_id=user.id))
    assert [c["id"] for c in options["allowCredentials"]] == [
        bytes_to_base64url(passkey_owner.credential_id)]
    logins = db.session.query(SecurityEvent).filter_by(event="login.succeeded").count()
    assert passkeys.authenticate(passkey_owner.get(options, verified=False), rp, origin,
                                 expected_user_id=user.id) == user
    logged = db.session.query(SecurityEvent).filter_by(event="login.succeeded").order_by(
        SecurityEvent.id).all()
    assert len(logged) == logins + 1
    assert logged[-1].details["second_factor"] == "passkey" and logged[-1].user_id == user.id

    other = make_user("other@example.com")
    options = json.loads(passkeys.authentication_options(rp, expected_user_id=other.id))
    with pytest.raises(passkeys.PasskeyRefused, match="another account"):
        passkeys.authenticate(passkey_owner.get(options), rp, origin, expected_user_id=other.id)
    # and a login challenge does not serve as a second step's (nor the other way round)
    options = json.loads(passkeys.authentication_options(rp))
    with pytest.raises(passkeys.PasskeyRefused, match="expired or was already used"):
        passkeys.authenticate(passkey_owner.get(options), rp, origin, expected_user_id=user.id)


@pytest.mark.parametrize("raw", ["not json", "[]", '"text"', "{}", '{"credential": 1}',
                                 '{"credential": {"id": "x"}}',
                                 '{"credential": {"id": "AA", "rawId": "AA", "type": "public-key",'
                                 ' "response": {"clientDataJSON": "!!", "authenticatorData": "AA",'
                                 ' "signature": "AA"}}}'])
def test_malformed_answers_get_a_clear_400(client, passkey_owner, raw):
    token = page_token(client)
    answer = post_json(client, "/login/passkey", raw=raw, token=token)
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json["detail"] in (
        "Send the passkey's answer as the JSON object the page's script builds.",
        "The passkey's answer is not in the form a browser sends.")


def test_malformed_registrations_get_a_clear_400_and_add_nothing(client, auth, user):
    auth.login()
    token = page_token(client, "/settings/passkeys/new")
    assert post_json(client, "/settings/passkeys", raw="{", token=token).status_code == 400
    options = post_json(client, "/settings/passkeys/options", token=token).json
    no_name = post_json(client, "/settings/passkeys", {"name": " ", "credential":
                                                       SoftAuthenticator().create(options)}, token)
    assert no_name.status_code == 400 and no_name.json["field"] == "name"
    options = post_json(client, "/settings/passkeys/options", token=token).json
    elsewhere = post_json(client, "/settings/passkeys", {"name": "x", "credential":
                          SoftAuthenticator().create(options, origin="https://evil.example")},
                          token)
    assert elsewhere.status_code == 400
    assert elsewhere.json["detail"] == ("Your browser's answer did not verify, so no passkey was "
                                        "added. Try again.")
    bad = post_json(client, "/settings/passkeys", {"name": "x", "credential": {"id": 3}}, token)
    assert bad.json["detail"] == "The passkey's answer is not in the form a browser sends."
    assert db.session.query(Passkey).count() == 0


@pytest.mark.parametrize("path", ["/login/passkey/options", "/login/passkey",
                                  "/settings/passkeys/options", "/settings/passkeys"])
def test_the_json_posts_need_the_csrf_token(client, auth, user, path):
    auth.login()
    answer = post_json(client, path, {})
    assert answer.status_code == 400
    assert "security token" in answer.get_data(as_text=True)
    assert db.session.query(WebAuthnChallenge).count() == 0


def test_adding_a_passkey_needs_a_recent_password(client, auth, user, frozen):
    auth.login()
    token = page_token(client, "/settings/account")
    frozen.at = T0 + timedelta(hours=3)
    page = client.get("/settings/passkeys/new")
    assert page.status_code == 302 and "/confirm" in page.headers["Location"]
    refused = post_json(client, "/settings/passkeys/options", token=token)
    assert refused.status_code == 403 and "Confirm your password" in refused.json["detail"]


def test_rename_and_remove(client, auth, passkey_owner, make_user, frozen):
    auth.login()
    [passkey] = db.session.query(Passkey).all()
    token = page_token(client, "/settings/account")
    long = client.post(f"/settings/passkeys/{passkey.id}/rename",
                       data={"name": "x" * 41, "csrf_token": token})
    assert long.status_code == 303
    assert "Keep the name to 40 characters" in client.get("/settings/account").get_data(True)
    client.post(f"/settings/passkeys/{passkey.id}/rename",
                data={"name": " Home desktop ", "csrf_token": token})
    db.session.refresh(passkey)
    assert passkey.name == "Home desktop"
    assert client.post("/settings/passkeys/999999/rename",
                       data={"name": "mine", "csrf_token": token}).status_code == 404

    frozen.at = T0 + timedelta(hours=3)  # past sudo: removing asks for the password first
    prompt = client.post(f"/settings/passkeys/{passkey.id}/remove", data={"csrf_token": token})
    assert prompt.status_code == 200 and "Confirm your password" in prompt.get_data(True)
    assert db.session.query(Passkey).count() == 1
    done = client.post(f"/settings/passkeys/{passkey.id}/remove",
                       data={"csrf_token": token, "sudo_password": PASSWORD})
    assert done.status_code == 303
    assert db.session.query(Passkey).count() == 0
    titles = [service.describe(e).title for e in db.session.query(SecurityEvent)
              .filter(SecurityEvent.event.like("passkey.%")).order_by(SecurityEvent.id)]
    assert titles == ["Passkey added", "Passkey renamed", "Passkey removed"]


def test_someone_elses_passkey_cannot_be_renamed_or_removed(client, auth, passkey_owner,
                                                            make_user):
    make_user("mallory@example.com")
    auth.login("mallory@example.com")
    [passkey] = db.session.query(Passkey).all()
    token = page_token(client, "/settings/account")
    assert client.post(f"/settings/passkeys/{passkey.id}/remove",
                       data={"csrf_token": token}).status_code == 404
    assert client.post(f"/settings/passkeys/{passkey.id}/rename",
                       data={"name": "mine", "csrf_token": token}).status_code == 404
    db.session.refresh(passkey)
    assert passkey.name == "Laptop"


def test_production_without_a_base_url_offers_no_passkeys(make_app):
    app = make_app(KEYVAULT_ENV="production", KEYVAULT_SECRET_KEY="s" * 40,
                   KEYVAULT_KEY_PEPPER="p" * 40, SESSION_COOKIE_SECURE=False,
                   WTF_CSRF_ENABLED=False)
    answer = app.test_client().post("/login/passkey/options")
    assert answer.status_code == 404
    assert "KEYVAULT_BASE_URL" in answer.json["detail"]


@pytest.mark.parametrize(("opened_at", "named"), [
    ("http://127.0.0.1:5000", "open KeyVault at http://localhost:5000/ instead"),
    ("http://[::1]:8123", "open KeyVault at http://localhost:8123/ instead"),
    ("http://192.0.2.7:5000", "open KeyVault by its domain name (KEYVAULT_BASE_URL)"),
])
def test_passkeys_at_an_ip_address_name_the_address_to_use(client, opened_at, named):
    """Browsers refuse a passkey bound to an IP address, which is where `make run` used to send
    people: the refusal names where they work, before the browser fails with SecurityError."""
    token = csrf_from(client.get("/login", base_url=opened_at).get_data(as_text=True))
    answer = client.post("/login/passkey/options", base_url=opened_at,
                         headers={"X-CSRFToken": token})
    assert answer.status_code == 404
    assert answer.mimetype == "application/problem+json"
    assert named in answer.json["detail"]
    assert "IP address" in answer.json["detail"]
    at_name = post_json(client, "/login/passkey/options", token=page_token(client))
    assert at_name.status_code == 200  # at http://localhost/


def test_the_passkey_page_at_an_ip_address_names_the_address(client, user):
    """The account's "Add a passkey" page says the same in place of the button."""
    at_ip = "http://127.0.0.1:5000"
    token = csrf_from(client.get("/login", base_url=at_ip).get_data(as_text=True))
    assert client.post("/login", base_url=at_ip, data={
        "email": user.email, "password": PASSWORD, "csrf_token": token}).status_code == 302
    page = client.get("/settings/passkeys/new", base_url=at_ip)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "open KeyVault at http://localhost:5000/ instead" in text
    assert 'data-passkey="register"' not in text


def test_passkeys_at_127_0_0_1_on_the_wire(live_server):
    """The real server, reached as `make run` once printed it and as it prints it now."""
    browser = requests.Session()
    token = csrf_from(browser.get(f"{live_server.url}/login", timeout=10).text)
    at_ip = browser.post(f"{live_server.url}/login/passkey/options", timeout=10,
                         headers={"X-CSRFToken": token})
    port = live_server.url.rsplit(":", 1)[1]
    assert at_ip.status_code == 404
    assert f"http://localhost:{port}/" in at_ip.json()["detail"]
    page = requests.get(live_server.url.replace("127.0.0.1", "localhost") + "/login", timeout=10)
    assert page.status_code == 200 and 'data-passkey="login"' in page.text


def test_the_relying_party_follows_the_base_url(tmp_path):
    config = load(tmp_path, {"KEYVAULT_BASE_URL": "https://keys.example.com/vault"})
    assert config["KEYVAULT_WEBAUTHN_RP_ID"] == "keys.example.com"
    config = load(tmp_path, {"KEYVAULT_BASE_URL": "https://keys.example.com",
                             "KEYVAULT_WEBAUTHN_RP_ID": "Example.com"})
    assert config["KEYVAULT_WEBAUTHN_RP_ID"] == "example.com"
    with pytest.raises(ConfigError, match="KEYVAULT_WEBAUTHN_RP_ID"):
        load(tmp_path, {"KEYVAULT_BASE_URL": "https://keys.example.com",
                        "KEYVAULT_WEBAUTHN_RP_ID": "other.com"})
    with pytest.raises(ConfigError, match="KEYVAULT_WEBAUTHN_RP_ID"):
        load(tmp_path, {"KEYVAULT_WEBAUTHN_RP_ID": "https://example.com"})


def test_deleting_the_account_deletes_its_passkeys(client, auth, passkey_owner, user):
    auth.login()
    token = page_token(client, "/settings/account")
    post_json(client, "/login/passkey/options", token=token)  # a challenge left pending
    deleted = client.post("/settings/account/delete", data={"csrf_token": token})
    assert deleted.status_code == 302
    assert db.session.query(Passkey).count() == 0
    assert log_in_with(client, passkey_owner)[0].json["detail"].startswith(
        "KeyVault does not know this passkey")


def test_failed_passkey_logins_read_as_words(client, passkey_owner, user):
    log_in_with(client, passkey_owner, origin="https://evil.example")
    [event] = db.session.query(SecurityEvent).filter_by(event="passkey.failed").all()
    assert service.describe(event) == ("Failed passkey login",
                                       "The passkey's answer did not verify. Passkey “Laptop”.")
