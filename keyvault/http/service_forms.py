"""The services pages' forms (keyvault.settings.services): register a service, and make one of
its verify keys. The rules are service.services' and service.validation's."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Optional

from ..service.submissions import new_token


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
