"""WSGI entry point for other servers: `gunicorn 'keyvault.wsgi:app'`."""

from . import create_app

app = create_app()
