"""The ``llmos`` command-line interface (Typer); ``llmos.cli.main:app`` is the entry point."""
