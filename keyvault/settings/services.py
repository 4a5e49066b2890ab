"""An organisation's services, in the browser: the list and register form, and each service's
page (audience, scopes, its verify keys made, rolled and revoked there with the value shown
once, and how many keys are restricted to it). Members see; owners and admins change
(service.services checks, as for the API)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from .. import service
from ..extensions import db
from ..http.browser import no_store, sudo_required
from ..http.context import origin
from ..http.forms import ActionForm
from ..http.service_forms import ServiceForm, ServiceKeyForm
from ..service import submissions
from ..service.errors import KeyNotFound, NotAllowed
from .views import bp

services = service.services


def _or_404(call, *args):
    try:
        return call(*args)
    except KeyNotFound:
        abort(404)


def _list_page(org_id: str, form: ServiceForm | None = None, status: int = 200):
    access = _or_404(service.organizations.authorize, current_user, org_id, "view")
    return render_template("settings/services.html", organization=access.organization,
                           services=services.list_services(access.organization),
                           form=form or ServiceForm(formdata=None),
                           may_manage=access.role in ("owner", "admin")), status


@bp.get("/organizations/<org_id>/services")
def services_list(org_id: str):
    return _list_page(org_id)


@bp.post("/organizations/<org_id>/services")
def services_create(org_id: str):
    form = ServiceForm()
    if form.validate_on_submit():
        try:
            made = services.create_service(current_user, org_id, origin(), name=form.name.data,
                                           audience=form.audience.data,
                                           description=form.description.data,
                                           scopes=form.scope_list())
        except KeyNotFound:
            abort(404)
        except service.ServiceError as error:
            db.session.rollback()
            field = getattr(form, error.field or "", None)
            (field.errors if field is not None else form.form_errors).append(error.detail)
        else:
            flash(f"Registered “{made.name}”.", "success")
            return redirect(url_for(".service_page", org_id=org_id, service_id=made.public_id),
                            303)
    return _list_page(org_id, form, 400)


def _page(org_id: str, service_id: str, form: ServiceKeyForm | None = None, new_value=None,
          new_key=None, status: int = 200):
    no_store()
    access, found = _or_404(services.get_service, current_user, org_id, service_id)
    named, via_org = services.restricted_counts(found)
    return render_template(
        "settings/service.html", organization=access.organization, service=found,
        keys=service.list_keys(found), named=named, via_org=via_org,
        may_manage=access.role in ("owner", "admin"), form=form or ServiceKeyForm(formdata=None),
        action_form=ActionForm(), new_value=new_value, new_key=new_key), status


@bp.get("/organizations/<org_id>/services/<service_id>")
def service_page(org_id: str, service_id: str):
    return _page(org_id, service_id)


@bp.post("/organizations/<org_id>/services/<service_id>/keys")
@sudo_required
def service_key_create(org_id: str, service_id: str):
    form = ServiceKeyForm()
    if form.validate_on_submit():
        try:
            submissions.claim(current_user, form.once.data)
            key, value = services.create_service_key(current_user, org_id, service_id,
                                                     origin(), label=form.label.data)
        except submissions.AlreadySubmitted:
            flash("This form was already submitted: the key was created then, and its value "
                  "was shown once. If you did not copy it, roll the key.", "error")
            return redirect(url_for(".service_page", org_id=org_id, service_id=service_id), 303)
        except KeyNotFound:
            abort(404)
        except service.ServiceError as error:
            db.session.rollback()
            form.label.errors = [*form.label.errors, error.detail]
        else:
            return _page(org_id, service_id, new_value=value, new_key=key)
    return _page(org_id, service_id, form, status=400)


@bp.post("/organizations/<org_id>/services/<service_id>/keys/<key_id>/roll")
@sudo_required
def service_key_roll(org_id: str, service_id: str, key_id: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        key, value = services.roll_service_key(current_user, org_id, service_id, key_id,
                                               origin())
    except KeyNotFound:
        abort(404)
    except (NotAllowed, service.KeyNotLive) as error:
        flash(error.detail, "error")
        return redirect(url_for(".service_page", org_id=org_id, service_id=service_id), 303)
    return _page(org_id, service_id, new_value=value, new_key=key)


@bp.post("/organizations/<org_id>/services/<service_id>/keys/<key_id>/revoke")
def service_key_revoke(org_id: str, service_id: str, key_id: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        key = services.revoke_service_key(current_user, org_id, service_id, key_id, origin())
    except KeyNotFound:
        abort(404)
    except NotAllowed as error:
        flash(error.detail, "error")
    else:
        flash(f"Revoked “{key.label}” ({key.mask}). It no longer works.", "success")
    return redirect(url_for(".service_page", org_id=org_id, service_id=service_id), 303)
