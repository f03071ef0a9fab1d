"""`python -m herald` runs the CLI (used by tests and the demo to start child processes)."""

from herald.cli import main

main()
