"""Sign-up, log-in, re-authentication, password-change and reset forms (CSRF via Flask-WTF).

Every message is written here, in the person's words: none of WTForms' defaults ("This field is
required.", "Field must be between 8 and 1024 characters long.") reaches a page.
"""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length, StopValidation

from ..service.validation import EMAIL_MAX, PASSWORD_MAX, PASSWORD_MIN, PASSWORD_RULE

ENTER_EMAIL = "Enter your email address."
ENTER_PASSWORD = "Enter your password."


def email_validators() -> list:
    return [DataRequired(ENTER_EMAIL),
            Email("Enter a valid email address, such as name@example.com."),
            Length(max=EMAIL_MAX, message=f"An email address has at most {EMAIL_MAX} characters.")]


def new_password_validators() -> list:
    """The rule the hint states (PASSWORD_RULE), as service.validation.clean_password holds it."""
    return [DataRequired(f"Choose a password. {PASSWORD_RULE}"),
            Length(min=PASSWORD_MIN, message=f"Too short: use at least {PASSWORD_MIN} characters."),
            Length(max=PASSWORD_MAX, message=f"Too long: use at most {PASSWORD_MAX} characters.")]


def _after(field: str):
    """Nothing to say about the repetition while the password itself is refused: one message."""

    def check(form, repeat):
        if form[field].errors:
            repeat.errors[:] = []
            raise StopValidation()

    return check


def repeat_validators(field: str) -> list:
    return [_after(field), DataRequired("Type the password a second time."),
            EqualTo(field, "The two passwords differ: type the same one twice.")]


def known_password_validators() -> list:
    return [DataRequired(ENTER_PASSWORD),
            Length(max=PASSWORD_MAX, message="That password is not right.")]


class SignUpForm(FlaskForm):
    email = EmailField("Email", validators=email_validators())
    password = PasswordField("Password", validators=new_password_validators())
    confirm = PasswordField("Repeat password", validators=repeat_validators("password"))
    submit = SubmitField("Create account")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[
        DataRequired(ENTER_EMAIL),
        Length(max=EMAIL_MAX, message="Wrong email or password.")])
    password = PasswordField("Password", validators=known_password_validators())
    next = StringField()
    submit = SubmitField("Log in")


class ConfirmPasswordForm(FlaskForm):
    password = PasswordField("Password", validators=known_password_validators())
    next = StringField()
    submit = SubmitField("Confirm")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=known_password_validators())
    new_password = PasswordField("New password", validators=new_password_validators())
    confirm = PasswordField("Repeat new password", validators=repeat_validators("new_password"))
    submit = SubmitField("Change password")


class TwoFactorCodeForm(FlaskForm):
    """The login's second step, and the confirmation of a new authenticator app."""

    code = StringField("Authentication code", validators=[
        DataRequired("Enter the 6-digit code from your authenticator app, or a recovery code."),
        Length(max=32, message="That code is not right.")])
    submit = SubmitField("Verify")


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=email_validators())
    submit = SubmitField("Mail me a reset link")


class ResetPasswordForm(FlaskForm):
    token = HiddenField()
    password = PasswordField("New password", validators=new_password_validators())
    confirm = PasswordField("Repeat new password", validators=repeat_validators("password"))
    submit = SubmitField("Set new password")
