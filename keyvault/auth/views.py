"""Sign up, log in, log out, and confirm the password for sensitive actions."""

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from .. import metrics, service
from ..ratelimit import limiter
from ..request_context import origin
from ..service.validation import PASSWORD_RULE
from ..web import known_device, mark_authenticated, remember_device, retry_after, safe_next
from .forms import ConfirmPasswordForm, LoginForm, SignUpForm

bp = Blueprint("auth", __name__)

HOME = "settings.api_keys"


@bp.get("/")
def index():
    if current_user.is_authenticated:
        return redirect(url_for(HOME))
    return redirect(url_for("auth.login"))


def _start_session(user) -> None:
    session.clear()  # a fresh session on login: nothing from before survives (fixation)
    login_user(user)
    mark_authenticated()


def _finish_login(user, next_target: str | None, answer=redirect):
    """The end of every login (password, passkey): a fresh session, this browser remembered
    as the person's, and on to `next` if it is a local path. `answer(target)` makes the
    response: a redirect for a form, JSON for the passkey script."""
    target = safe_next(next_target, url_for(HOME))
    _start_session(user)
    return remember_device(answer(target), user.id)


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for(HOME))
    form = SignUpForm()
    if request.method == "POST":
        counted = limiter().hit("signup", origin().ip_address or "unknown")
        if counted is not None and not counted.allowed:
            metrics.record_rate_limited("signup")
            form.email.errors = [f"Too many sign-ups from your address: try again in "
                                 f"{_in_words(counted.reset)}."]
            page = render_template("auth/signup.html", form=form)
            return page, 429, dict(counted.headers())
    if form.validate_on_submit():
        try:
            user = service.sign_up(form.email.data, form.password.data, origin())
        except service.ServiceError as error:
            getattr(form, error.field or "email").errors.append(error.detail)
        else:
            _start_session(user)
            flash("Welcome to KeyVault. Create your first API key below.", "success")
            return redirect(url_for(HOME))
    return render_template("auth/signup.html", form=form, password_rule=PASSWORD_RULE), (
        400 if form.errors else 200)


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
        if user is not None:
            return _finish_login(user, form.next.data)
        form.password.errors.append("Wrong email or password.")
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


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
