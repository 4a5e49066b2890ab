"""The Django baseline's WSGI application, for gunicorn (bench/servers.py `start_django`)."""

import os

from django.core.wsgi import get_wsgi_application

from . import SETTINGS_MODULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
application = get_wsgi_application()
