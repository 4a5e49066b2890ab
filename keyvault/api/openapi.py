"""The OpenAPI 3.1 document for /api/."""


def document() -> dict:
    return {"openapi": "3.1.0", "info": {"title": "KeyVault API", "version": "1"}, "paths": {}}
