"""`codellama` subcommands that speak HTTP (registered in `inference.cli.COMMANDS`)."""
