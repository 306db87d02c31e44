"""Subcommands of the `peftlab` command line, one module each."""
