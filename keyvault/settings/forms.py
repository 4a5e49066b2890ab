"""Forms of the account-settings page."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Optional, StopValidation, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..service import InvalidInput
from ..service.passkeys import clean_name
from ..service.submissions import new_token
from ..service.validation import DESCRIPTION_MAX, LABEL_MAX, clean_description, clean_label


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms choices."""
    return [SelectChoice(value, label) for value, label in pairs]


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


class CreateKeyForm(PersonWords, FlaskForm):
    WORDS = {"expiry": "Choose how long the key should work.",
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
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Create key")


class EditKeyForm(PersonWords, FlaskForm):
    WORDS = {"scopes": "Choose scopes from the list."}

    label = StringField("Label", filters=[strip],
                        validators=[DataRequired("Give the key a label."), LABEL_RULE])
    description = TextAreaField("Description", filters=[strip],
                                validators=[Optional(), DESCRIPTION_RULE])
    scopes = MultiCheckboxField("Scopes", choices=[], validate_choice=True)
    submit = SubmitField("Save")


class RollKeyForm(PersonWords, FlaskForm):
    WORDS = {"grace": "Choose how long the old value should keep working."}

    grace = SelectField("Keep the old value working for", choices=choices(GRACE_CHOICES), default="0")
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Roll key")


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
