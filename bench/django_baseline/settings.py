"""Django settings for the baseline: as lean as an API-only DRF deployment gets.

DEBUG off, one middleware (CommonMiddleware), no sessions, no auth middleware, no templates, no
admin; DRF with no authentication classes (HasAPIKey is a permission, it needs none, and without
them a refused key gets 403 rather than 401), the JSON parser and renderer only. The API key
library itself runs with its defaults: its own hasher (one SHA-512 of the key), the
`Authorization: Api-Key <key>` header (API_KEY_CUSTOM_HEADER is not set).
"""

from __future__ import annotations

import json
import os
import secrets

from django.core.exceptions import ImproperlyConfigured

from . import CONNECTION_ENV, DATABASE_ENV, ENGINE_ENV, OPTIONS_ENV, SECRET_KEY_ENV

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
# Nothing is signed here (no sessions, no CSRF); Django refuses to start without one.
SECRET_KEY = os.environ.get(SECRET_KEY_ENV) or secrets.token_urlsafe(50)

INSTALLED_APPS = [
    "django.contrib.contenttypes",  # django.contrib.auth needs it; DRF's AnonymousUser needs auth
    "django.contrib.auth",
    "rest_framework",
    "rest_framework_api_key",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "bench.django_baseline.urls"
TEMPLATES: list = []

# Persistent connections, one per worker (as KeyVault holds one per thread): Django's default (0)
# opens and closes a connection for every request.
ENGINE = os.environ.get(ENGINE_ENV) or "sqlite"
if ENGINE == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get(DATABASE_ENV, "django-baseline.db"),
            "CONN_MAX_AGE": None,
        }
    }
elif ENGINE == "postgresql":
    # The benchmark's `--database-url` server, a database of the baseline's own (psycopg 3).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ[DATABASE_ENV],
            **{setting: os.environ.get(name, "") for setting, name in CONNECTION_ENV.items()},
            "OPTIONS": json.loads(os.environ.get(OPTIONS_ENV) or "{}"),
            "CONN_MAX_AGE": None,
        }
    }
else:
    raise ImproperlyConfigured(f"{ENGINE_ENV} must be sqlite or postgresql, got {ENGINE!r}")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework_api_key.permissions.HasAPIKey"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

# Django's default logging: with DEBUG off its console handler is silent, and mail_admins has
# no ADMINS. Nothing is written per request (gunicorn's access log is off by default).
