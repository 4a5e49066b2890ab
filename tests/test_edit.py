"""Editing a key: label and description freely, scopes only narrower (wider needs the password)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey
from tests.conftest import AuthActions, FreshContextClient, csrf_from, shown_key

ORIGIN = service.Origin("127.0.0.1", "pytest")


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def reload(key: ApiKey) -> ApiKey:
    db.session.expire_all()
    return db.session.get(ApiKey, key.id)


def facts(key: ApiKey) -> tuple:
    key = reload(key)
    return key.label, key.description, key.scopes


def edit_on_page(client, key: ApiKey, label: str, description: str, scopes: list[str]):
    path = f"/settings/api-keys/{key.public_id}/edit"
    token = csrf_from(client.get("/settings/api-keys").get_data(as_text=True))
    return client.post(path, data=MultiDict(
        [("label", label), ("description", description), ("csrf_token", token)]
        + [("scopes", s) for s in scopes]))


@pytest.fixture
def tool(user, make_key):
    """The user's own full-access key, for the API."""
    return make_key(user, label="tool", scopes=["*"])[1]


# ---------------------------------------------------------------- the page


def test_edit_page_shows_the_key_as_it_is(client, auth, user, make_key):
    """The edit form starts from the key's label, description and ticked scopes."""
    key, value = make_key(user, label="deploys", description="nightly job",
                          scopes=["user:read", "key:verify"])
    auth.login()
    html = client.get(f"/settings/api-keys/{key.public_id}/edit").get_data(as_text=True)
    assert 'value="deploys"' in html and "nightly job" in html
    ticked = re.findall(r'<input checked[^>]*value="([^"]+)"|<input[^>]*value="([^"]+)"[^>]*checked',
                        html)
    # its scopes ticked, and where it works: all services (it is not restricted)
    assert sorted(a or b for a, b in ticked) == ["all", "key:verify", "user:read"]
    assert key.mask in html and value not in html


def test_page_changes_label_and_description(client, auth, user, make_key):
    """Saving new text changes label and description, and the list shows the new label."""
    key, value = make_key(user, label="old name", description="old text", scopes=["user:read"])
    auth.login()
    response = edit_on_page(client, key, "  new name ", "new text", ["user:read"])
    assert response.status_code == 302
    assert facts(key) == ("new name", "new text", ["user:read"])
    listing = client.get("/settings/api-keys").get_data(as_text=True)
    assert "new name" in listing and "old name" not in listing
    assert service.verify_key(value).code == "valid"


def test_page_narrows_scopes(client, auth, user, make_key):
    """Unticking a scope removes it from the key at once."""
    key, value = make_key(user, label="both", scopes=["user:read", "key:verify"])
    auth.login()
    assert edit_on_page(client, key, "both", "", ["key:verify"]).status_code == 302
    assert facts(key)[2] == ["key:verify"]
    assert service.verify_key(value, ["user:read"]).code == "insufficient_scope"


@pytest.mark.parametrize(("label", "description", "scopes", "message"), [
    ("x" * 41, "", ["user:read"], "40"),
    ("   ", "", ["user:read"], "Give the key a label."),
    ("ok", "d" * 1001, ["user:read"], "1000"),
    ("ok", "", ["no:such"], "Choose scopes from the list."),
    ("ok", "", [], "Tick at least one scope"),
])
def test_page_refuses_bad_edits(client, auth, user, make_key, label, description, scopes, message):
    """Too long, empty, unknown or no scopes at all: a form error, and the key is unchanged."""
    key, _ = make_key(user, label="keep", description="as is", scopes=["user:read"])
    auth.login()
    response = edit_on_page(client, key, label, description, scopes)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert "not a valid choice" not in html.lower() and "scopes must" not in html
    assert facts(key) == ("keep", "as is", ["user:read"])


def test_page_refuses_to_edit_a_revoked_key(client, auth, user, make_key):
    """A revoked key's label cannot be changed from the page."""
    key, _ = make_key(user, label="gone")
    service.revoke_key(user, key.public_id, ORIGIN)
    auth.login()
    response = edit_on_page(client, key, "renamed", "", ["*"])
    assert response.status_code == 303
    assert facts(key)[0] == "gone"


def test_edit_page_of_a_revoked_key_sends_you_back_to_its_page(client, auth, user, make_key):
    """No form for a key that cannot change: back to the key's page, with the reason shown."""
    key, _ = make_key(user, label="gone")
    service.revoke_key(user, key.public_id, ORIGIN)
    auth.login()
    response = client.get(f"/settings/api-keys/{key.public_id}/edit")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/settings/api-keys/{key.public_id}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "is revoked: it can no longer be edited" in page


@pytest.mark.parametrize("method", ["get", "post"])
def test_page_hides_another_users_key(client, auth, user, make_user, make_key, method):
    """Someone else's key is a 404 on the edit page, and is not changed."""
    theirs, _ = make_key(make_user("mallory@example.com"), label="theirs", scopes=["user:read"])
    auth.login()
    if method == "get":
        response = client.get(f"/settings/api-keys/{theirs.public_id}/edit")
    else:
        response = edit_on_page(client, theirs, "pwned", "", ["*"])
    assert response.status_code == 404
    assert facts(theirs) == ("theirs", "", ["user:read"])


