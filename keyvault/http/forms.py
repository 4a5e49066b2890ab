"""Every form of the browser blueprints (CSRF via Flask-WTF): accounts (sign-up, log-in,
re-authentication, passwords, two-factor codes) and keys (create, edit, roll, passkeys, mail).
One module because the blueprints share forms (ActionForm, ChangePasswordForm, ...) and are
independent of each other.

Every message is written here, in the person's words: none of WTForms' defaults ("This field is
required.", "Field must be between 8 and 1024 characters long.") reaches a page.
"""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Email,
    EqualTo,
    Length,
    NumberRange,
    Optional,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from ..limit_models import QUOTA_MAX, RATE_MAX, WINDOW_MAX
from ..service import InvalidInput
from ..service.passkeys import clean_name
from ..service.submissions import new_token
from ..service.validation import (
    DESCRIPTION_MAX,
    EMAIL_MAX,
    LABEL_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    PASSWORD_RULE,
    clean_description,
    clean_label,
)

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
    next = StringField()  # where to go once signed up (an invitation's page), a local path
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


class ConfirmEmailForm(FlaskForm):
    """The link from the sign-up mail: the password chosen at sign-up finishes it."""

    token = HiddenField()
    password = PasswordField("Password", validators=known_password_validators())
    submit = SubmitField("Confirm and log in")


class ResetPasswordForm(FlaskForm):
    token = HiddenField()
    password = PasswordField("New password", validators=new_password_validators())
    confirm = PasswordField("Repeat new password", validators=repeat_validators("password"))
    submit = SubmitField("Set new password")


