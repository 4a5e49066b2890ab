"""The services API's response models (keyvault.api.services); like keyvault.api.schemas, they
shape what goes out and generate the OpenAPI document's components."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ..service import services
from .schemas import _NEXT, _PREVIOUS, ApiKey, _Response
from .service_inputs import CreateService, CreateServiceKey, ServiceScopeIn, UpdateService


class ServiceScope(_Response):
    name: str
    description: str


class Service(_Response):
    id: str = Field(description="Public id, random.")
    organization_id: str
    name: str
    audience: str
    description: str
    scopes: list[ServiceScope] = Field(description="The scopes it defines, by name.")
    created_at: datetime
    keys_restricted: int = Field(description=(
        "How many live keys are restricted to it by name (a count: never whose)."))
    keys_restricted_to_organization: int = Field(description=(
        "How many live keys are restricted to its organisation, so work here too."))

    @classmethod
    def of(cls, service) -> Service:
        named, via_org = services.restricted_counts(service)
        return cls(id=service.public_id, organization_id=service.organization.public_id,
                   name=service.name, audience=service.audience,
                   description=service.description or "",
                   scopes=[ServiceScope(name=s.name, description=s.description)
                           for s in service.defined],
                   created_at=service.created_at, keys_restricted=named,
                   keys_restricted_to_organization=via_org)


class ServicePage(_Response):
    next: str | None = Field(description=_NEXT, json_schema_extra={"format": "uri-reference"})
    previous: str | None = Field(description=_PREVIOUS,
                                 json_schema_extra={"format": "uri-reference"})
    results: list[Service] = Field(description="Newest first.")


class ServiceKeyPage(_Response):
    next: str | None = Field(description=_NEXT, json_schema_extra={"format": "uri-reference"})
    previous: str | None = Field(description=_PREVIOUS,
                                 json_schema_extra={"format": "uri-reference"})
    results: list[ApiKey] = Field(description="Newest first; each carries only `key:verify`.")


REQUEST_MODELS = (CreateService, UpdateService, ServiceScopeIn, CreateServiceKey)
RESPONSE_MODELS = (ServiceScope, Service, ServicePage, ServiceKeyPage)
