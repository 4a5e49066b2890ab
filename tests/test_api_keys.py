"""The key endpoints of DESIGN.md §3, and how the API answers bad requests (problem+json)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from keyvault import service, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import FreshContextClient

KEY_FIELDS = {"id", "label", "description", "mask_value", "scopes", "status", "created_at",
              "last_used_at", "expires_at", "revoked_at", "last_rolled_at",
              "old_value_expires_at", "allowed_ips", "services", "organizations", "rate_limit",
              "usage_limit"}


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def caller(user, make_key):
    """Alice's full-access key: (ApiKey, headers)."""
    key, value = make_key(user, label="caller", scopes=["*"])
    return key, bearer(value)


def rows():
    """Keys and security events in the database, to show a failed change left no trace."""
    db.session.expire_all()
    return (db.session.scalar(select(func.count()).select_from(ApiKey)),
            db.session.scalar(select(func.count()).select_from(SecurityEvent)))


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    assert "Traceback" not in response.get_data(as_text=True)
    return body


# ---------------------------------------------------------------- the endpoints


def test_me_is_the_keys_owner(client, user, caller):
    """GET /api/users/@me/ describes the presenting key's owner."""
    response = client.get("/api/users/@me/", headers=caller[1])
    assert response.status_code == 200
    assert response.json["id"] == user.id
    assert response.json["email"] == "alice@example.com"
    assert response.json["is_admin"] is False


def test_create_shows_the_value_once(client, caller):
    """Create answers 201 with the value, Location and no-store; no later answer has it."""
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    response = client.post("/api/personal_api_keys/", headers=caller[1], json={
        "label": "  deploy bot  ", "description": "CI", "scopes": ["personal_api_key:read"],
        "expires_at": expires.isoformat().replace("+00:00", "Z")})
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.json
    assert set(created) == KEY_FIELDS | {"value"}
    assert tokens.is_well_formed(created["value"])
    assert created["label"] == "deploy bot"
    assert created["description"] == "CI"
    assert created["scopes"] == ["personal_api_key:read"]
    assert created["expires_at"] == expires.isoformat().replace("+00:00", "Z")
    assert created["mask_value"] == tokens.mask(created["value"])
    assert created["status"] == "active"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Location"].endswith(f"/api/personal_api_keys/{created['id']}/")
    assert service.verify_key(created["value"]).active

    answers = [
        client.get("/api/personal_api_keys/", headers=caller[1]),
        client.get(f"/api/personal_api_keys/{created['id']}/", headers=caller[1]),
        client.patch(f"/api/personal_api_keys/{created['id']}/", json={"label": "x"},
                     headers=caller[1]),
        client.get("/api/personal_api_keys/@current/", headers=bearer(created["value"])),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert created["value"] not in answer.get_data(as_text=True)
    listed = {key["id"]: key for key in answers[0].json["results"]}
    assert set(listed[created["id"]]) == KEY_FIELDS


def test_list_get_and_current(client, user, make_key, caller):
    """List is newest first; get returns one key; @current describes the presenting key."""
    older, _ = make_key(user, label="older")
    newer, newer_value = make_key(user, label="newer")
    listed = client.get("/api/personal_api_keys/", headers=caller[1]).json
    assert [k["id"] for k in listed["results"]] == [newer.public_id, older.public_id,
                                                   caller[0].public_id]
    assert listed["next"] is None and listed["previous"] is None
    one = client.get(f"/api/personal_api_keys/{older.public_id}/", headers=caller[1]).json
    assert one["label"] == "older"
    current = client.get("/api/personal_api_keys/@current/", headers=bearer(newer_value)).json
    assert current["id"] == newer.public_id


def test_patch_changes_label_description_and_narrows(client, user, make_key, caller):
    """PATCH changes only the fields given."""
    key, _ = make_key(user, label="before", description="old", scopes=["*"])
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/", headers=caller[1],
                            json={"label": "after", "scopes": ["user:read"]})
    assert response.status_code == 200
    assert response.json["label"] == "after"
    assert response.json["description"] == "old"
    assert response.json["scopes"] == ["user:read"]


