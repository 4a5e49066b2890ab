"""Verify's cost for a key restricted to a service, asked by that service, against an
unrestricted key asked by the same service (issue 24: within 5%), and what a service's own
verify key costs as a caller against a plain key:verify key. In-process, as
bench/inprocess.py measures the hot path: check_keys (one lookup, the judges) and the answer's
bytes, in microseconds per call, interleaved rounds so drift hits both alike.

    .venv/bin/python -m bench.restricted
"""

from __future__ import annotations

import random
import statistics
import tempfile
import timeit
from pathlib import Path

from flask_migrate import upgrade

from keyvault import create_app, service
from keyvault.api.schemas import verify_answer

ORIGIN = service.Origin("127.0.0.1", "bench")


def main(rounds: int = 15, number: int = 2000) -> dict:
    folder = Path(tempfile.mkdtemp())
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.db",
                      "SECRET_KEY": "x" * 32, "KEYVAULT_KEY_PEPPER": "p" * 32})
    with app.app_context():
        upgrade()
        ada = service.sign_up("ada@example.com", "correct horse battery", ORIGIN, confirmed=True)
        org = service.organizations.create_organization(ada, "Acme", ORIGIN).organization
        billing = service.services.create_service(
            ada, org.public_id, ORIGIN, name="Billing", audience="billing",
            scopes=[{"name": "invoice:read", "description": "Read invoices"}])
        as_service = service.services.create_service_key(ada, org.public_id, billing.public_id,
                                                         ORIGIN, label="v")[1]
        plain = service.create_key(ada, label="p", scopes=["key:verify"], origin=ORIGIN)[1]
        scopes = ["invoice:read", "user:read"]
        restricted = service.create_key(ada, label="r", scopes=scopes, origin=ORIGIN,
                                        services=[billing.public_id])[1]
        unrestricted = service.create_key(ada, label="u", scopes=scopes, origin=ORIGIN)[1]
        cases = {"unrestricted, plain caller": (plain, unrestricted, "caller"),
                 "unrestricted, a service": (as_service, unrestricted, "caller"),
                 "restricted, its service": (as_service, restricted, "caller")}

        def call(caller, subject, presented):
            verdicts = service.check_keys([caller, subject], [["key:verify"], ["invoice:read"]],
                                          presented=presented)
            assert verdicts[1].active, verdicts[1].code
            return verify_answer(verdicts[1])

        samples: dict[str, list[float]] = {name: [] for name in cases}
        order = list(cases)
        for round_ in range(rounds):  # each round in a shuffled order: drift hits all alike
            random.Random(round_).shuffle(order)
            for name in order:
                args = cases[name]
                call(*args)
                took = timeit.timeit(lambda args=args: call(*args), number=number)
                samples[name].append(took / number * 1e6)
    result: dict[str, float] = {name: round(statistics.median(values), 2)
                                for name, values in samples.items()}

    def percent(slower: str, faster: str) -> float:
        """The median of the rounds' paired ratios (each round measured both)."""
        ratios = [a / b for a, b in zip(samples[slower], samples[faster], strict=True)]
        return round((statistics.median(ratios) - 1) * 100, 1)

    result["restricted_vs_unrestricted_percent"] = percent("restricted, its service",
                                                           "unrestricted, a service")
    result["service_caller_vs_plain_percent"] = percent("unrestricted, a service",
                                                        "unrestricted, plain caller")
    return result


if __name__ == "__main__":
    print(main())