# ---------------------------------------------------------------- the API


def test_api_changes_label_and_description(client, user, make_key, tool):
    """PATCH changes just the fields sent and answers with the key (never its value)."""
    key, value = make_key(user, label="old", description="old text", scopes=["user:read"])
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                            json={"label": "renamed"}, headers=bearer(tool))
    assert response.status_code == 200
    assert (response.json["label"], response.json["description"]) == ("renamed", "old text")
    assert "value" not in response.json and value not in response.get_data(as_text=True)
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                            json={"description": ""}, headers=bearer(tool))
    assert response.status_code == 200
    assert facts(key) == ("renamed", "", ["user:read"])


@pytest.mark.parametrize(("before", "after"), [
    (["user:read", "key:verify"], ["user:read"]),
    (["*"], ["personal_api_key:read"]),
    (["personal_api_key:write"], ["personal_api_key:read"]),
])
def test_api_narrows_scopes(client, user, make_key, tool, before, after):
    """Narrowing through the API needs no password: the new, smaller set applies at once."""
    key, value = make_key(user, label="narrowed", scopes=before)
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                            json={"scopes": after}, headers=bearer(tool))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["scopes"] == after
    assert service.verify_key(value).scopes == after


@pytest.mark.parametrize(("before", "after"), [
    (["user:read"], ["user:read", "key:verify"]),
    (["user:read"], ["*"]),
    (["personal_api_key:read"], ["personal_api_key:write"]),
])
def test_api_cannot_widen_scopes(client, user, make_key, tool, before, after):
    """An API key can't re-authenticate, so widening is 403 even for a full-access key."""
    key, _ = make_key(user, label="narrow", scopes=before)
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                            json={"scopes": after}, headers=bearer(tool))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "insufficient_scope"
    assert facts(key)[2] == before


@pytest.mark.parametrize(("body", "field"), [
    ({"label": "x" * 41}, "label"),
    ({"label": ""}, "label"),
    ({"label": 7}, "label"),
    ({"description": "d" * 1001}, "description"),
    ({"scopes": []}, "scopes"),
    ({"scopes": ["no:such"]}, "scopes"),
    ({"scopes": "user:read"}, "scopes"),
    ({"value": "kv_x"}, "value"),
])
def test_api_refuses_bad_edits(client, user, make_key, tool, body, field):
    """Invalid fields are a 400 problem naming the field; nothing changes."""
    key, _ = make_key(user, label="keep", scopes=["user:read"])
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/", json=body,
                            headers=bearer(tool))
    assert response.status_code == 400
    assert response.json["field"] == field
    assert facts(key) == ("keep", "", ["user:read"])


def test_api_refuses_to_edit_a_revoked_key(client, user, make_key, tool):
    """A revoked key is 409 on PATCH and keeps its label."""
    key, _ = make_key(user, label="gone")
    service.revoke_key(user, key.public_id, ORIGIN)
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                            json={"label": "renamed"}, headers=bearer(tool))
    assert response.status_code == 409
    assert facts(key)[0] == "gone"


def test_api_hides_another_users_key(client, user, make_user, make_key, tool):
    """PATCH on someone else's key is 404, exactly like a key that does not exist."""
    theirs, _ = make_key(make_user("mallory@example.com"), label="theirs", scopes=["user:read"])
    response = client.patch(f"/api/personal_api_keys/{theirs.public_id}/",
                            json={"label": "pwned"}, headers=bearer(tool))
    missing = client.patch("/api/personal_api_keys/doesnotexist/",
                           json={"label": "pwned"}, headers=bearer(tool))
    assert response.status_code == missing.status_code == 404
    assert response.json == missing.json
    assert facts(theirs)[0] == "theirs"


def test_api_edit_needs_write_scope(client, user, make_key):
    """A key with only personal_api_key:read cannot edit: 403."""
    _, reader = make_key(user, label="reader", scopes=["personal_api_key:read"])
    key, _ = make_key(user, label="keep")
    response = client.patch(f"/api/personal_api_keys/{key.public_id}/",
                            json={"label": "renamed"}, headers=bearer(reader))
    assert response.status_code == 403
    assert facts(key)[0] == "keep"


# ---------------------------------------------------------------- choosing scopes when creating


def created_scopes(auth, **fields) -> list[str]:
    response = auth.create_key("scoped", **fields)
    assert response.status_code == 200, response.get_data(as_text=True)
    db.session.expire_all()
    return db.session.scalars(select(ApiKey).order_by(ApiKey.id.desc())).first().scopes