def test_delete_revokes_and_keeps_it_listed_as_revoked(client, user, make_key, caller):
    """DELETE answers 204; the key stops at once and shows only with include_revoked=true."""
    key, value = make_key(user, label="doomed")
    response = client.delete(f"/api/personal_api_keys/{key.public_id}/", headers=caller[1])
    assert response.status_code == 204
    assert response.get_data() == b""
    assert client.get("/api/users/@me/", headers=bearer(value)).status_code == 401

    live = client.get("/api/personal_api_keys/", headers=caller[1]).json["results"]
    assert key.public_id not in [k["id"] for k in live]
    for flag in ("true", "1"):
        everything = client.get("/api/personal_api_keys/", headers=caller[1],
                                query_string={"include_revoked": flag}).json["results"]
        revoked = [k for k in everything if k["id"] == key.public_id]
        assert len(revoked) == 1
        assert revoked[0]["status"] == "revoked"
        assert revoked[0]["revoked_at"] is not None
    detail = client.get(f"/api/personal_api_keys/{key.public_id}/", headers=caller[1])
    assert detail.json["status"] == "revoked"


def test_roll_gives_a_new_value_and_stops_the_old_one(client, user, make_key, caller):
    """Roll: same id, label and scopes; the new value works, the old one stops at once."""
    key, old_value = make_key(user, label="rolling", scopes=["user:read"])
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/", headers=caller[1])
    assert response.status_code == 200, response.get_data(as_text=True)
    rolled = response.json
    assert response.headers["Cache-Control"] == "no-store"
    assert (rolled["id"], rolled["label"], rolled["scopes"]) == (key.public_id, "rolling",
                                                                 ["user:read"])
    assert rolled["value"] != old_value and tokens.is_well_formed(rolled["value"])
    assert rolled["mask_value"] == tokens.mask(rolled["value"])
    assert rolled["last_rolled_at"] is not None
    assert client.get("/api/users/@me/", headers=bearer(rolled["value"])).status_code == 200
    assert client.get("/api/users/@me/", headers=bearer(old_value)).status_code == 401


@pytest.mark.parametrize("grace", [0, 60, 60.0, 604800])
def test_roll_grace_period_is_a_whole_number_of_seconds(client, user, make_key, caller, grace):
    """Any JSON number with no fraction is accepted (JSON's 60.0 is the number 60)."""
    key, _ = make_key(user)
    response = client.post(f"/api/personal_api_keys/{key.public_id}/roll/", headers=caller[1],
                           json={"grace_period_seconds": grace})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (response.json["old_value_expires_at"] is None) is (grace == 0)


def test_key_lifecycle_conflicts(client, user, make_key, caller):
    """A revoked key cannot be edited or rolled (409); revoking it again changes nothing."""
    key, _ = make_key(user)
    assert client.delete(f"/api/personal_api_keys/{key.public_id}/",
                         headers=caller[1]).status_code == 204
    before = rows()
    assert_problem(client.patch(f"/api/personal_api_keys/{key.public_id}/", json={"label": "x"},
                                headers=caller[1]), 409)
    assert_problem(client.post(f"/api/personal_api_keys/{key.public_id}/roll/",
                               headers=caller[1]), 409)
    assert client.delete(f"/api/personal_api_keys/{key.public_id}/",
                         headers=caller[1]).status_code == 204
    assert rows() == before


def test_key_limit_is_409_and_writes_nothing(client, user, make_key, caller):
    """Past KEYVAULT_MAX_KEYS_PER_USER live keys, create is 409 and adds no row or event."""
    for number in range(9):  # the caller's key is the tenth
        make_key(user, label=f"key {number}")
    before = rows()
    body = assert_problem(client.post("/api/personal_api_keys/", json={"label": "one too many",
                                                                "scopes": ["user:read"]},
                                      headers=caller[1]), 409)
    assert "10" in body["detail"]
    assert rows() == before


@pytest.mark.parametrize(("method", "suffix"), [
    ("GET", "{id}/"), ("PATCH", "{id}/"), ("DELETE", "{id}/"), ("POST", "{id}/roll/"),
])
@pytest.mark.parametrize("whose", ["another user's", "unknown"])
def test_foreign_and_unknown_ids_are_404(client, make_user, make_key, caller, method, suffix,
                                         whose):
    """Another user's key id answers exactly like an id that does not exist, and is untouched."""
    bob = make_user("bob@example.com")
    bobs_key, bobs_value = make_key(bob, label="bob's")
    key_id = bobs_key.public_id if whose == "another user's" else "doesNotExist123"
    response = client.open(f"/api/personal_api_keys/{suffix.format(id=key_id)}", method=method,
                           json={"label": "mine now"} if method == "PATCH" else None,
                           headers=caller[1])
    body = assert_problem(response, 404)
    assert body["detail"] == "No such API key."
    verdict = service.verify_key(bobs_value)
    assert verdict.active and verdict.label == "bob's"


# ---------------------------------------------------------------- bad requests


