"""The services API's request models (keyvault.api.services): a service, its scopes, its
verify keys. The rules themselves are service.services'."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .inputs import Credential, DateTimeText, Description, Label, Name, _Request

# One character that is neither a control character nor white space (str.isspace's set).
_SHOWN = "[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
Audience = Annotated[str, Field(pattern=r"^[!-~]{1,255}$", description=(
    "Unique on the instance: a short name such as `billing`, or the service's URL. Verify's "
    "`aud`, and forward_auth's `X-KeyVault-Service`."))]


class ServiceScopeIn(_Request):
    name: str = Field(pattern=r"^[a-z0-9_.-]{1,60}:[a-z0-9_.-]{1,38}$", description=(
        "`object:action`; unique on the instance (a scope belongs to one service)."))
    description: str = Field(
        min_length=1, max_length=200, pattern=f"^[^\\u0000-\\u001F\\u007F]*{_SHOWN}"
                                              "[^\\u0000-\\u001F\\u007F]*$",
        description="What the scope lets a key do, shown on key forms.")


class CreateService(_Request):
    name: Name = Field(description="Unique on the instance.")
    audience: Audience
    description: Description = None
    scopes: list[ServiceScopeIn] = Field([], max_length=100)
    personal_api_key: Credential = None


class UpdateService(_Request):
    """Only the fields given change. `scopes` replaces the list: removing a scope that keys
    carry is 409 naming them, unless `narrow` is true (those keys lose it; each change logged)."""

    name: Name | None = None
    audience: Audience | None = None
    description: Description = None
    scopes: list[ServiceScopeIn] | None = Field(None, max_length=100)
    narrow: bool = False
    personal_api_key: Credential = None


class CreateServiceKey(_Request):
    """A verify key of the service: it always carries `key:verify`, and only that."""

    label: Label
    expires_at: DateTimeText | None = Field(None, description="ISO 8601; null for no expiry.")
    personal_api_key: Credential = None
