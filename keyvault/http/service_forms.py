"""The services pages' forms (keyvault.settings.services): register a service, and make one of
its verify keys; and where a key works, on the key create and edit forms ("All services" or
"Only these services", as GitHub offers "All repositories" or "Only select repositories").
The rules are service.services', service.restrictions' and service.validation's."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Optional

from ..service.submissions import new_token
from .forms import CreateKeyForm, EditKeyForm, MultiCheckboxField, choices

ALL, ONLY = "all", "only"


class WhereFields:
    where = RadioField("Works at", choices=choices([(ALL, "All services"),
                                                    (ONLY, "Only these services")]), default=ALL)
    services = MultiCheckboxField("Services", choices=[], validate_choice=True)

    def chosen_services(self) -> list[str] | None:
        """The services ticked (None: all services); ticking none with "Only these" is the
        service's refusal to make, with its message."""
        return None if self.where.data != ONLY else list(self.services.data or [])


class CreateKeyWhereForm(WhereFields, CreateKeyForm):
    pass


class EditKeyWhereForm(WhereFields, EditKeyForm):
    pass


def strip(value):
    return value.strip() if isinstance(value, str) else value


class ServiceForm(FlaskForm):
    name = StringField("Name", filters=[strip], validators=[DataRequired("Give it a name.")])
    audience = StringField("Audience", filters=[strip],
                           validators=[DataRequired("Give it an audience, such as “billing”.")])
    description = TextAreaField("Description (optional)", filters=[strip],
                                validators=[Optional()])
    scopes = TextAreaField("Scopes (optional)", filters=[strip], validators=[Optional()],
                           description="One a line: name=description, e.g. "
                                       "invoice:read=Read invoices")
    submit = SubmitField("Register service")

    def scope_list(self) -> list[dict]:
        """The scopes field as service.services takes it; a line without “=” has no
        description, which the service refuses with its own message."""
        listed = []
        for line in (self.scopes.data or "").splitlines():
            if line.strip():
                name, _, text = line.partition("=")
                listed.append({"name": name.strip(), "description": text.strip()})
        return listed


class ServiceKeyForm(FlaskForm):
    label = StringField("Label", filters=[strip],
                        validators=[DataRequired("Give the key a label.")])
    once = HiddenField(default=new_token)  # this form acts once (service.submissions)
    submit = SubmitField("Create verify key")
