"""The `rotation` command line (typer): ``main.app``, one module per command group."""
