"""A request's WSGI environ, built from what granian hands over (ASGI), byte for byte."""

from __future__ import annotations

import sys
from urllib.parse import unquote_to_bytes


def environ_of(scope: dict) -> dict:
    """The WSGI environ (PEP 3333) of an ASGI scope, byte for byte as werkzeug's own server
    and granian's WSGI build it: the path percent-decoded, the query as sent, and every
    header value, each as a latin-1 string of its bytes. Nothing is dropped or judged
    here; what the app cannot read, it refuses (keyvault.http.wire)."""
    host, port = scope["server"]
    address, client_port = scope["client"]
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(scope["raw_path"]).decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": address,
        "REMOTE_PORT": str(client_port),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope["scheme"],
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:  # a repeated header: one value, as RFC 9110 joins them
            value = f"{environ[key]}{'; ' if key == 'HTTP_COOKIE' else ', '}{value}"
        environ[key] = value
    return environ