@pytest.mark.parametrize(("method", "suffix"), [
    ("POST", ""), ("PATCH", "{id}/"), ("POST", "{id}/roll/"),
])
@pytest.mark.parametrize("raw", [b'{"label": ', b"{'label': 'x'}", b"\xff\xfe", b"[1, 2"])
def test_malformed_json_is_400(client, user, make_key, caller, method, suffix, raw):
    """A body that is not JSON though it says so: 400 problem+json, nothing written."""
    key, _ = make_key(user)
    before = rows()
    response = client.open(f"/api/personal_api_keys/{suffix.format(id=key.public_id)}",
                           method=method, data=raw, content_type="application/json",
                           headers=caller[1])
    assert_problem(response, 400)
    assert rows() == before


@pytest.mark.parametrize(("method", "suffix", "body", "field"), [
    ("POST", "", {"label": 5}, "label"),
    ("POST", "", {"label": ""}, "label"),
    ("POST", "", {"label": "   "}, "label"),
    ("POST", "", {"label": "x" * 41}, "label"),
    ("POST", "", {"description": "d"}, "label"),
    ("POST", "", {"label": "ok", "description": 7}, "description"),
    ("POST", "", {"label": "ok", "description": "d" * 1001}, "description"),
    ("POST", "", {"label": "ok", "scopes": "x"}, "scopes"),
    ("POST", "", {"label": "ok", "scopes": [1]}, "scopes"),
    ("POST", "", {"label": "ok", "scopes": []}, "scopes"),
    ("POST", "", {"label": "ok", "scopes": ["*"], "expires_at": "tomorrow"}, "expires_at"),
    ("POST", "", {"label": "ok", "scopes": ["*"], "expires_at": 1700000000}, "expires_at"),
    ("POST", "", {"label": "ok", "scopes": ["*"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ("POST", "", {"label": "ok", "colour": "red"}, "colour"),
    ("PATCH", "{id}/", {"label": 5}, "label"),
    ("PATCH", "{id}/", {"scopes": "x"}, "scopes"),
    ("PATCH", "{id}/", {"expires_at": 20300101}, "expires_at"),
    ("POST", "{id}/roll/", {"grace_period_seconds": "10"}, "grace_period_seconds"),
    ("POST", "{id}/roll/", {"grace_period_seconds": 1.5}, "grace_period_seconds"),
    ("POST", "{id}/roll/", {"grace_period_seconds": True}, "grace_period_seconds"),
    ("POST", "{id}/roll/", {"grace_period_seconds": -1}, "grace_period_seconds"),
    ("POST", "{id}/roll/", {"grace_period_seconds": 604801}, "grace_period_seconds"),
    ("POST", "{id}/roll/", {"grace": 10}, "grace"),
], ids=lambda value: repr(value)[:40])
def test_wrong_types_and_unknown_fields_are_400(client, user, make_key, caller, method, suffix,
                                                body, field):
    """Wrong types, bad values and unknown fields: 400 naming the field in `field`, with a
    `detail` in people's words (no field codes, no library wording), nothing written."""
    key, value = make_key(user)
    before = rows()
    response = client.open(f"/api/personal_api_keys/{suffix.format(id=key.public_id)}",
                           method=method, json=body, headers=caller[1])
    problem = assert_problem(response, 400)
    assert problem["field"] == field
    detail = problem["detail"]
    assert detail[0].isupper() and detail.endswith("."), detail
    unknown = detail.startswith("This request does not take")  # names what the client sent
    codes = () if unknown else ("expires_at", "grace_period_seconds")
    for internal in (*codes, "Input should", "_type", "must be a string", "must name at least"):
        assert internal not in detail, detail
    assert rows() == before
    assert service.verify_key(value).active  # a refused roll leaves the old value working


@pytest.mark.parametrize("body", [[], ["label"], "label", 5, None])
def test_body_must_be_an_object(client, caller, body):
    """A JSON body that is not an object is a 400."""
    import json

    response = client.post("/api/personal_api_keys/", data=json.dumps(body),
                           content_type="application/json", headers=caller[1])
    assert_problem(response, 400)


@pytest.mark.parametrize("path", ["/api/personal_api_keys/", "/api/verify/"])
def test_a_body_that_is_neither_json_nor_a_form_is_415(client, caller, path):
    """text/plain (or any other type) is 415 Unsupported Media Type."""
    response = client.post(path, data='{"label": "x", "key": "x"}', content_type="text/plain",
                           headers=caller[1])
    assert_problem(response, 415)


def test_oversized_body_is_413(make_app, user, make_key):
    """A body past KEYVAULT_MAX_BODY_BYTES is 413 problem+json; one under it is served."""
    app = make_app(KEYVAULT_MAX_BODY_BYTES="2048")
    app.test_client_class = FreshContextClient
    client = app.test_client()
    _, value = make_key(user, scopes=["*"])
    before = rows()
    response = client.post("/api/personal_api_keys/", headers=bearer(value),
                           json={"label": "big", "scopes": ["*"], "description": "x" * 3000})
    body = assert_problem(response, 413)
    assert "2048" in body["detail"]
    verify = client.post("/api/verify/", headers=bearer(value),
                         json={"key": value, "padding": "x" * 3000})
    assert_problem(verify, 413)
    assert rows() == before
    fits = client.post("/api/personal_api_keys/", headers=bearer(value),
                       json={"label": "fits", "scopes": ["*"], "description": "x" * 1000})
    assert fits.status_code == 201


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/api/personal_api_keys/", {"GET", "POST"}),
    ("DELETE", "/api/personal_api_keys/", {"GET", "POST"}),
    ("POST", "/api/personal_api_keys/{id}/", {"GET", "PATCH", "DELETE"}),
    ("GET", "/api/personal_api_keys/{id}/roll/", {"POST"}),
    ("GET", "/api/verify/", {"POST"}),
    ("POST", "/api/users/@me/", {"GET"}),
])
def test_wrong_method_is_405_with_allow(client, caller, method, path, allowed):
    """405 is problem+json and keeps the Allow header."""
    response = client.open(path.format(id=caller[0].public_id), method=method,
                           headers=caller[1])
    assert_problem(response, 405)
    methods = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed <= methods


@pytest.mark.parametrize("path", ["/api/", "/api/nothing", "/api/personal_api_keys/x/y/z/",
                                  "/api/users/@you/"])
def test_unknown_api_path_is_404_problem(client, caller, path):
    """Paths under /api/ that do not exist answer problem+json, not an HTML page."""
    assert_problem(client.get(path, headers=caller[1]), 404)


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", "/api/personal_api_keys/", {"json": {"label": "nul\x00byte"}}),
    ("POST", "/api/personal_api_keys/", {"json": {"label": "ok", "description": "nul\x00"}}),
    ("POST", "/api/personal_api_keys/", {"data": '{"label": "lone \\ud800 surrogate"}',
                                         "content_type": "application/json"}),
    ("POST", "/api/personal_api_keys/", {"json": {"label": "ok", "scopes": ["a\x00:read"]}}),
    ("POST", "/api/personal_api_keys/", {"json": {"label": "ok", "scopes": [[["deep"]]]}}),
    ("POST", "/api/personal_api_keys/", {"json": {"label": "ok", "scopes": ["*"],
                                                  "expires_at": "9999-12-31T23:59:59Z"}}),
    ("POST", "/api/personal_api_keys/", {"json": {"label": "ok", "scopes": ["*"],
                                                  "expires_at": "2030-02-30T00:00:00Z"}}),
    ("POST", "/api/personal_api_keys/", {"json": {"label": {"nested": True}}}),
    ("POST", "/api/personal_api_keys/", {"data": "1" * 500, "content_type": "application/json"}),
    ("POST", "/api/personal_api_keys/", {"data": "label=x&scopes=*",
                                         "content_type": "application/x-www-form-urlencoded"}),
    ("GET", "/api/personal_api_keys/nul%00id/", {}),
    ("GET", "/api/personal_api_keys/%ED%A0%80/", {}),
    ("GET", "/api/personal_api_keys/" + "x" * 5000 + "/", {}),
    ("GET", "/api/personal_api_keys/?limit=99999999999999999999", {}),
    ("GET", "/api/personal_api_keys/?cursor=%00", {}),
    ("GET", "/api/personal_api_keys/?include_revoked=maybe", {}),
    ("POST", "/api/personal_api_keys/{id}/roll/", {"json": {"grace_period_seconds": 10**30}}),
    ("POST", "/api/verify/", {"json": {"key": "kv_\x00" * 20}}),
    ("POST", "/api/verify/", {"json": {"key": ["kv_x"]}}),
    ("POST", "/api/verify/", {"json": {"key": "kv_x", "scopes": "user:read"}}),
    ("POST", "/api/verify/", {"json": {"token": {"a": 1}}}),
    ("POST", "/api/verify/", {"data": "token=", "content_type": "application/x-www-form-urlencoded"}),
    ("GET", "/api/forward_auth/?scopes=%00", {}),
])
def test_no_input_gives_a_500(client, caller, method, path, kwargs):
    """Hostile or nonsensical input is a 4xx problem (or a plain answer), never a 500."""
    before = rows()
    response = client.open(path.format(id=caller[0].public_id), method=method,
                           headers=caller[1], **kwargs)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert_problem(response, response.status_code)
    else:
        assert response.status_code in (200, 201)
    if response.status_code >= 400 and method == "POST":
        assert rows() == before


