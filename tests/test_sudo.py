"""Sudo mode: sensitive browser actions after a stale login ask for the password, then go on."""

from __future__ import annotations

import time
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import ApiKey, FormSubmission, SecurityEvent, User
from tests.conftest import PASSWORD, AuthActions, FreshContextClient, csrf_from, once_token, shown_key

ORIGIN = service.Origin("127.0.0.1", "pytest")


class ReplayForm(HTMLParser):
    """The hidden fields of the form on a page that posts to `action`."""

    def __init__(self, html: str, action: str):
        super().__init__()
        self.action, self.inside, self.found, self.fields = action, False, False, []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("action") == self.action
            self.found = self.found or self.inside
        elif tag == "input" and self.inside and attrs.get("type") == "hidden":
            self.fields.append((attrs["name"], attrs.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False


def make_stale(client, app) -> None:
    """Pretend the login happened one minute longer ago than the sudo window."""
    with client.session_transaction() as session:
        session["auth_at"] = int(time.time()) - (app.config["KEYVAULT_SUDO_MINUTES"] + 1) * 60


def is_prompt(response) -> bool:
    return 'name="sudo_password"' in response.get_data(as_text=True)


def replay(client, response, action: str, password: str):
    """Answer a password prompt: post its hidden fields back with the password."""
    form = ReplayForm(response.get_data(as_text=True), action)
    assert form.found, f"the prompt does not post to {action}"
    return client.post(action, data=MultiDict([*form.fields, ("sudo_password", password)]))


def keys_of(user: User) -> list[ApiKey]:
    db.session.expire_all()
    return list(db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id)))


def user_count() -> int:
    return db.session.scalar(select(func.count(User.id)))


LABEL = 'CI "deploys" <main> & co'


def post_create(client):
    page = client.get("/settings/api-keys").get_data(as_text=True)
    return client.post("/settings/api-keys", data=MultiDict([
        ("label", LABEL), ("description", "nightly"), ("expiry", "7"), ("preset", "custom"),
        ("scopes", "user:read"), ("scopes", "key:verify"), ("csrf_token", csrf_from(page)),
        ("once", once_token(page))]))


def post_roll(client, key: ApiKey, grace: str = "3600"):
    page = client.get(f"/settings/api-keys/{key.public_id}/roll").get_data(as_text=True)
    return client.post(f"/settings/api-keys/{key.public_id}/roll",
                       data={"grace": grace, "csrf_token": csrf_from(page),
                             "once": once_token(page, "roll")})


def post_delete(client):
    token = csrf_from(client.get("/settings/account").get_data(as_text=True))
    return client.post("/settings/account/delete", data={"csrf_token": token})


def post_edit(client, key: ApiKey, scopes: list[str]):
    path = f"/settings/api-keys/{key.public_id}/edit"
    token = csrf_from(client.get(path).get_data(as_text=True))
    return client.post(path, data=MultiDict(
        [("label", key.label), ("description", ""), ("csrf_token", token)]
        + [("scopes", s) for s in scopes]))


# ---------------------------------------------------------------- creating a key


def test_stale_login_is_asked_for_its_password_before_creating(client, auth, app, user):
    """A stale session's create gets a password prompt, and no key is made yet."""
    auth.login()
    make_stale(client, app)
    response = post_create(client)
    assert response.status_code == 200
    assert is_prompt(response)
    assert shown_key(response.get_data(as_text=True)) is None
    assert keys_of(user) == []


def test_create_completes_after_the_password_with_what_was_typed(client, auth, app, user):
    """Confirming the password creates the key in that same response, exactly as first typed."""
    auth.login()
    make_stale(client, app)
    response = replay(client, post_create(client), "/settings/api-keys", PASSWORD)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    value = shown_key(response.get_data(as_text=True))
    [key] = keys_of(user)
    assert (key.label, key.description, key.scopes) == (LABEL, "nightly", ["user:read", "key:verify"])
    assert timedelta(days=7) - (key.expires_at - key.created_at) < timedelta(seconds=5)
    assert service.verify_key(value).public_id == key.public_id

    # The confirmation renews the sudo window: the next sensitive action needs no prompt.
    again = post_roll(client, key, "0")
    assert again.status_code == 200 and shown_key(again.get_data(as_text=True))


