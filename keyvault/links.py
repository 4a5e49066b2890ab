"""Links KeyVault hands out (API pagination, mail): built on KEYVAULT_BASE_URL, never on a
request's Host."""

from __future__ import annotations

from flask import current_app, request, url_for


def external_url(endpoint: str, **values) -> str:
    """A link to hand out (API pagination, mail): absolute on KEYVAULT_BASE_URL when it is set,
    else relative (`/api/...`, which a client resolves against the URL it called). Never on the
    request's Host, nor on the X-Forwarded-Host a proxy relays (nginx's `$host` is whatever the
    client wrote): `Host: evil.com` must not put evil.com in anyone's reset link."""
    return _on(current_app.config["KEYVAULT_BASE_URL"], url_for(endpoint, **values))


def mail_url(endpoint: str, **values) -> str:
    """A link for a mail: external_url, except in development without KEYVAULT_BASE_URL, where
    it is on the address `keyvault serve` listens on (KEYVAULT_DEVELOPMENT_URL, from
    configuration, still never from a request): a mail read from the log has nothing to resolve
    a path against."""
    config = current_app.config
    return _on(config["KEYVAULT_BASE_URL"] or config["KEYVAULT_DEVELOPMENT_URL"],
               url_for(endpoint, **values))


def _on(base: str | None, path: str) -> str:
    return base + path[len(request.script_root):] if base else path