def test_failed_create_writes_no_row_and_no_event(client, caller):
    """Each kind of refused create leaves the keys and the security log as they were."""
    before = rows()
    refused = [
        {"label": "ok", "scopes": ["nope:read"]},
        {"label": ""},
        {"label": "ok", "scopes": ["*"], "expires_at": "yesterday"},
        {"label": "ok", "scopes": ["*"], "unexpected": 1},
        {"label": "ok"},  # no scopes: chosen on every door
    ]
    for body in refused:
        response = client.post("/api/personal_api_keys/", json=body, headers=caller[1])
        assert response.status_code == 400
    assert rows() == before
    assert client.post("/api/personal_api_keys/", json={"label": "ok", "scopes": ["user:read"]},
                       headers=caller[1]).status_code == 201
    keys, events = rows()
    assert keys == before[0] + 1
    assert events == before[1] + 1  # exactly one key.created


# ---------------------------------------------------------------- keys that make keys


@pytest.mark.parametrize(("asked", "status"), [
    (None, 201),                   # no expiry asked for: the new key ends with the creator
    (timedelta(days=3), 201),      # ending sooner is fine
    (timedelta(days=7), 201),      # the same instant is fine
    (timedelta(days=8), 400),      # later is refused
    ("null", 201),                 # null, like no expires_at, ends with the creator
])
def test_a_key_that_expires_cannot_create_one_that_outlives_it(client, user, make_key, asked,
                                                               status):
    """Otherwise a short-lived key with personal_api_key:write could mint a lasting one."""
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    _, value = make_key(user, label="short-lived", scopes=["*"], expires_at=ends)
    body = {"label": "minted", "scopes": ["user:read"]}
    if isinstance(asked, timedelta):
        body["expires_at"] = (ends - timedelta(days=7) + asked).isoformat()
    elif asked == "null":
        body["expires_at"] = None
    before = rows()
    response = client.post("/api/personal_api_keys/", json=body, headers=bearer(value))
    if status == 400:
        problem = assert_problem(response, 400)
        assert problem.get("field") == "expires_at" and "outlive" in problem["detail"]
        assert rows() == before
        return
    assert response.status_code == 201, response.get_data(as_text=True)
    made = datetime.fromisoformat(response.json["expires_at"].replace("Z", "+00:00"))
    assert made == (ends - timedelta(days=7) + asked if isinstance(asked, timedelta) else ends)


