"""`keyvault-client verify KEY [--scope S]...`: KeyVault's answer as JSON on stdout.

Exit status: 0 the key is active, 1 it is not, 2 KeyVault could not be reached (or timed out,
or answered 5xx), 3 no verdict for another reason (usage, configuration, the service key
refused, an answer outside the contract). A KEY of `-` is read from standard input, which keeps
it out of the process list and the shell history.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .client import KeyVaultClient
from .errors import KeyVaultError, KeyVaultUnavailable

ACTIVE, INACTIVE, UNAVAILABLE, NO_VERDICT = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(NO_VERDICT, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keyvault-client", description="Ask a KeyVault server about an API key.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    verify = commands.add_parser("verify", help="Is KEY active (and does it hold the scopes)?")
    verify.add_argument("key", metavar="KEY", help="the key to check, or - to read it from stdin")
    verify.add_argument("--scope", dest="scopes", action="append", metavar="S",
                        help="a scope the key must hold (repeatable)")
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
            verification = client.verify(key, args.scopes)
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
