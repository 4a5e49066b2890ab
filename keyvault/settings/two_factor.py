"""Two-factor authentication on the account page: set it up with an authenticator app, see and
regenerate recovery codes, turn it off. Every change needs a recent password (sudo mode)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import service
from ..http.browser import enrolment_required, no_store, send_to_enrolment, sudo_required
from ..http.context import origin
from ..http.forms import ActionForm, TwoFactorCodeForm
from ..service import second_factor
from .views import bp

SETUP = "settings.two_factor_setup"


@bp.before_request
def enrol_first():
    """KEYVAULT_REQUIRE_2FA_FOR_ADMINS: an administrator without a second factor sets one up
    before any other settings page."""
    if request.endpoint != SETUP and enrolment_required():
        return send_to_enrolment()
    return None


def grouped(secret: str) -> str:
    """The secret in groups of four, as people type it into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def qr_code(uri: str) -> str:
    """The otpauth:// URI as a QR code, an SVG data: URI for an <img> (the CSP allows data:
    images, and an image can run no script)."""
    import segno

    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2, dark="#111827")


@bp.route("/two-factor/setup", methods=["GET", "POST"])
@sudo_required
def two_factor_setup():
    """Scan the QR code (or type the secret), then confirm with a code: only a right one turns
    two-factor on. The secret waits on the server, never in the form."""
    user = current_user._get_current_object()
    if second_factor.methods(user):
        flash("Two-factor authentication is already on.", "info")
        return redirect(url_for(".account"), 303)
    form = TwoFactorCodeForm()
    form.code.label.text = "Code from your app"
    status = 200
    if form.validate_on_submit():
        try:
            codes = second_factor.enable(user, form.code.data, origin())
        except service.ServiceError as error:
            form.code.errors.append(error.detail)
        else:
            flash("Two-factor authentication is on. Keep your recovery codes somewhere safe.",
                  "success")
            return _recovery_codes_page(codes)
    if form.errors:
        status = 400
    no_store()  # the page shows the secret
    secret = second_factor.pending_secret(user)
    uri = second_factor.provisioning_uri(user, secret)
    return render_template("settings/two_factor_setup.html", form=form, secret=grouped(secret),
                           qr_code=qr_code(uri)), status


@bp.post("/two-factor/recovery-codes")
@sudo_required
def two_factor_regenerate():
    if not ActionForm().validate_on_submit():
        return redirect(url_for(".account"), 303)
    try:
        codes = second_factor.regenerate_recovery_codes(current_user._get_current_object(),
                                                        origin())
    except service.ServiceError as error:
        flash(error.detail, "error")
        return redirect(url_for(".account"), 303)
    flash("New recovery codes made: the old ones no longer work.", "success")
    return _recovery_codes_page(codes)


@bp.post("/two-factor/disable")
@sudo_required
def two_factor_disable():
    if ActionForm().validate_on_submit() and second_factor.disable(
            current_user._get_current_object(), origin()):
        flash("Two-factor authentication is off: your password alone logs you in.", "success")
    return redirect(url_for(".account"), 303)


def _recovery_codes_page(codes: list[str]):
    """The codes, shown once: never cached, and offered as a text file to keep."""
    no_store()
    text = "KeyVault recovery codes for {}\n\n{}\n\nEach code works once.\n".format(
        current_user.email, "\n".join(codes))
    return render_template("settings/recovery_codes.html", codes=codes, codes_text=text)
