"""The invitation link's page, /organizations/invitations/<token> (the link mailed by
service.invitations): for anyone holding the link, signed in or not.

Signed in with the invited address: a page with an Accept button (a POST with CSRF) that joins
and goes on to the organisation's page. Signed in as someone else: a refusal that names nothing
the mail did not (not the invited address). Signed out: log in or sign up on the spot, with the
address filled in, and back here after. A link used, revoked or expired: 410; altered: 404.
The token is in the path, which the access log hides (redact.scrub).
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import service
from ..http.context import origin
from ..http.forms import ActionForm
from ..service.errors import AlreadyMember, InvitationForSomeoneElse, InvitationInvalid
from ..service.validation import normalise_email
from .views import bp

invitations = service.invitations
PATH = "/organizations/invitations/<token>"


def _gone(error: InvitationInvalid):
    """A link that cannot be used: 404 when it was altered, 410 once used, revoked or expired."""
    status = 404 if error.detail == invitations.ALTERED else 410
    return render_template("errors/error.html", code=status, title="Invitation not valid",
                           detail=error.detail), status


def _someone_else():
    page = render_template("auth/invitation_refused.html", detail=invitations.OTHER_EMAIL)
    return page, 403


@bp.get(PATH)
def invitation(token: str):
    try:
        found = invitations.invitation_for_token(token)
    except InvitationInvalid as error:
        return _gone(error)
    here = request.path
    if not current_user.is_authenticated:
        return render_template("auth/invitation.html", invitation=found, signed_in=False,
                               login_url=url_for("auth.login", next=here),
                               signup_url=url_for("auth.signup", email=found.email, next=here))
    if normalise_email(current_user.email) != found.email:
        return _someone_else()
    return render_template("auth/invitation.html", invitation=found, signed_in=True,
                           form=ActionForm())


@bp.post(PATH)
@login_required
def accept_invitation(token: str):
    if not ActionForm().validate_on_submit():
        return render_template("errors/error.html", code=400, title="Form expired or forged",
                               detail="Reload the invitation's page and try again."), 400
    try:
        member = invitations.accept(token, current_user._get_current_object(), origin())
    except InvitationForSomeoneElse:
        return _someone_else()
    except InvitationInvalid as error:
        return _gone(error)
    except AlreadyMember:
        found = invitations.invitation_for_token(token)
        return redirect(url_for("settings.organization",
                                org_id=found.organization.public_id), 303)
    return redirect(url_for("settings.organization",
                            org_id=member.organization.public_id), 303)
