"""The outbox: whatever leaves the process (mail, webhooks) is a row queued in the caller's
transaction and sent later by any sender.

A kind of message is a Courier: its table (with models.OutboxColumns) and how to send one row.
`send_pending` claims due rows with a lease, an UPDATE that succeeds only while nobody else
holds the row, so two senders never send one message, and one killed mid-way loses nothing (its
lease runs out and another sends it: at least once). A failure is retried when the courier says
(backoff), or given up on with the error kept; the log gets one line per failure, never a body.
`start_sender` is the background thread each `keyvault serve` worker runs per courier.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import Flask
from sqlalchemy import or_, select, update

from .. import clock
from ..extensions import db
from ..logs import FailureLog

BATCH = 50
SENDER_JOIN_SECONDS = 10


def _nothing(*_args) -> dict:
    return {}


def _never(_error: BaseException) -> bool:
    return False


@dataclass(frozen=True)
class Courier:
    """One kind of outgoing message: its table and how to send a row of it."""

    name: str  # for the log: "mail", "webhook"
    model: Any  # a table with models.OutboxColumns
    # Sends the row; returns the values to keep on it. Raises to fail; an error's `kept` dict
    # is kept too (a webhook's status and answer).
    deliver: Callable[[Flask, Any], dict]
    # When to try again after the attempts-th failure; None gives up.
    retry_at: Callable[[Flask, Any, int], datetime | None]
    # A failure the next try would meet again: given up at once.
    hopeless: Callable[[BaseException], bool] = field(default=_never)
    # More values to write when the row is sent (mail blanks the bodies of secret links).
    on_sent: Callable[[Any], dict] = field(default=_nothing)
    # Called in the transaction that gives a row up (a webhook endpoint is disabled).
    on_give_up: Callable[[Flask, Any], None] = field(default=_nothing)


class SendReport(NamedTuple):
    sent: int
    failed: int  # will be retried
    gave_up: int


def _due(model):
    now = clock.now()
    return (model.sent_at.is_(None), model.gave_up_at.is_(None), model.next_attempt_at <= now,
            or_(model.claimed_until.is_(None), model.claimed_until < now))


def _claim(model, row_id: int, sender: str, lease: timedelta) -> bool:
    """Take the row for `lease`; False when another sender holds it or it is done."""
    claimed = db.session.execute(
        update(model).where(model.id == row_id, *_due(model))
        .values(claimed_until=clock.now() + lease, claimed_by=sender)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return claimed.rowcount == 1


def _finish(courier: Courier, row_id: int, sender: str, before_commit=None, **values) -> None:
    model = courier.model
    done = db.session.execute(
        update(model).where(model.id == row_id, model.claimed_by == sender)
        .values(claimed_until=None, claimed_by=None, **values)
        .execution_options(synchronize_session=False))
    if before_commit is not None and done.rowcount == 1:
        before_commit()
    db.session.commit()
    if done.rowcount != 1:
        courier_log(courier).warning("%s %s: the lease ran out while sending; another sender "
                                     "may repeat it", courier.name, row_id)


def courier_log(courier: Courier) -> logging.Logger:
    return logging.getLogger(f"keyvault.{courier.name}")


def send_pending(app: Flask, courier: Courier, lease: timedelta, *,
                 limit: int = 1000) -> SendReport:
    """Send every row that is due (up to `limit`), each by the one sender that claims it."""
    model, log = courier.model, courier_log(courier)
    sender = secrets.token_hex(8)
    sent = failed = gave_up = 0
    while sent + failed + gave_up < limit:
        candidates = db.session.scalars(
            select(model.id).where(*_due(model))
            .order_by(model.next_attempt_at, model.id).limit(min(BATCH, limit))).all()
        db.session.commit()  # end the read, so claims see other senders' commits
        claimed_any = False
        for row_id in candidates:
            if sent + failed + gave_up >= limit or not _claim(model, row_id, sender, lease):
                continue
            claimed_any = True
            row = db.session.get(model, row_id)
            attempts = row.attempts + 1
            try:
                kept = courier.deliver(app, row)
            except Exception as error:  # noqa: BLE001 - any failure is retried, never a poison row
                reason = f"{type(error).__name__}: {error}"[:500]
                values = {"attempts": attempts, "last_error": reason,
                          **getattr(error, "kept", {})}
                retry_at = None if courier.hopeless(error) else courier.retry_at(app, row,
                                                                                 attempts)
                if retry_at is None:
                    gave_up += 1
                    log.error("%s %s not sent; giving up after %d attempt(s): %s", courier.name,
                              row_id, attempts, reason)
                    _finish(courier, row_id, sender, lambda row=row: courier.on_give_up(app, row),
                            gave_up_at=clock.now(), **values)
                else:
                    failed += 1
                    log.warning("%s %s not sent (attempt %d); retrying at %s: %s", courier.name,
                                row_id, attempts, retry_at.isoformat(timespec="seconds"), reason)
                    _finish(courier, row_id, sender, next_attempt_at=retry_at, **values)
            else:
                sent += 1
                _finish(courier, row_id, sender, attempts=attempts, sent_at=clock.now(),
                        **kept, **courier.on_sent(row))
        if not claimed_any:
            break
    return SendReport(sent, failed, gave_up)


def start_sender(app: Flask, interval: int, send: Callable[[], Any],
                 name: str) -> Callable[[], None]:
    """A thread that calls `send` in an app context every `interval` seconds (0: no thread);
    returns stop(). A failure (the database down) is logged once and tried again."""
    if not interval:
        return lambda: None
    stopping = threading.Event()
    log = logging.getLogger(f"keyvault.{name}")
    failures = FailureLog(log, f"{name} sender")

    def run() -> None:
        while not stopping.wait(interval):
            try:
                with app.app_context():
                    send()
            except Exception as error:  # noqa: BLE001 - a database outage must not end the thread
                kind = type(getattr(error, "orig", None) or error).__name__
                failures.failed(kind, "%s; trying again every %s s", kind, interval)
            else:
                failures.recovered()

    thread = threading.Thread(target=run, name=f"keyvault-{name}", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=SENDER_JOIN_SECONDS)

    return stop
