"""The streaming side of Reconnect: the Faust app, its topics, tables, agents and views, and the CLI.

Importing this package is cheap; the Faust app is built only when `streams.app` is imported.
"""
