"""The organisation pages' forms (settings/organizations.py): create one, invite, roles, service
accounts and the policy. Fields are checked by the service's own rules, as on the API."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, IntegerField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, NumberRange, Optional

from ..org_models import ROLES
from ..service.submissions import new_token
from ..service.validation import NAME_MAX, clean_name
from .forms import (
    DESCRIPTION_RULE,
    MultiCheckboxField,
    PersonWords,
    ServiceRule,
    choices,
    email_validators,
    strip,
)

NAME_RULE = ServiceRule(clean_name, NAME_MAX)
ROLE_CHOICES = choices([(role, role.capitalize()) for role in ROLES])
DAYS = [Optional(), NumberRange(1, 36500, "A number of days from 1 to 36500, or empty for none.")]


class CreateOrganizationForm(FlaskForm):
    name = StringField("Name", filters=[strip],
                       validators=[DataRequired("Give the organisation a name."), NAME_RULE])
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Create organisation")


class InviteForm(PersonWords, FlaskForm):
    WORDS = {"role": "Choose owner, admin or member."}

    email = EmailField("Email", validators=email_validators())
    role = SelectField("Role", choices=ROLE_CHOICES, default="member")
    once = HiddenField(default=new_token)
    submit = SubmitField("Send invitation")


class RoleForm(PersonWords, FlaskForm):
    WORDS = {"role": "Choose owner, admin or member."}

    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")


class ServiceAccountForm(FlaskForm):
    name = StringField("Name", filters=[strip],
                       validators=[DataRequired("Give the service account a name."), NAME_RULE])
    description = StringField("Description (optional)", filters=[strip],
                              validators=[Optional(), DESCRIPTION_RULE])
    once = HiddenField(default=new_token)
    submit = SubmitField("Create service account")


class PolicyForm(PersonWords, FlaskForm):
    """Owners: the name and the policy. Empty days mean no rule of the organisation's; no scope
    ticked means the whole catalogue."""

    WORDS = {"allowed_scopes": "Choose scopes from the list."}

    name = StringField("Name", filters=[strip],
                       validators=[DataRequired("Give the organisation a name."), NAME_RULE])
    max_key_lifetime_days = IntegerField("Longest key lifetime (days)", validators=DAYS)
    revoke_unused_after_days = IntegerField("Revoke keys unused for (days)", validators=DAYS)
    allowed_scopes = MultiCheckboxField("Scopes its service accounts' keys may carry",
                                        choices=[], validate_choice=True)
    submit = SubmitField("Save")
