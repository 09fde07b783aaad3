"""The `reconnect` subcommands, one module per area; streams/cli.py puts them together."""
