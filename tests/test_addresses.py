"""Keys restricted by address (`allowed_ips`): set on every door, judged at the request's client
address (KeyVault's own API, forward_auth) or the verify caller's `client_ip`, refusals counted
and logged; and the same on the real server (`keyvault serve`)."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from keyvault import addresses
from keyvault.extensions import db
from keyvault.models import ApiKey, KeyUsageDay, SecurityEvent
from keyvault.service import usage
from keyvault.service.event_text import describe
from tests.conftest import PASSWORD, csrf_from, once_token
from tests.test_sudo import is_prompt, make_stale, replay

RANGES = ["203.0.113.0/24", "2001:db8::/32"]
KEYS = "/api/personal_api_keys/"


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def key_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(ApiKey.id)))


@pytest.fixture
def tool(user, make_key):
    """The user's unrestricted full-access key, for the API."""
    return make_key(user, label="tool", scopes=["*"])[1]


def test_ranges_are_spelled_canonically_without_duplicates():
    assert addresses.canonical(["10.1.2.3/8", " 2001:DB8::1/32", "198.51.100.7", "10.0.0.0/8",
                                "::ffff:192.0.2.0/120", "::1"]) == [
        "10.0.0.0/8", "2001:db8::/32", "198.51.100.7/32", "192.0.2.0/24", "::1/128"]


# ---------------------------------------------------------------- setting them


def test_the_api_creates_and_shows_a_restricted_key(client, tool):
    response = client.post(KEYS, headers=bearer(tool), json={
        "label": "office", "scopes": ["user:read"],
        "allowed_ips": ["203.0.113.9/24", "2001:DB8::/32", "203.0.113.0/24"]})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.json["allowed_ips"] == RANGES
    shown = client.get(f"{KEYS}{response.json['id']}/", headers=bearer(tool)).json
    assert shown["allowed_ips"] == RANGES
    unrestricted = client.post(KEYS, headers=bearer(tool), json={
        "label": "anywhere", "scopes": ["user:read"], "allowed_ips": []})
    assert unrestricted.json["allowed_ips"] is None


@pytest.mark.parametrize(("allowed_ips", "words"), [
    (["10.0.0.0/8", "nope"], "“nope” is not an IP address or a CIDR range"),
    (["10.0.0.0/33"], "“10.0.0.0/33”"),
    (["fe80::1%eth0"], "“fe80::1%eth0”"),
    ([""], "“” is not"),
    ("10.0.0.0/8", "must be a list"),
    ([5], "must be a list"),
    ([f"10.0.{n // 256}.{n % 256}" for n in range(101)], "at most 100"),
])
def test_bad_ranges_are_a_400_naming_them_and_make_nothing(client, tool, allowed_ips, words):
    before = key_count()
    response = client.post(KEYS, headers=bearer(tool), json={
        "label": "bad", "scopes": ["user:read"], "allowed_ips": allowed_ips})
    assert response.status_code == 400
    assert response.json["field"] == "allowed_ips" and words in response.json["detail"]
    assert key_count() == before


@pytest.mark.parametrize(("before", "after", "status"), [
    (None, ["10.0.0.0/8"], 200),  # restricting an unrestricted key narrows it
    (["10.0.0.0/8"], ["10.1.0.0/16"], 200),
    (["10.0.0.0/8", "2001:db8::/32"], ["2001:db8:1::/48"], 200),
    (["10.0.0.0/8"], ["10.0.0.0/8", "11.0.0.0/8"], 403),  # more addresses: the password
    (["10.0.0.0/8"], ["0.0.0.0/0"], 403),
    (["10.0.0.0/8"], [], 403),  # no restriction: anywhere
])
def test_the_api_narrows_ranges_but_never_widens_them(client, user, make_key, tool, before,
                                                       after, status):
    key, _ = make_key(user, label="subject", allowed_ips=before)
    response = client.patch(f"{KEYS}{key.public_id}/", headers=bearer(tool),
                            json={"allowed_ips": after})
    assert response.status_code == status, response.get_data(as_text=True)
    db.session.refresh(key)
    assert key.allowed_ips == ((after or None) if status == 200 else before)


def test_a_service_accounts_key_takes_ranges_too(client, user, tool):
    org = client.post("/api/organizations/", headers=bearer(tool), json={"name": "Acme"}).json
    account = client.post(f"/api/organizations/{org['id']}/service_accounts/",
                          headers=bearer(tool), json={"name": "deployer"}).json
    keys = f"/api/organizations/{org['id']}/service_accounts/{account['id']}/keys/"
    made = client.post(keys, headers=bearer(tool), json={
        "label": "ci", "scopes": ["user:read"], "allowed_ips": ["10.0.0.0/8"]})
    assert made.status_code == 201 and made.json["allowed_ips"] == ["10.0.0.0/8"]
    narrowed = client.patch(f"{keys}{made.json['id']}/", headers=bearer(tool),
                            json={"allowed_ips": ["10.9.0.0/16"]})
    assert narrowed.status_code == 200 and narrowed.json["allowed_ips"] == ["10.9.0.0/16"]


