"""Sign-up, log-in and re-authentication forms (CSRF via Flask-WTF)."""

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from ..service.validation import EMAIL_MAX, PASSWORD_MAX, PASSWORD_MIN


class SignUpForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=EMAIL_MAX)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)]
    )
    confirm = PasswordField(
        "Repeat password", validators=[DataRequired(), EqualTo("password", "Passwords differ.")]
    )
    submit = SubmitField("Create account")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    next = StringField()
    submit = SubmitField("Log in")


class ConfirmPasswordForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    next = StringField()
    submit = SubmitField("Confirm")