def test_wrong_password_creates_nothing_and_asks_again(client, auth, app, user):
    """A wrong password is 400 with the prompt again; a right one afterwards creates one key."""
    auth.login()
    make_stale(client, app)
    wrong = replay(client, post_create(client), "/settings/api-keys", "not my password")
    assert wrong.status_code == 400
    assert is_prompt(wrong)
    assert "That password is not right." in wrong.get_data(as_text=True)
    assert keys_of(user) == []
    assert sudo_failures(user) == 1  # guessing with a borrowed session leaves a trace

    right = replay(client, wrong, "/settings/api-keys", PASSWORD)
    assert right.status_code == 200
    assert [key.label for key in keys_of(user)] == [LABEL]
    assert sudo_failures(user) == 1


def sudo_failures(user) -> int:
    return db.session.scalar(select(func.count()).select_from(SecurityEvent).where(
        SecurityEvent.user_id == user.id, SecurityEvent.event == "sudo.failed"))


def test_a_wrong_password_on_the_confirm_page_is_logged(client, auth, app, user):
    """The stand-alone prompt (GET /confirm) records a wrong password too, and not a right one."""
    auth.login()
    make_stale(client, app)
    page = client.get("/confirm?next=/settings/api-keys")
    form = {"csrf_token": csrf_from(page.get_data(as_text=True)), "next": "/settings/api-keys"}
    assert client.post("/confirm", data={**form, "password": "guess"}).status_code == 400
    assert sudo_failures(user) == 1
    assert client.post("/confirm", data={**form, "password": PASSWORD}).status_code == 302
    assert sudo_failures(user) == 1


def test_fresh_login_needs_no_prompt(client, auth, user, make_key):
    """Right after logging in, create and roll go straight through."""
    auth.login()
    created = post_create(client)
    assert created.status_code == 200 and not is_prompt(created)
    assert shown_key(created.get_data(as_text=True))
    [key] = keys_of(user)
    rolled = post_roll(client, key)
    assert rolled.status_code == 200 and not is_prompt(rolled)


def test_viewing_the_page_when_stale_needs_no_password(client, auth, app, user):
    """Only the sensitive actions ask; reading the settings page does not."""
    auth.login()
    make_stale(client, app)
    response = client.get("/settings/api-keys")
    assert response.status_code == 200 and not is_prompt(response)


@pytest.mark.parametrize(("sudo_minutes", "minutes_after_login", "prompted"), [
    (None, 0, False),
    (None, 119, False),
    (None, 121, True),
    (None, 60 * 24, True),
    ("5", 4, False),
    ("5", 6, True),
])
def test_sudo_window_follows_the_setting(make_app, user, frozen, sudo_minutes,
                                         minutes_after_login, prompted):
    """A login counts as recent for KEYVAULT_SUDO_MINUTES (default 120), measured on the clock."""
    app = make_app(**({"KEYVAULT_SUDO_MINUTES": sudo_minutes} if sudo_minutes else {}))
    app.test_client_class = FreshContextClient
    client = app.test_client()
    AuthActions(client).login()
    frozen.at += timedelta(minutes=minutes_after_login)
    response = post_create(client)
    assert is_prompt(response) is prompted
    assert (shown_key(response.get_data(as_text=True)) is None) is prompted


# ---------------------------------------------------------------- rolling a key


