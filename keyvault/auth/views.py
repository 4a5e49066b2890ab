"""Sign up, log in (and its second step), log out, reset a forgotten password, and confirm
the password for sensitive actions."""

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from .. import clock, metrics, service
from ..http.browser import (
    enrolment_required,
    known_device,
    mark_authenticated,
    remember_device,
    retry_after,
    safe_next,
    send_to_enrolment,
)
from ..http.context import origin
from ..http.forms import (
    ConfirmEmailForm,
    ConfirmPasswordForm,
    ForgotPasswordForm,
    LoginForm,
    ResetPasswordForm,
    SignUpForm,
    TwoFactorCodeForm,
)
from ..ratelimit import limiter
from ..service import confirmations, second_factor
from ..service.validation import EMAIL_MAX, PASSWORD_RULE

bp = Blueprint("auth", __name__)

HOME = "settings.api_keys"


@bp.get("/")
def index():
    """Visitors get a short word on what KeyVault is; a logged-in person goes to their keys."""
    if current_user.is_authenticated:
        return redirect(url_for(HOME))
    return render_template("auth/landing.html")


# A right password for an account with a second factor leaves only this in the session: who,
# at which session epoch, where to go after, and when (the code must follow within 5 minutes).
PENDING_LOGIN = "pending_login"
PENDING_LOGIN_SECONDS = 5 * 60


def _start_session(user) -> None:
    session.clear()  # a fresh session on login: nothing from before survives (fixation)
    login_user(user)
    mark_authenticated()


def _finish_login(user, target: str, answer=redirect):
    """Every way of logging in ends here, once the person has proved all they must: a fresh
    session, this browser remembered as theirs, and on to `target` (a local path: safe_next), or
    for an administrator who must have a second factor and has none, to its set-up.
    `answer(target)` makes the response: a redirect for a form, JSON for the passkey script."""
    _start_session(user)
    if enrolment_required():
        response = send_to_enrolment() if answer is redirect \
            else answer(url_for("settings.two_factor_setup"))
    else:
        response = answer(target)
    return remember_device(response, user.id)


def _begin_second_step(user, target: str):
    session.clear()
    session[PENDING_LOGIN] = {"user": user.id, "epoch": user.session_epoch, "next": target,
                              "at": int(clock.now().timestamp())}
    return redirect(url_for(".two_factor"))


def _pending_login():
    """The user whose password was right and who owes a second factor, and where they go after;
    (None, None) when there is none, or it expired, or the account changed since."""
    pending = session.get(PENDING_LOGIN)
    try:
        user = service.get_user(int(pending["user"]))
        age = clock.now().timestamp() - int(pending["at"])
        epoch, target = int(pending["epoch"]), str(pending["next"])
    except (TypeError, KeyError, ValueError):
        return None, None
    if user is None or not user.is_active or epoch != user.session_epoch \
            or not 0 <= age <= PENDING_LOGIN_SECONDS or not second_factor.methods(user):
        session.pop(PENDING_LOGIN, None)
        return None, None
    return user, safe_next(target, url_for(HOME))


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for(HOME))
    form = SignUpForm()
    if request.method == "GET":  # an invitation's page sends its address and itself
        form.email.data = request.args.get("email", "")[:EMAIL_MAX]
        form.next.data = request.args.get("next", "")
    if request.method == "POST":
        counted = limiter().hit("signup", origin().ip_address or "unknown")
        if counted is not None and not counted.allowed:
            metrics.record_rate_limited("signup")
            form.email.errors = [f"Too many sign-ups from your address: try again in "
                                 f"{_in_words(counted.reset)}."]
            page = render_template("auth/signup.html", form=form)
            return page, 429, dict(counted.headers())
    if form.validate_on_submit() and current_app.config["KEYVAULT_REQUIRE_EMAIL_CONFIRMATION"]:
        return _register(form)
    if form.validate_on_submit():
        try:
            user = service.sign_up(form.email.data, form.password.data, origin())
        except service.ServiceError as error:
            getattr(form, error.field or "email").errors.append(error.detail)
        else:
            _start_session(user)
            if form.next.data:
                return redirect(safe_next(form.next.data, url_for(HOME)))
            flash("Welcome to KeyVault. Create your first API key below.", "success")
            return redirect(url_for(HOME))
    return render_template("auth/signup.html", form=form, password_rule=PASSWORD_RULE), (
        400 if form.errors else 200)


