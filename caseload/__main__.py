"""`python -m caseload`: the same as `reconnect caseload`."""

from caseload.cli import main

main()