def test_stale_roll_asks_then_rolls_with_the_chosen_grace(client, auth, app, user, make_key):
    """Rolling when stale prompts first, then rolls with the grace period picked before."""
    key, old = make_key(user, label="deploys")
    auth.login()
    make_stale(client, app)
    action = f"/settings/api-keys/{key.public_id}/roll"
    prompt = post_roll(client, key, "3600")
    assert prompt.status_code == 200 and is_prompt(prompt)
    assert service.verify_key(old).rolled is False

    wrong = replay(client, prompt, action, "not my password")
    assert wrong.status_code == 400
    assert service.verify_key(old).rolled is False
    assert keys_of(user)[0].last_rolled_at is None

    done = replay(client, wrong, action, PASSWORD)
    assert done.status_code == 200
    new = shown_key(done.get_data(as_text=True))
    assert service.verify_key(new).code == "valid"
    old_verdict = service.verify_key(old)
    assert (old_verdict.code, old_verdict.rolled) == ("valid", True)
    remaining = old_verdict.old_value_expires_at - clock.now()
    assert timedelta(minutes=59) < remaining <= timedelta(hours=1)


# ---------------------------------------------------------------- deleting the account


def test_stale_account_deletion_asks_then_deletes(client, auth, app, user, make_key):
    """Deleting the account when stale prompts; a wrong password keeps it, the right one ends it."""
    _, value = make_key(user, label="deploys")
    auth.login()
    make_stale(client, app)
    prompt = post_delete(client)
    assert prompt.status_code == 200 and is_prompt(prompt)
    wrong = replay(client, prompt, "/settings/account/delete", "not my password")
    assert wrong.status_code == 400
    assert user_count() == 1
    assert service.verify_key(value).code == "valid"

    done = replay(client, wrong, "/settings/account/delete", PASSWORD)
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    assert user_count() == 0
    assert service.verify_key(value).code == "not_found"


def test_account_deletion_deletes_every_key(client, auth, user, make_user, make_key):
    """Right after logging in, deleting the account needs no prompt; its keys verify not_found."""
    _, verifier = make_key(make_user("service@example.com"), label="verifier",
                           scopes=["key:verify"])
    values = [make_key(user, label=f"key {n}")[1] for n in range(3)]
    rolled, old_value = make_key(user, label="rolled")
    values += [old_value, service.roll_key(user, rolled.public_id, origin=ORIGIN,
                                           grace_period_seconds=3600)[1]]
    auth.login()
    values.append(shown_key(post_create(client).get_data(as_text=True)))  # a form that acted
    response = post_delete(client)
    assert response.status_code == 302 and not is_prompt(response)
    assert user_count() == 1
    assert db.session.scalar(select(func.count(ApiKey.id)).where(ApiKey.label != "verifier")) == 0
    assert db.session.scalar(select(func.count(FormSubmission.id))) == 0
    for value in values:
        answer = client.post("/api/verify/", json={"key": value},
                             headers={"Authorization": f"Bearer {verifier}"}).json
        assert answer == {"active": False, "code": "not_found"}
    assert client.get("/settings/api-keys").status_code == 302
    assert auth.login().status_code == 400


# ---------------------------------------------------------------- editing scopes


def test_widening_scopes_when_stale_asks_for_the_password(client, auth, app, user, make_key):
    """Adding a scope to a key after a stale login prompts, then saves the wider scopes."""
    key, _ = make_key(user, label="reader", scopes=["user:read"])
    auth.login()
    make_stale(client, app)
    action = f"/settings/api-keys/{key.public_id}/edit"
    prompt = post_edit(client, key, ["user:read", "key:verify"])
    assert prompt.status_code == 200 and is_prompt(prompt)
    assert keys_of(user)[0].scopes == ["user:read"]

    assert replay(client, prompt, action, "not my password").status_code == 400
    assert keys_of(user)[0].scopes == ["user:read"]

    done = replay(client, prompt, action, PASSWORD)
    assert done.status_code == 302
    assert keys_of(user)[0].scopes == ["user:read", "key:verify"]


def test_narrowing_scopes_when_stale_needs_no_password(client, auth, app, user, make_key):
    """Removing a scope is always allowed: no prompt, saved at once."""
    key, _ = make_key(user, label="both", scopes=["user:read", "key:verify"])
    auth.login()
    make_stale(client, app)
    response = post_edit(client, key, ["user:read"])
    assert response.status_code == 302 and not is_prompt(response)
    assert keys_of(user)[0].scopes == ["user:read"]
