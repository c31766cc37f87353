"""Subcommands of the `relaychain` CLI, one module per group."""