# ---------------------------------------------------------------- keys


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms choices."""
    return [SelectChoice(value, label) for value, label in pairs]


KEEP_EXPIRY = "keep"  # the edit form's first expiry choice: leave it as it is
EXPIRY_CHOICES = [("7", "7 days"), ("30", "30 days"), ("60", "60 days"), ("90", "90 days"),
                  ("custom", "Custom date"), ("none", "No expiry")]
PRESETS = [("read_only", "Read only"), ("verify", "Verify keys for a service"),
           ("custom", "Choose scopes"), ("full", "Full access")]
PRESET_HINTS = {
    "read_only": "Every scope that only reads.",
    "verify": "Only key:verify: a service asks KeyVault about keys its callers present.",
    "custom": "Tick exactly the scopes this key needs.",
    "full": "Everything you can do through the API, including making more keys.",
}
GRACE_CHOICES = [("0", "None: the old value stops now"), ("3600", "1 hour"),
                 ("86400", "24 hours"), ("604800", "7 days")]


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def strip(value):
    return value.strip() if isinstance(value, str) else value


class ServiceRule:
    """A field checked by the service's own rule (service.validation), as the API and the
    command line check it; `maxlength` lets the browser stop typing at the limit."""

    def __init__(self, clean, most: int):
        self.clean = clean
        self.field_flags = {"maxlength": most}

    def __call__(self, form, field):
        try:
            field.data = self.clean(field.data)
        except InvalidInput as refusal:
            raise ValidationError(refusal.detail[:1].upper() + refusal.detail[1:]) from None


LABEL_RULE = ServiceRule(clean_label, LABEL_MAX)
DESCRIPTION_RULE = ServiceRule(clean_description, DESCRIPTION_MAX)


class PersonWords:
    """Errors of choice fields in the person's words instead of WTForms' defaults ("Not a valid
    choice."), one message per field."""

    WORDS: dict[str, str] = {}

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for name, words in self.WORDS.items():
            field = self[name]
            if field.errors:
                field.errors[:] = [words]
        for field in self:  # one message per error: no repeats
            if isinstance(field.errors, list):
                field.errors[:] = list(dict.fromkeys(field.errors))
        return valid


class AccessRequired:
    """The create form has no access pre-selected: the person must choose one."""

    field_flags = {"required": True}

    def __call__(self, form, field):
        if not field.data:
            raise StopValidation(ACCESS_REQUIRED)


ACCESS_REQUIRED = "Choose what this key may do: read only, verify keys, chosen scopes or full access."


ALLOWED_IPS_LABEL = "Allowed addresses (optional)"


def address_list(text: str | None) -> list[str]:
    """The allowed-addresses box: one address or CIDR range per line (commas and spaces too)."""
    return (text or "").replace(",", " ").split()


REFILLS = [("", "Never"), ("daily", "Every day"),
           ("monthly", "Every month")]
LIMIT_WORDS = {
    "rate_limit": f"Enter a whole number of requests from 1 to {RATE_MAX:,}, or leave it empty.",
    "rate_window": f"Enter the window in seconds, from 1 to {WINDOW_MAX:,} (a day).",
    "quota": f"Enter a whole number of uses from 0 to {QUOTA_MAX:,}, or leave it empty.",
    "refill": "Choose when the uses refill.",
    "refill_day": "Enter a day of the month from 1 to 28.",
}


class LimitFields:
    """A key's rate and usage quota (issue 25), on the create and edit forms alike; empty means
    no limit. settings.limits turns them into the service's terms."""

    rate_limit = IntegerField("Requests allowed", validators=[Optional(), NumberRange(1, RATE_MAX)])
    rate_window = IntegerField("in each window of (seconds)", default=60,
                               validators=[Optional(), NumberRange(1, WINDOW_MAX)])
    quota = IntegerField("Uses allowed", validators=[Optional(), NumberRange(0, QUOTA_MAX)])
    refill = SelectField("Refilled", choices=choices(REFILLS), default="")
    refill_day = IntegerField("on day of the month", default=1,
                              validators=[Optional(), NumberRange(1, 28)])


class CreateKeyForm(LimitFields, PersonWords, FlaskForm):
    WORDS = {**LIMIT_WORDS,"expiry": "Choose how long the key should work.",
             "expires_on": "Enter the custom expiry date as a date, e.g. 2031-01-31.",
             "preset": ACCESS_REQUIRED,
             "scopes": "Choose scopes from the list."}

    label = StringField("Label", filters=[strip],
                        validators=[DataRequired("Give the key a label."), LABEL_RULE])
    description = TextAreaField("Description (optional)", filters=[strip],
                                validators=[Optional(), DESCRIPTION_RULE])
    expiry = SelectField("Expiration", choices=choices(EXPIRY_CHOICES), default="30")
    expires_on = DateField("Custom expiry date", validators=[Optional()])
    preset = RadioField("Access", choices=choices(PRESETS), default=None,
                        validators=[AccessRequired()])
    scopes = MultiCheckboxField("Scopes", choices=[], validate_choice=True)
    allowed_ips = TextAreaField(ALLOWED_IPS_LABEL, filters=[strip])
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Create key")


class EditKeyForm(LimitFields, PersonWords, FlaskForm):
    WORDS = {**LIMIT_WORDS, "scopes": "Choose scopes from the list.",
             "expiry": "Choose how long the key should work.",
             "expires_on": "Enter the custom expiry date as a date, e.g. 2031-01-31."}

    label = StringField("Label", filters=[strip],
                        validators=[DataRequired("Give the key a label."), LABEL_RULE])
    description = TextAreaField("Description", filters=[strip],
                                validators=[Optional(), DESCRIPTION_RULE])
    expiry = SelectField("Expiration", choices=[], default=KEEP_EXPIRY)
    expires_on = DateField("Custom expiry date", validators=[Optional()])
    scopes = MultiCheckboxField("Scopes", choices=[], validate_choice=True)
    allowed_ips = TextAreaField(ALLOWED_IPS_LABEL, filters=[strip])
    submit = SubmitField("Save")


class RollKeyForm(PersonWords, FlaskForm):
    WORDS = {"grace": "Choose how long the old value should keep working."}

    grace = SelectField("Keep the old value working for", choices=choices(GRACE_CHOICES), default="0")
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Roll key")


class RevokeKeysForm(FlaskForm):
    """The bulk revoke's confirmation: the keys it names (hidden fields), acting once."""

    keys = SelectMultipleField(choices=[], validate_choice=False)
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Revoke these keys")


class ActionForm(FlaskForm):
    """A button-only form (revoke, delete): carries just the CSRF token."""

    submit = SubmitField()


class PasskeyNameForm(FlaskForm):
    """A passkey's name (a key label's rules): when adding one, and to rename it."""

    name = StringField("Name", filters=[strip],
                       validators=[DataRequired("Give the passkey a name, such as “Work laptop”."),
                                   ServiceRule(clean_name, LABEL_MAX)])
    submit = SubmitField("Rename")


class NotificationsForm(FlaskForm):
    """The mails a person may turn off; security notices always go."""

    expiring = BooleanField("A key of mine expires in 7 days, and again in 1 day")
    presented = BooleanField("A revoked or expired key of mine is still being presented "
                             "(at most once a day per key)")
    submit = SubmitField("Save mail preferences")