def test_the_command_line_creates_a_restricted_key(app, user):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["keys", "create", user.email, "--label", "cron", "--scope",
                                 "user:read", "--allow-ip", "203.0.113.7", "--allow-ip",
                                 "2001:db8::/32", "--json"])
    assert result.exit_code == 0, result.output
    assert '"allowed_ips":["203.0.113.7/32","2001:db8::/32"]' in result.stdout.replace(" ", "")
    bad = runner.invoke(args=["keys", "create", user.email, "--label", "cron2", "--scope",
                              "user:read", "--allow-ip", "nope"])
    assert bad.exit_code != 0 and "“nope” is not an IP address" in bad.output


def _create_on_page(client, allowed_ips: str):
    page = client.get("/settings/api-keys").get_data(as_text=True)
    return client.post("/settings/api-keys", data=MultiDict([
        ("label", "office"), ("expiry", "7"), ("preset", "custom"), ("scopes", "user:read"),
        ("allowed_ips", allowed_ips), ("csrf_token", csrf_from(page)),
        ("once", once_token(page))]))


def _edit_on_page(client, key, allowed_ips: str):
    path = f"/settings/api-keys/{key.public_id}/edit"
    token = csrf_from(client.get(path).get_data(as_text=True))
    return client.post(path, data=MultiDict([
        ("label", key.label), ("description", ""), ("scopes", "user:read"),
        ("allowed_ips", allowed_ips), ("csrf_token", token)]))


def test_the_pages_set_show_and_widen_ranges_with_the_password(client, auth, app, user):
    auth.login()
    bad = _create_on_page(client, "10.0.0.0/8\nnope")
    assert bad.status_code == 400 and "“nope” is not an IP address" in bad.get_data(as_text=True)
    assert _create_on_page(client, "203.0.113.0/24\n2001:db8::/32, 203.0.113.5/24"
                           ).status_code == 200
    key = db.session.scalar(select(ApiKey).where(ApiKey.label == "office"))
    assert key.allowed_ips == RANGES
    listing = client.get("/settings/api-keys").get_data(as_text=True)
    assert "from 2 address ranges" in listing
    page = client.get(f"/settings/api-keys/{key.public_id}").get_data(as_text=True)
    assert "From 2 address ranges" in page and "2001:db8::/32" in page
    edit = client.get(f"/settings/api-keys/{key.public_id}/edit").get_data(as_text=True)
    assert "203.0.113.0/24\n2001:db8::/32</textarea>" in edit

    make_stale(client, app)
    narrowed = _edit_on_page(client, key, "203.0.113.0/25")  # narrower: no password
    assert narrowed.status_code == 302 and not is_prompt(narrowed)
    db.session.refresh(key)
    assert key.allowed_ips == ["203.0.113.0/25"]
    prompt = _edit_on_page(client, key, "")  # anywhere: wider, asks first
    assert is_prompt(prompt)
    db.session.refresh(key)
    assert key.allowed_ips == ["203.0.113.0/25"]
    assert replay(client, prompt, f"/settings/api-keys/{key.public_id}/edit",
                  PASSWORD).status_code == 302
    db.session.refresh(key)
    assert key.allowed_ips is None


# ---------------------------------------------------------------- judging them


