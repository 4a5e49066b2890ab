"""The webhooks pages: a person's endpoints (and their organisations' ones they manage), adding
one (its signing secret shown once), and one endpoint's delivery log with redeliver, send a test
event, roll the secret, turn it off or on, and remove it. The rules are service.webhooks'."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import clock, service
from ..extensions import db
from ..http.browser import already_submitted, no_store
from ..http.context import origin
from ..http.forms import GRACE_CHOICES
from ..org_models import Membership, Organization
from ..service import submissions
from ..service.organizations import RIGHTS
from ..service.webhook_delivery import EVENTS
from .views import bp

webhooks = service.webhooks
PAGE = 20


def _organizations() -> list[Organization]:
    """The organisations whose webhooks the person may add (their role allows it)."""
    return list(db.session.scalars(select(Organization).join(Membership).where(
        Membership.user_id == current_user.id, Membership.role.in_(RIGHTS["manage_webhooks"]),
        Organization.is_active.is_(True)).order_by(Organization.name)))


def _list_page(status: int = 200, **shown):
    page = webhooks.page_webhooks(current_user, 100, None)
    return render_template("settings/webhooks.html", webhooks=page.results, events=EVENTS,
                           organizations=_organizations(), form=request.form,
                           once=request.form.get("once") or submissions.new_token(),
                           **shown), status


def _already_done(refusal: submissions.AlreadySubmitted, done: str, back_to: str):
    return already_submitted(
        refusal, f"This form was already submitted: {done} then, and its signing secret was "
        "shown once, in that answer. If you did not copy it, roll the secret.", back_to)


@bp.get("/webhooks")
def webhooks_list():
    return _list_page()


@bp.post("/webhooks")
def webhook_create():
    form = request.form
    try:
        submissions.claim(current_user, form.get("once"))  # the form acts once
        created = webhooks.create_webhook(current_user, form.get("url", ""),
                                          form.getlist("events"), form.get("description"),
                                          origin=origin(),
                                          organization=form.get("organization") or None)
    except submissions.AlreadySubmitted as refusal:
        return _already_done(refusal, "the webhook was added", url_for(".webhooks_list"))
    except service.ServiceError as refusal:
        db.session.rollback()
        return _list_page(400 if refusal.status < 500 else refusal.status,
                          error=refusal.detail, error_field=refusal.field)
    no_store()  # the one page that shows the secret
    return _webhook_page(created.webhook, created.secret)


def _webhook(public_id: str, change: bool = False):
    try:
        return webhooks.get_webhook(current_user, public_id, change=change)
    except service.KeyNotFound:
        abort(404)


def _webhook_page(webhook, secret: str | None = None, cursor: str | None = None):
    """One endpoint's page: its secret when just made or rolled (shown this once), its
    deliveries, and its actions."""
    page = webhooks.page_deliveries(current_user, webhook.public_id, PAGE, cursor)
    return render_template("settings/webhook.html", webhook=webhook, secret=secret,
                           deliveries=page.results, next_cursor=page.next_cursor, events=EVENTS,
                           graces=GRACE_CHOICES, now=clock.now(), once=submissions.new_token())


@bp.get("/webhooks/<webhook_id>")
def webhook_page(webhook_id: str):
    return _webhook_page(_webhook(webhook_id), cursor=request.args.get("cursor"))


def _act(webhook_id: str, action, done: str):
    try:
        action()
    except service.KeyNotFound:
        db.session.rollback()
        abort(404)
    except service.ServiceError as refusal:
        db.session.rollback()
        flash(refusal.detail, "error")
    else:
        flash(done, "success")
    return redirect(url_for(".webhook_page", webhook_id=webhook_id), 303)


@bp.post("/webhooks/<webhook_id>/test")
def webhook_test(webhook_id: str):
    return _act(webhook_id, lambda: webhooks.send_test(current_user, webhook_id),
                "A test event is on its way: its delivery is listed below.")


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
def webhook_redeliver(webhook_id: str, delivery_id: str):
    return _act(webhook_id, lambda: webhooks.redeliver(current_user, webhook_id, delivery_id),
                "Queued again: the new delivery is listed below.")


@bp.post("/webhooks/<webhook_id>/enabled")
def webhook_enable(webhook_id: str):
    enabled = request.form.get("enabled") == "true"
    return _act(webhook_id, lambda: webhooks.update_webhook(current_user, webhook_id,
                                                            origin=origin(), enabled=enabled),
                "Turned on: events go to it again." if enabled else "Turned off.")


@bp.post("/webhooks/<webhook_id>/roll")
def webhook_roll(webhook_id: str):
    grace = request.form.get("grace_period_seconds", "0")
    back_to = url_for(".webhook_page", webhook_id=webhook_id)
    try:
        submissions.claim(current_user, request.form.get("once"))  # the form acts once
        rolled = webhooks.roll_secret(
            current_user, webhook_id, origin=origin(),
            # ASCII digits only ("²" is a digit to isdigit, not to int), and few enough of them
            # for int(): anything else is refused as the API refuses it.
            grace_period_seconds=int(grace) if grace.isascii() and grace.isdigit()
            and len(grace) <= 9 else grace)
    except submissions.AlreadySubmitted as refusal:
        return _already_done(refusal, "the secret was rolled", back_to)
    except service.KeyNotFound:
        db.session.rollback()
        abort(404)
    except service.ServiceError as refusal:
        db.session.rollback()
        flash(refusal.detail, "error")
        return redirect(back_to, 303)
    no_store()
    return _webhook_page(rolled.webhook, rolled.secret)


@bp.post("/webhooks/<webhook_id>/delete")
def webhook_delete(webhook_id: str):
    try:
        webhooks.delete_webhook(current_user, webhook_id, origin=origin())
    except service.KeyNotFound:
        abort(404)
    flash("Webhook removed.", "success")
    return redirect(url_for(".webhooks_list"), 303)
