"""`keyvault-client verify KEY [--scope S]...`: KeyVault's answer as JSON on stdout.

Exit status, the table `keyvault` uses too (0 done, 1 refused, 2 usage, 3 unreachable): 0 the key is active,
1 it is not, 2 usage (a wrong option, no URL or service key), 3 KeyVault could not be reached
(or timed out, or answered 5xx: trying again may help), 4 no verdict for another reason (the
service key refused, an answer outside the contract: fix the configuration). A KEY of `-` is
read from standard input, which keeps it out of the process list and the shell history.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .client import KeyVaultClient
from .errors import KeyVaultError, KeyVaultUnavailable

ACTIVE, INACTIVE, USAGE, UNAVAILABLE, NO_VERDICT = 0, 1, 2, 3, 4


COST_MAX = 1000  # what KeyVault's verify takes (its README, "Limits on a key": 0 to 1000)


def _cost(text: str) -> int:
    """--cost: a whole number from 0 to COST_MAX (a wrong one is a usage error, exit 2)."""
    try:
        cost = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= cost <= COST_MAX:
        raise argparse.ArgumentTypeError(f"from 0 to {COST_MAX}, got {cost}")
    return cost


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyvault-client", description="Ask a KeyVault server about an API key.",
        epilog="Exit status: 0 active, 1 not active, 2 usage, 3 KeyVault unreachable (or too "
        "slow, or 5xx), 4 no verdict for another reason (e.g. the service key was refused).")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="Is KEY active (and does it hold the scopes)?")
    verify.add_argument("key", metavar="KEY", help="the key to check, or - to read it from stdin")
    verify.add_argument("--scope", dest="scopes", action="append", metavar="S",
                        help="a scope the key must hold (repeatable)")
    verify.add_argument("--client-ip", metavar="ADDRESS",
                        help="the address the key is used from (keys restricted to address ranges)")
    verify.add_argument("--cost", type=_cost, metavar="N",
                        help="what this use spends of the key's usage quota (KeyVault's default: 1)")
    verify.add_argument("--url", default=os.environ.get("KEYVAULT_URL"),
                        help="KeyVault's base URL (default: $KEYVAULT_URL)")
    verify.add_argument("--service-key", default=os.environ.get("KEYVAULT_SERVICE_KEY"),
                        help="this service's key, with scope key:verify (default: $KEYVAULT_SERVICE_KEY)")
    verify.add_argument("--timeout", type=float, default=2.0, help="seconds (default: 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("KeyVault's URL is needed: --url or KEYVAULT_URL")
    if not args.service_key:
        parser.error("a service key is needed: --service-key or KEYVAULT_SERVICE_KEY")
    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    try:
        with KeyVaultClient(args.url, args.service_key, timeout=args.timeout) as client:
            verification = client.verify(key, args.scopes, client_ip=args.client_ip,
                                         cost=args.cost)
    except KeyVaultUnavailable as error:
        print(f"keyvault-client: {error}", file=sys.stderr)
        return UNAVAILABLE
    except KeyVaultError as error:
        print(f"keyvault-client: {error}", file=sys.stderr)
        return NO_VERDICT
    print(json.dumps(dict(verification.answer), indent=2))
    return ACTIVE if verification.active else INACTIVE


if __name__ == "__main__":
    sys.exit(main())
