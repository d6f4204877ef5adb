"""Subcommands of the `codellama` command line."""
