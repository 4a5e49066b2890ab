"""`keyvault serve`: gunicorn with KeyVault's defaults, and access logs that never show a key."""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from .redact import scrub


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
        # u: a Basic-auth user name; a: the User-Agent, where a careless client may put a key
        for name in ("u", "r", "q", "f", "U", "a", "{raw_uri}e"):
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
        # gunicorn's control socket is one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn): a
        # second instance on the host would take over the first one's. KeyVault is managed
        # with signals (SIGTERM, SIGHUP), so it opens none.
        "control_socket_disable": True,
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