@pytest.mark.parametrize(("fields", "scopes"), [
    ({"preset": "full"}, ["*"]),
    ({"preset": "read_only"}, ["personal_api_key:read", "user:read", "organization:read",
                               "webhook:read"]),
    ({"preset": "verify"}, ["key:verify"]),
    ({"preset": "custom", "scopes": ["user:read", "key:verify"]}, ["user:read", "key:verify"]),
    ({"preset": "read_only", "scopes": ["personal_api_key:write"]},
     ["personal_api_key:read", "user:read", "organization:read", "webhook:read"]),
])
def test_create_form_presets_choose_the_scopes(auth, user, fields, scopes):
    """Full access, Read only, Verify keys and a custom choice give the key those scopes."""
    auth.login()
    assert created_scopes(auth, **fields) == scopes


def test_read_only_preset_covers_the_services_read_scopes(make_app, make_user):
    """Read only takes every `:read` scope of the catalogue, a service's own ones included."""
    app = make_app(KEYVAULT_SCOPES="feature_flag:read,feature_flag:write,billing:read")
    app.test_client_class = FreshContextClient
    make_user("alice@example.com")
    auth = AuthActions(app.test_client())
    auth.login()
    assert created_scopes(auth, preset="read_only") == [
        "personal_api_key:read", "user:read", "organization:read", "webhook:read",
        "feature_flag:read", "billing:read"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"preset": "custom"}, "Tick at least one scope, or choose another kind of access."),
    ({"preset": "custom", "scopes": ["no:such"]}, "Choose scopes from the list."),
    ({"preset": "everything"}, "Choose what this key may do"),
    ({"preset": ""}, "Choose what this key may do"),
])
def test_create_form_refuses_bad_scope_choices(auth, user, fields, message):
    """No scope ticked, an unknown scope, an unknown preset or no access chosen at all is a form
    error in the person's words (one message, no library default); nothing is made."""
    auth.login()
    response = auth.create_key("scoped", **fields)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    errors = re.findall(r'<p class="error" role="alert">([^<]*)</p>', html)
    assert len(errors) == 1 and message in errors[0], errors
    assert "not a valid choice" not in html.lower()
    assert db.session.scalars(select(ApiKey)).first() is None


def test_read_only_key_cannot_write_and_verify_key_cannot_read(client, auth, user):
    """The presets' keys can do what their names say and nothing more."""
    auth.login()
    read_only = shown_key(auth.create_key("reader", preset="read_only").get_data(as_text=True))
    verifier = shown_key(auth.create_key("verifier", preset="verify").get_data(as_text=True))
    assert client.get("/api/personal_api_keys/", headers=bearer(read_only)).status_code == 200
    assert client.post("/api/personal_api_keys/", json={"label": "x"},
                       headers=bearer(read_only)).status_code == 403
    assert client.get("/api/personal_api_keys/", headers=bearer(verifier)).status_code == 403
    answer = client.post("/api/verify/", json={"key": read_only}, headers=bearer(verifier))
    assert answer.json["code"] == "valid"


def test_create_form_offers_the_presets_and_warns_about_full_access(client, auth, user):
    """The form names the presets, lists the catalogue's scopes and warns about full access."""
    auth.login()
    html = client.get("/settings/api-keys").get_data(as_text=True)
    form = re.search(r'<form[^>]*id="create-key-form".*?</form>', html, re.DOTALL).group(0)
    for label in ("Full access", "Read only", "Verify keys for a service", "Choose scopes"):
        assert label in form
    for scope in ("personal_api_key:read", "personal_api_key:write", "user:read", "key:verify"):
        assert f'value="{scope}"' in form
    warning = re.search(r'<p class="warning full-access-warning"[^>]*>(.*?)</p>', form, re.DOTALL)
    assert warning and "everything you can" in warning.group(1)


def test_create_form_chooses_no_access_for_you(client, auth, user):
    """Narrow by default: no access is pre-selected and the browser must have one chosen;
    every scope on offer says what it lets a key do."""
    auth.login()
    html = client.get("/settings/api-keys").get_data(as_text=True)
    form = re.search(r'<form[^>]*id="create-key-form".*?</form>', html, re.DOTALL).group(0)
    radios = re.findall(r'<input[^>]*name="preset"[^>]*>', form)
    assert len(radios) == 4
    assert all("required" in radio and "checked" not in radio for radio in radios)
    assert "novalidate" not in re.search(r'<form[^>]*id="create-key-form"[^>]*>', form).group(0)
    for scope, words in (("personal_api_key:read", "See your API keys"),
                         ("key:verify", "whether a key a service was handed is valid"),
                         ("*", "Full access")):
        item = re.search(rf'value="{re.escape(scope)}".*?</li>', form, re.DOTALL).group(0)
        assert words in item, item


def test_list_shows_each_keys_scopes(client, auth, user, make_key):
    """Each row of the list names the key's scopes."""
    reader, _ = make_key(user, label="reader", scopes=["user:read", "key:verify"])
    full, _ = make_key(user, label="full", scopes=["*"])
    auth.login()
    html = client.get("/settings/api-keys").get_data(as_text=True).replace("<wbr>", "")
    for key, scopes in ((reader, ["user:read", "key:verify"]), (full, ["*"])):
        row = re.search(rf'<tr data-key-id="{key.public_id}".*?</tr>', html, re.DOTALL).group(0)
        assert re.findall(r'<code class="scope"[^>]*>([^<]+)</code>', row) == scopes
