"""Health probes, and error pages that are the app's own templates, never a stack trace."""

from __future__ import annotations

import logging
import socket

import pytest
from sqlalchemy import text

from keyvault import create_app
from keyvault.extensions import db
from tests.conftest import AuthActions, base_overrides


def test_healthz(client):
    """/healthz answers 200 while the process is up."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_with_a_working_database(client):
    """/readyz answers 200 when the database answers a query."""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when we return: nothing listens there


@pytest.mark.parametrize("unreachable", [
    lambda tmp_path: f"sqlite:///{tmp_path / 'no-such-folder' / 'keyvault.db'}",
    lambda tmp_path: f"postgresql+psycopg://keyvault:pw@127.0.0.1:{_closed_port()}/keyvault",
], ids=["sqlite-missing-folder", "postgresql-closed-port"])
def test_readyz_is_503_when_the_database_is_unreachable(database_url, tmp_path, unreachable):
    """/readyz answers 503 (so a balancer stops sending traffic) while /healthz stays 200."""
    app = create_app(base_overrides(unreachable(tmp_path)))
    try:
        client = app.test_client()
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json == {"status": "unavailable", "database": "unreachable"}
        assert response.headers["Retry-After"] == "5"
        assert client.get("/healthz").status_code == 200
    finally:
        with app.app_context():
            db.engine.dispose()


def assert_app_error_page(response, status: int, title: str) -> str:
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert f"<title>{status} {title} · KeyVault</title>" in html
    assert f"<h1>{status} · {title}</h1>" in html
    assert 'class="brand"' in html  # the app's own layout, not Werkzeug's bare page
    assert "Traceback" not in html and 'File "' not in html
    assert "Content-Security-Policy" in response.headers
    return html


@pytest.mark.parametrize(("method", "path", "status", "title"), [
    ("get", "/no-such-page", 404, "Not Found"),
    ("get", "/settings/api-keys/x/y/z", 404, "Not Found"),
    ("get", "/logout", 405, "Method Not Allowed"),
    ("delete", "/login", 405, "Method Not Allowed"),
    ("post", "/login", 400, "Form expired or forged"),
])
def test_error_pages_are_the_apps_templates(client, method, path, status, title):
    """404, 405 and a CSRF failure are rendered with the app's error template."""
    response = getattr(client, method)(path)
    assert_app_error_page(response, status, title)


def test_405_keeps_the_allow_header(client):
    """A 405 page still tells the client which methods the URL takes."""
    response = client.get("/logout")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_500_renders_the_error_template_without_the_exception(make_app, caplog):
    """An exception in a view gives the app's 500 page; its text goes to the log only."""
    app = make_app()

    @app.get("/test-only/boom")
    def boom():
        raise RuntimeError("database password is hunter2")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/test-only/boom")
    html = assert_app_error_page(response, 500, "Internal Server Error")
    assert "hunter2" not in html and "RuntimeError" not in html
    assert "hunter2" in caplog.text  # the detail is kept for the operator
    assert "RuntimeError" in caplog.text


@pytest.mark.parametrize(("path", "login_first"), [
    ("/login", False), ("/signup", False), ("/settings/api-keys", True),
])
def test_413_for_a_body_over_the_limit(make_app, make_user, path, login_first):
    """A page post larger than KEYVAULT_MAX_BODY_BYTES gets the app's 413 page."""
    app = make_app(KEYVAULT_MAX_BODY_BYTES="2048")
    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    client = app.test_client()
    if login_first:
        make_user("big@example.com")
        assert AuthActions(client).login("big@example.com").status_code == 302
    response = client.post(path, data={"label": "x" * 4096, "email": "a@example.com"})
    assert_app_error_page(response, 413, "Request Entity Too Large")
    small = client.post(path, data={"label": "x" * 100})
    assert small.status_code != 413


def test_a_page_that_needs_the_database_while_it_is_down_is_503(database_url, caplog):
    """The app's own page, 503 with Retry-After: the person may simply try again."""
    app = create_app(base_overrides(
        f"postgresql+psycopg://keyvault:pw@127.0.0.1:{_closed_port()}/keyvault"))

    @app.get("/test-only/needs-database")
    def needs_database():
        return str(db.session.execute(text("SELECT 1")).scalar())

    try:
        with caplog.at_level(logging.ERROR):
            response = app.test_client().get("/test-only/needs-database")
        assert_app_error_page(response, 503, "Service Unavailable")
        assert response.headers["Retry-After"] == "5"
        assert "Traceback" not in caplog.text
    finally:
        with app.app_context():
            db.engine.dispose()
