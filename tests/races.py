"""Two requests that race for the last free place under a limit, as threads against the real
database: what each one got, "created", "limit" or the error it met."""

from __future__ import annotations

import threading
from collections.abc import Callable

from keyvault import service


def race_two(app, attempt: Callable[[str], object]) -> list[str]:
    """Run `attempt(label)` in two threads at once, each in an app context of its own; the
    outcomes, sorted (a fair race is ["created", "limit"])."""
    outcomes: list[str] = []

    def run(label: str) -> None:
        with app.app_context():
            try:
                attempt(label)
                outcomes.append("created")
            except service.KeyLimitReached:
                outcomes.append("limit")
            except Exception as error:  # noqa: BLE001 - the test reports what went wrong
                outcomes.append(repr(error))

    threads = [threading.Thread(target=run, args=(f"racer {n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(outcomes)
