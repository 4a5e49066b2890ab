"""`python -m keyvault ...`: the `keyvault` command, for a process that has no console script on
its PATH (the tests and the benchmark start servers this way)."""

from .cli import main

main()
