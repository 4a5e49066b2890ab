"""Links KeyVault hands out (API pagination, mail): built on KEYVAULT_BASE_URL, never on a
request's Host."""

from __future__ import annotations

from flask import current_app, request, url_for


def external_url(endpoint: str, **values) -> str:
    """A link to hand out (API pagination): absolute on KEYVAULT_BASE_URL when it is set; else,
    behind KEYVAULT_TRUSTED_PROXIES, on the host and scheme the proxy forwarded; else relative
    (`/api/...`, which a client resolves against the URL it called). Never on the Host header
    of a request that came straight from the client: anyone can write `Host: evil.com`."""
    path = url_for(endpoint, **values)
    base = current_app.config["KEYVAULT_BASE_URL"]
    if base:
        return base + path[len(request.script_root):]
    if current_app.config["KEYVAULT_TRUSTED_PROXIES"]:
        return url_for(endpoint, _external=True, **values)
    return path
