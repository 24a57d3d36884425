"""What the commands share on the way in: the common options and loading the inventory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rotation.cli.render import fail
from rotation.core.errors import ConfigError

if TYPE_CHECKING:
    from rotation.config import Inventory

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Inventory YAML (default: $ROTATION_CONFIG or ./rotation.yaml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def whoami() -> str:
    """Who runs this command, for the records' ``requested_by``: ``cli:<OS user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no passwd entry in a container
        return "cli"


def load(config: Path | None, as_json: bool = False, *, check_files: bool = True) -> Inventory:
    from rotation.config import load_inventory  # the pydantic models: only for commands that read the inventory

    try:
        return load_inventory(config, check_files=check_files)
    except ConfigError as exc:
        raise fail(exc, as_json=as_json) from None


__all__ = ["ConfigOption", "JsonOption", "load", "whoami"]