@pytest.mark.parametrize(("remote", "allowed", "status"), [
    ("127.0.0.1", ["127.0.0.0/8"], 200),
    ("127.0.0.1", ["10.0.0.0/8"], 403),
    ("::1", ["::1"], 200),
    ("::1", ["127.0.0.1"], 403),
    ("::ffff:127.0.0.1", ["127.0.0.1"], 200),  # a dual-stack socket's IPv4 client
])
def test_keyvaults_own_api_judges_the_requests_address(client, user, make_key, remote, allowed,
                                                        status):
    _, value = make_key(user, label="restricted", allowed_ips=allowed)
    response = client.get(KEYS, headers=bearer(value), environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == status
    if status == 403:
        assert response.json["code"] == "ip_not_allowed"
        assert f"from {remote}" in response.json["detail"]


@pytest.mark.parametrize(("client_ip", "code"), [
    ("203.0.113.77", "valid"),
    ("2001:db8:5::1", "valid"),
    ("::ffff:203.0.113.1", "valid"),
    ("198.51.100.1", "ip_not_allowed"),
    ("2001:db9::1", "ip_not_allowed"),
    (None, "ip_not_allowed"),  # fail closed: a restricted key needs an address
])
def test_verify_judges_the_callers_client_ip(client, user, make_key, verifier, client_ip, code):
    _, value = make_key(user, label="restricted", allowed_ips=RANGES)
    _, anywhere = make_key(user, label="anywhere")
    body = {"key": value} | ({"client_ip": client_ip} if client_ip else {})
    answer = client.post("/api/verify/", json=body, headers=bearer(verifier))
    assert answer.status_code == 200 and answer.json["code"] == code
    form = client.post("/api/verify/", headers=bearer(verifier),
                       data={"token": value} | ({"client_ip": client_ip} if client_ip else {}))
    assert form.json["code"] == code
    unrestricted = client.post("/api/verify/", json=body | {"key": anywhere},
                               headers=bearer(verifier))
    assert unrestricted.json["code"] == "valid"


@pytest.mark.parametrize("client_ip", ["nope", "203.0.113.0/24", 5, "", "1.2.3.4 "])
def test_a_client_ip_that_is_not_an_address_is_a_400(client, user, make_key, verifier,
                                                     client_ip):
    _, value = make_key(user, label="restricted", allowed_ips=RANGES)
    answer = client.post("/api/verify/", json={"key": value, "client_ip": client_ip},
                         headers=bearer(verifier))
    assert answer.status_code == 400
    assert answer.json["field"] == "client_ip" and "IP address" in answer.json["detail"]


def test_a_verify_callers_own_key_is_judged_at_its_address(client, make_user, make_key, user):
    _, service_key = make_key(make_user("svc@example.com"), label="svc",
                              scopes=["key:verify"], allowed_ips=["10.0.0.0/8"])
    _, value = make_key(user)
    answer = client.post("/api/verify/", json={"key": value, "client_ip": "10.1.1.1"},
                         headers=bearer(service_key))
    assert answer.status_code == 403 and answer.json["code"] == "ip_not_allowed"


@pytest.mark.parametrize(("proxies", "headers", "status"), [
    (1, {"X-Forwarded-For": "203.0.113.9"}, 200),
    (1, {"X-Forwarded-For": "198.51.100.9"}, 403),
    (1, {"X-Forwarded-For": "203.0.113.9, 198.51.100.9"}, 403),  # the proxy's own entry counts
    (1, {"X-Real-IP": "2001:db8::9"}, 200),
    (1, {"X-Real-IP": "nope"}, 403),  # not an address: the socket's, 127.0.0.1
    (0, {"X-Forwarded-For": "203.0.113.9"}, 403),  # spoofed: no proxy is trusted
    (0, {"X-Real-IP": "203.0.113.9"}, 403),
])
def test_forward_auth_reads_the_client_address_from_trusted_proxies_only(
        app_with, user, make_key, proxies, headers, status):
    _, value = make_key(user, label="restricted", allowed_ips=RANGES)
    client = app_with(KEYVAULT_TRUSTED_PROXIES=proxies).test_client()
    response = client.get("/api/forward_auth/", headers=bearer(value) | headers)
    assert response.status_code == status
    if status == 403:
        assert response.json["code"] == "ip_not_allowed"


def test_refusals_are_counted_and_logged_once_an_hour(app, client, user, make_key, verifier):
    key, value = make_key(user, label="restricted", allowed_ips=RANGES)
    for address in ("198.51.100.1", "198.51.100.2", "203.0.113.1"):
        client.post("/api/verify/", json={"key": value, "client_ip": address},
                    headers=bearer(verifier))
    usage.flush(app)
    counts = dict(db.session.execute(select(KeyUsageDay.outcome, KeyUsageDay.count).where(
        KeyUsageDay.key_id == key.id)).all())
    assert counts == {"ip_not_allowed": 2, "valid": 1}
    events = db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.key_id == key.id, SecurityEvent.event == "key.ip_refused")).all()
    assert len(events) == 1 and events[0].details["client_ip"] == "198.51.100.1"
    assert "198.51.100.1" in describe(events[0]).summary


# ---------------------------------------------------------------- the real server


def test_the_real_server_judges_addresses_on_every_door(live_server, user, make_key, verifier):
    """`keyvault serve` (granian, the bridge, verify's fast path on the loop): the API's own
    check at the socket's address, verify at client_ip, forward_auth ignoring a spoofed
    X-Forwarded-For (no trusted proxies here)."""
    url = live_server.url
    _, local = make_key(user, label="local", allowed_ips=["127.0.0.1"])
    _, far = make_key(user, label="far", allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    assert requests.get(url + KEYS, headers=bearer(local), timeout=5).status_code == 200
    refused = requests.get(url + KEYS, headers=bearer(far), timeout=5)
    assert refused.status_code == 403 and refused.json()["code"] == "ip_not_allowed"
    for client_ip, code in (("10.2.3.4", "valid"), ("2001:db8::1", "valid"),
                            ("11.0.0.1", "ip_not_allowed"), (None, "ip_not_allowed")):
        body = {"key": far} | ({"client_ip": client_ip} if client_ip else {})
        answer = requests.post(url + "/api/verify/", json=body, headers=bearer(verifier),
                               timeout=5)
        assert answer.json()["code"] == code, (client_ip, answer.text)
    assert requests.post(url + "/api/verify/", json={"key": far, "client_ip": "x"},
                         headers=bearer(verifier), timeout=5).status_code == 400
    spoofed = requests.get(url + "/api/forward_auth/", timeout=5,
                           headers=bearer(far) | {"X-Forwarded-For": "10.2.3.4",
                                                  "X-Real-IP": "10.2.3.4"})
    assert spoofed.status_code == 403
    assert requests.get(url + "/api/forward_auth/", headers=bearer(local),
                        timeout=5).status_code == 200
    assert "Traceback" not in live_server.log()
