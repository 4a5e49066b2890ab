"""Liveness and readiness probes for load balancers and orchestrators, and /metrics for
Prometheus (keyvault.metrics counts; this serves what it counted)."""

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import text

from .. import metrics
from ..extensions import db
from ..http import gate
from ..http.context import origin
from ..http.credentials import bearer_value
from ..http.problems import RETRY_AFTER_SECONDS, problem, respond
from ..service import get_user
from ..service.scopes import READ_METRICS

bp = Blueprint("ops", __name__)
NO_KEY = ("/metrics needs an administrator's API key with the scope 'metrics:read', sent as "
          "'Authorization: Bearer <key>'.")


def database_ready() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        db.session.rollback()
        return False


@bp.get("/healthz")
def healthz():
    """The process is up and serving; says nothing about the database."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """The database answers a query; 503 otherwise, so a balancer stops sending traffic."""
    if database_ready():
        return jsonify(status="ok", database="ok")
    return (jsonify(status="unavailable", database="unreachable"), 503,
            {"Retry-After": str(RETRY_AFTER_SECONDS)})


@bp.get("/metrics")
def scrape():
    """Every metric, for an administrator's key that carries `metrics:read` (sign-up is open,
    so a scope alone would let anyone in): anonymous callers get 401, other keys 403."""
    header = request.headers.get("Authorization")  # a scraper's bearer token; never the URL
    admission = gate.admit(bearer_value(header) if header is not None else None, [READ_METRICS],
                           origin(), missing=NO_KEY)
    if admission.refusal is not None:
        return respond(admission.refusal)
    owner = get_user(admission.caller.user_id)
    if owner is None or not owner.is_admin:
        return respond(problem(403, "Forbidden", "Metrics are for administrators: use a key of "
                               "an administrator's account that carries 'metrics:read'."))
    # prometheus_client picks its mode when first imported: not before `keyvault serve` has
    # set PROMETHEUS_MULTIPROC_DIR (keyvault.metrics)
    from prometheus_client import CONTENT_TYPE_LATEST

    return current_app.response_class(metrics.exposition(), status=200, headers={
        "Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
