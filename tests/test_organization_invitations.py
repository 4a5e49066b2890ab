"""Invitations: a signed link mailed through the outbox, accepted once, for 7 days, by the
invited address only; inviting says the same whether or not the address has an account."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from keyvault import service
from keyvault.extensions import db
from keyvault.models import MailOutbox
from tests.conftest import send_mail, text_of
from tests.org_world import ORIGIN, build


@pytest.fixture
def world(frozen, make_user):
    return build(make_user)


def invite(client, world, email, role="member"):
    return client.post(f"/api/organizations/{world.org}/invitations/", headers=world.headers("owner"),
                       json={"email": email, "role": role})


def token_mailed_to(email: str) -> str:
    mail = db.session.scalars(select(MailOutbox).where(MailOutbox.to_address == email,
                                                       MailOutbox.kind == "org_invitation")
                              .order_by(MailOutbox.id.desc())).first()
    return re.search(r"/organizations/invitations/(\S+)", mail.text_body).group(1)


def service_outbox_body(email: str) -> str:
    return db.session.scalar(select(MailOutbox.text_body).where(
        MailOutbox.to_address == email, MailOutbox.kind == "org_invitation"))


def accept(client, value, token):
    return client.post("/api/invitations/accept/", json={"invitation_token": token},
                       headers={"Authorization": f"Bearer {value}"})


def test_an_invitation_is_mailed_and_accepted_once(app, client, world, make_user, smtp_server):
    assert invite(client, world, "grace@example.com", "admin").status_code == 201
    send_mail(app)
    [mail] = smtp_server.to("grace@example.com")
    assert "Acme" in mail["Subject"] and "/organizations/invitations/" in text_of(mail)
    grace = make_user("grace@example.com")
    _, value = service.create_key(grace, label="k", scopes=["*"], origin=ORIGIN)
    token = re.search(r"/organizations/invitations/(\S+)", text_of(mail)).group(1)
    sent = service_outbox_body("grace@example.com")
    assert sent == ""  # the link is a secret: the outbox forgets it once sent
    joined = accept(client, value, token)
    assert (joined.status_code, joined.json["id"], joined.json["role"]) == (200, world.org, "admin")
    again = accept(client, value, token)
    assert again.status_code == 400 and "already" in again.json["detail"]
    assert client.get(f"/api/organizations/{world.org}/invitations/",
                      headers=world.headers("owner")).json["results"][0]["email"] != \
        "grace@example.com"


def test_an_invitation_expires_after_seven_days(client, world, make_user, frozen):
    invite(client, world, "late@example.com")
    late = make_user("late@example.com")
    _, value = service.create_key(late, label="k", scopes=["*"], origin=ORIGIN)
    frozen.at += timedelta(days=7, seconds=1)
    refused = accept(client, value, token_mailed_to("late@example.com"))
    assert refused.status_code == 400 and "expired" in refused.json["detail"]


def test_an_invitation_is_refused_for_another_address(client, world, make_user):
    invite(client, world, "right@example.com")
    token = token_mailed_to("right@example.com")
    wrong = make_user("wrong@example.com")
    _, value = service.create_key(wrong, label="k", scopes=["*"], origin=ORIGIN)
    refused = accept(client, value, token)
    assert refused.status_code == 403 and "another email" in refused.json["detail"]
    right = make_user("right@example.com")
    _, value = service.create_key(right, label="k", scopes=["*"], origin=ORIGIN)
    assert accept(client, value, token).status_code == 200


def test_an_altered_or_revoked_link_does_not_work(client, world, make_user):
    invite(client, world, "x@example.com")
    token = token_mailed_to("x@example.com")
    person = make_user("x@example.com")
    _, value = service.create_key(person, label="k", scopes=["*"], origin=ORIGIN)
    assert accept(client, value, token[:-2] + "zz").status_code == 400
    pending = client.get(f"/api/organizations/{world.org}/invitations/",
                         headers=world.headers("admin")).json["results"]
    ours = next(i for i in pending if i["email"] == "x@example.com")
    assert client.delete(f"/api/organizations/{world.org}/invitations/{ours['id']}/",
                         headers=world.headers("admin")).status_code == 204
    assert accept(client, value, token).status_code == 400


def test_inviting_tells_nothing_about_accounts(client, world, make_user):
    """An address with an account and one without get the same answer, and both a mail."""
    make_user("known@example.com")
    known = invite(client, world, "known@example.com")
    unknown = invite(client, world, "nobody@example.com")
    assert known.status_code == unknown.status_code == 201
    assert set(known.json) == set(unknown.json)
    assert token_mailed_to("known@example.com") and token_mailed_to("nobody@example.com")
