"""Liveness and readiness probes for load balancers and orchestrators."""

from flask import Blueprint, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up and serving; says nothing about the database."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """The database answers a query; 503 otherwise, so a balancer stops sending traffic."""
    from . import database_ready

    if database_ready():
        return jsonify(status="ok", database="ok")
    from .api.errors import RETRY_AFTER_SECONDS

    return (jsonify(status="unavailable", database="unreachable"), 503,
            {"Retry-After": str(RETRY_AFTER_SECONDS)})
