"""Forms of the account-settings page."""

from flask_wtf import FlaskForm
from wtforms import (
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
from wtforms.validators import DataRequired, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..service import InvalidInput
from ..service.submissions import new_token
from ..service.validation import DESCRIPTION_MAX, LABEL_MAX, clean_description, clean_label


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms choices."""
    return [SelectChoice(value, label) for value, label in pairs]


EXPIRY_CHOICES = [("7", "7 days"), ("30", "30 days"), ("60", "60 days"), ("90", "90 days"),
                  ("custom", "Custom date"), ("none", "No expiry")]
PRESETS = [("full", "Full access"), ("read_only", "Read only"),
           ("verify", "Verify keys for a service"), ("custom", "Choose scopes")]
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


class CreateKeyForm(FlaskForm):
    label = StringField("Label", filters=[strip],
                        validators=[DataRequired("Give the key a label."), LABEL_RULE])
    description = TextAreaField("Description (optional)", filters=[strip],
                                validators=[Optional(), DESCRIPTION_RULE])
    expiry = SelectField("Expiration", choices=choices(EXPIRY_CHOICES), default="30")
    expires_on = DateField("Custom expiry date", validators=[Optional()])
    preset = RadioField("Access", choices=choices(PRESETS), default="full")
    scopes = MultiCheckboxField("Scopes", choices=[], validate_choice=True)
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Create key")


class EditKeyForm(FlaskForm):
    label = StringField("Label", filters=[strip],
                        validators=[DataRequired("Give the key a label."), LABEL_RULE])
    description = TextAreaField("Description", filters=[strip],
                                validators=[Optional(), DESCRIPTION_RULE])
    scopes = MultiCheckboxField("Scopes", choices=[], validate_choice=True)
    submit = SubmitField("Save")


class RollKeyForm(FlaskForm):
    grace = SelectField("Keep the old value working for", choices=choices(GRACE_CHOICES), default="0")
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Roll key")


class ActionForm(FlaskForm):
    """A button-only form (revoke, delete): carries just the CSRF token."""

    submit = SubmitField()
