"""`keyvault serve`: gunicorn with KeyVault's defaults, and access logs that never show a key."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

SECRET_NAMES = frozenset({"personal_api_key", "token", "key"})
# A query parameter: what precedes it, its (possibly percent-encoded) name, and its value.
_PARAM = re.compile(r"(^|[?&;])([^&;=\s\"?]*)=([^&;\s\"]*)")
# Anything shaped like a key (prefix, underscore, 46 base62 characters), wherever it appears.
_KEY_SHAPED = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]+_[0-9A-Za-z]{46}(?![0-9A-Za-z])")


def scrub(text: str) -> str:
    """Hide keys a client put in a URL: values of key-carrying parameters, whatever way their
    names are encoded (the app decodes `personal%5Fapi%5Fkey` too), and anything key-shaped."""

    if "=" not in text and "_" not in text:
        return text  # neither a parameter nor anything key-shaped: most request lines

    def redact(match: re.Match) -> str:
        if unquote_plus(match.group(2)).lower() in SECRET_NAMES:
            return f"{match.group(1)}{match.group(2)}=[redacted]"
        return match.group(0)

    return _KEY_SHAPED.sub("[redacted]", _PARAM.sub(redact, text))


class ScrubbingFilter(logging.Filter):
    """For gunicorn's error log, which names the request URI when a request fails."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# What gunicorn's atoms for the default access-log format read from the WSGI environ.
_LOGGED_ENVIRON = ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "SERVER_PROTOCOL", "PATH_INFO",
                   "QUERY_STRING", "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_AUTHORIZATION")


class ScrubbingLogger(Logger):
    """gunicorn's logger, with keys in URLs redacted from the access and the error log."""

    def setup(self, cfg):
        super().setup(cfg)
        self.error_log.addFilter(ScrubbingFilter())
        # gunicorn turns every request header and environ entry into an atom for each line;
        # unless the format names one (`%({name}i)s`, `%({name}e)s`), skip building them.
        self._lean = "}i)" not in cfg.access_log_format and "}e)" not in cfg.access_log_format

    def atoms(self, resp, req, environ, request_time):
        if self._lean:
            environ = {name: environ[name] for name in _LOGGED_ENVIRON if name in environ}
            req = ()
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("u", "r", "q", "f", "U", "{raw_uri}e"):  # u: a Basic-auth user name
            if isinstance(atoms.get(name), str):
                atoms[name] = scrub(atoms[name])
        return atoms


def gunicorn_options(host: str, port: int, workers: int) -> dict:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": ScrubbingLogger,
        "forwarded_allow_ips": "127.0.0.1,::1",
        "timeout": 30,
    }


class KeyVaultServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        from . import create_app

        return create_app()  # each worker builds its own app, engine and connection pool


def run(host: str, port: int, workers: int) -> None:
    from . import create_app

    create_app()  # generate instance secrets once, before workers race for them
    KeyVaultServer(gunicorn_options(host, port, workers)).run()