def _register(form: SignUpForm):
    """Sign-up with confirmation by mail: one page for a free address and for a taken one, and
    a mail either way (service.signups)."""
    try:
        service.register(form.email.data, form.password.data, origin())
    except service.ServiceError as error:  # the address or password itself: nothing of accounts
        getattr(form, error.field or "email").errors.append(error.detail)
        page = render_template("auth/signup.html", form=form, password_rule=PASSWORD_RULE)
        return page, 400
    return render_template("auth/signup_sent.html", email=service.normalise_email(form.email.data),
                           hours=CONFIRM_HOURS)


CONFIRM_HOURS = int(confirmations.CONFIRM_VALID.total_seconds() // 3600)


@bp.route("/signup/confirm", methods=["GET", "POST"])
def confirm_email():
    """The link from the sign-up mail (`?token=`, which the access log scrubs): the password
    chosen at sign-up confirms the address and logs the person in."""
    form = ConfirmEmailForm()
    token = form.token.data if request.method == "POST" else request.args.get("token", "")
    try:
        user = confirmations.user_for_token(token)
    except service.ConfirmLinkInvalid as error:
        return _link_refused(error, "auth.login", "Log in")
    form.token.data = token
    if form.validate_on_submit():
        try:
            confirmed = service.confirm_email(token, form.password.data, origin(), known_device())
        except service.TooManyFailures as refusal:
            form.password.errors.append(refusal.detail)
            return _too_many(render_template("auth/confirm_email.html", form=form,
                                             email=user.email))
        except service.ConfirmLinkInvalid as error:
            return _link_refused(error, "auth.login", "Log in")
        if confirmed is not None:
            if second_factor.methods(confirmed):
                return _begin_second_step(confirmed, url_for(HOME))
            response = _finish_login(confirmed, url_for(HOME))  # a fresh session: flash after
            flash("Your address is confirmed. Welcome to KeyVault: create your first API key "
                  "below.", "success")
            return response
        form.password.errors.append("That password is not right: enter the one you chose when "
                                    "you signed up.")
    page = render_template("auth/confirm_email.html", form=form, email=user.email)
    return page, 400 if form.errors else 200, NO_REFERRER


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if current_user.is_authenticated and request.method == "GET":
        return redirect(safe_next(form.next.data, url_for(HOME)))
    if form.validate_on_submit():
        try:
            user = service.log_in(form.email.data, form.password.data, origin(),
                                  known_device())
        except service.TooManyFailures as refusal:
            form.password.errors.append(refusal.detail)
            return _too_many(render_template("auth/login.html", form=form))
        except service.EmailNotConfirmed as refusal:
            form.email.errors.append(refusal.detail)
            return render_template("auth/login.html", form=form), refusal.status
        if user is not None:
            target = safe_next(form.next.data, url_for(HOME))
            if second_factor.methods(user):
                return _begin_second_step(user, target)
            return _finish_login(user, target)
        form.password.errors.append("Wrong email or password.")
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.route("/login/two-factor", methods=["GET", "POST"])
def two_factor():
    """The login's second step: a code from the authenticator app, or a recovery code."""
    user, target = _pending_login()
    if user is None:
        flash("Your login timed out or was not started: log in again.", "info")
        return redirect(url_for(".login"), 303)
    form = TwoFactorCodeForm()
    methods = second_factor.methods(user)
    if form.validate_on_submit():
        try:
            method = second_factor.check_login_code(user, form.code.data, origin(),
                                                    known_device())
        except service.TooManyFailures as refusal:
            form.code.errors.append(refusal.detail)
            return _too_many(render_template("auth/two_factor.html", form=form,
                                             methods=methods))
        if method is not None:
            response = _finish_login(user, target)  # a fresh session: flash after it
            if method == "recovery":
                left = second_factor.status(user).recovery_codes_left
                flash(f"You used a recovery code: {left} left. Each works only once.", "info")
            return response
        form.code.errors.append("That code is not right. Enter the code your app shows now, "
                                "or one of your recovery codes.")
    page = render_template("auth/two_factor.html", form=form, methods=methods)
    return page, 400 if form.errors else 200


def _in_words(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}" if seconds > 60 \
        else f"{seconds} second{'s' if seconds != 1 else ''}"


def _too_many(page: str):
    """429 with Retry-After: the address has been guessing passwords."""
    return page, 429, retry_after()


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        # A copy of the cookie must not outlive the logout (signed cookies can't be recalled).
        service.end_sessions(current_user._get_current_object(), origin())
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/confirm", methods=["GET", "POST"])
@login_required
def confirm():
    """Ask for the password again before a sensitive action (GitHub's sudo mode)."""
    form = ConfirmPasswordForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        try:
            right = service.check_password(current_user, form.password.data, origin(),
                                           known_device())
        except service.TooManyFailures as refusal:
            form.password.errors.append(refusal.detail)
            return _too_many(render_template("auth/confirm.html", form=form))
        if right:
            mark_authenticated()
            return redirect(safe_next(form.next.data, url_for(HOME)))
        form.password.errors.append("That password is not right.")
    return render_template("auth/confirm.html", form=form), 400 if form.errors else 200


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password():
    """Ask for a reset link by mail; the same answer whether or not the address has an account."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        email = service.normalise_email(form.email.data)
        counted = service.count_reset_ask(email, origin(), known_device())
        if counted is not None and not counted.allowed:
            metrics.record_rate_limited("reset")
            form.email.errors = [_too_many_resets(counted)]
            return render_template("auth/forgot.html", form=form), 429, dict(counted.headers())
        service.request_reset(email, origin())
        return render_template("auth/forgot_sent.html", email=email)
    return render_template("auth/forgot.html", form=form), 400 if form.errors else 200


def _too_many_resets(counted) -> str:
    """In words: too many asked from here (this client or browser), or from everywhere else."""
    wait = _in_words(counted.reset)
    if counted.quota.door == "reset_total":
        return (f"Too many reset links asked for this address: try again in {wait}. A browser "
                "that has logged in to the account before can still ask for one.")
    return f"Too many reset links asked for this address from here: try again in {wait}."


@bp.route("/password/reset", methods=["GET", "POST"])
def reset_password():
    """The link from the mail (`?token=`, which the access log scrubs): choose a new password.
    The page sends no Referer, so the token goes nowhere else."""
    form = ResetPasswordForm()
    token = form.token.data if request.method == "POST" else request.args.get("token", "")
    try:
        service.user_for_token(token)
    except service.ResetLinkInvalid as error:
        return _reset_refused(error)
    form.token.data = token
    if form.validate_on_submit():
        try:
            service.reset_password(token, form.password.data, origin())
        except service.ResetLinkInvalid as error:
            return _reset_refused(error)
        except service.ServiceError as error:
            form.password.errors.append(error.detail)
        else:
            logout_user()
            session.clear()
            flash("Your password has been reset and every session logged out. Log in with the "
                  "new password.", "success")
            return redirect(url_for("auth.login"), 303)
    page = render_template("auth/reset.html", form=form, password_rule=PASSWORD_RULE)
    return page, 400 if form.errors else 200, NO_REFERRER


NO_REFERRER = {"Referrer-Policy": "no-referrer"}


def _reset_refused(error):
    return _link_refused(error, "auth.forgot_password", "Ask for a new reset link")


def _link_refused(error, endpoint: str, action: str):
    page = render_template("errors/error.html", code=error.status, title=error.title,
                           detail=error.detail, action_url=url_for(endpoint), action=action)
    return page, error.status, NO_REFERRER
