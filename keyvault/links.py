"""Links KeyVault hands out (API pagination, mail): built on KEYVAULT_BASE_URL, never on a
request's Host."""

from __future__ import annotations

from flask import current_app, request, url_for


def external_url(endpoint: str, **values) -> str:
    """A link to hand out (API pagination, mail): absolute on KEYVAULT_BASE_URL when it is set,
    else relative (`/api/...`, which a client resolves against the URL it called). Never on the
    request's Host, nor on the X-Forwarded-Host a proxy relays (nginx's `$host` is whatever the
    client wrote): `Host: evil.com` must not put evil.com in anyone's reset link."""
    path = url_for(endpoint, **values)
    base = current_app.config["KEYVAULT_BASE_URL"]
    if base:
        return base + path[len(request.script_root):]
    return path