def test_a_key_without_expiry_may_still_create_one_without_expiry(client, caller):
    response = client.post("/api/personal_api_keys/", json={"label": "lasting", "scopes": ["*"]},
                           headers=caller[1])
    assert response.status_code == 201
    assert response.json["expires_at"] is None


def test_an_old_value_in_its_grace_period_creates_keys_that_end_with_it(client, user, make_key):
    """After a roll, the old value works until its grace period ends; what it creates ends then."""
    key, old = make_key(user, label="rolled", scopes=["*"])
    service.roll_key(user, key.public_id, grace_period_seconds=3600, origin=service.Origin())
    response = client.post("/api/personal_api_keys/", json={"label": "from the old value",
                                                           "scopes": ["user:read"]},
                           headers=bearer(old))
    assert response.status_code == 201, response.get_data(as_text=True)
    db.session.expire_all()
    grace_end = db.session.get(ApiKey, key.id).previous_expires_at
    made = datetime.fromisoformat(response.json["expires_at"].replace("Z", "+00:00"))
    assert made == grace_end


@pytest.mark.parametrize(("target_ends", "status"), [
    (None, 400),                  # rolling a lasting key would hand out a lasting value
    (timedelta(days=8), 400),     # so would one that outlives the presenting key
    (timedelta(days=3), 200),     # one that ends sooner may be rolled
    ("itself", 200),              # and a key may roll itself
])
def test_a_key_that_expires_cannot_roll_one_that_outlives_it(client, user, make_key,
                                                             target_ends, status):
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    short, value = make_key(user, label="short-lived", scopes=["*"], expires_at=ends)
    if target_ends == "itself":
        target = short
    else:
        target, _ = make_key(user, label="target", scopes=["user:read"], expires_at=(
            None if target_ends is None else ends - timedelta(days=7) + target_ends))
    before = rows()
    response = client.post(f"/api/personal_api_keys/{target.public_id}/roll/", json={},
                           headers=bearer(value))
    if status == 400:
        assert "outlives" in assert_problem(response, 400)["detail"]
        assert rows() == before
    else:
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.json["value"]
