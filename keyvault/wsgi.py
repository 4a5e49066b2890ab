"""WSGI entry point for other servers (`keyvault serve` is the supported one: README)."""

from .app import create_app

app = create_app()
