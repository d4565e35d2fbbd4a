"""One module per `convscope` subcommand (see convscope.cli)."""
