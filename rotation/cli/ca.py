"""`rotation ca init` and `rotation secret-key`: the keys an operator makes once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from rotation.cli.render import cell, console, fail
from rotation.core.durations import parse_duration
from rotation.core.errors import OverwriteRefused, RotationError
from rotation.core.model import KeyType

ca_app = typer.Typer(help="Manage the internal CA used by `type: internal_ca` issuers.", no_args_is_help=True)


def secret_key() -> None:
    """Print a new encryption key for ROTATION_SECRET_KEY (encrypts rollback keys and ACME accounts
    at rest). To rotate it, put the new key first and keep the old one after a comma."""
    from rotation.adapters.secrets import SecretBox

    print(SecretBox.generate_key())


@ca_app.command("init")
def ca_init(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write ca.pem and ca-key.pem.")] = Path("."),
    common_name: Annotated[str, typer.Option("--cn", help="CA common name.")] = "rotation internal CA",
    validity: Annotated[str, typer.Option(help="CA lifetime, e.g. 3650d.")] = "3650d",
    key_type: Annotated[KeyType, typer.Option(help="CA key type.")] = KeyType.ECDSA_P384,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files (without it, existing files "
                                                        "are never overwritten).")] = False,
) -> None:
    """Create a CA (certificate + private key, 0600) for people who have none.

    Never overwrites an existing ca.pem or ca-key.pem unless --force is given (certificates it issued stop
    chaining to a replaced CA). Prints the issuer entry to add to the inventory."""
    from rotation.adapters.issuers.internal_ca import init_ca

    try:  # each option checked before anything is written, its error naming it
        lifetime = parse_duration(validity)
    except ValueError as exc:
        raise fail(f"--validity: {exc}") from None
    if lifetime <= timedelta(0):
        raise fail(f"--validity {validity}: must be longer than zero (e.g. 3650d)")
    if not 1 <= len(common_name) <= 64:  # X.509's bounds for a common name
        raise fail(f"--cn: 1 to 64 characters, not {len(common_name)}")
    try:
        cert_path, key_path = init_ca(directory, common_name=common_name, validity=lifetime,
                                      key_type=key_type, overwrite=force)
    except OverwriteRefused as exc:
        raise fail(f"{exc.message} (--force replaces it: certificates issued by the old CA stop chaining to it)"
                   ) from None
    except OSError as exc:
        raise fail(f"--dir {directory}: cannot write the CA there ({exc.strerror})") from None
    except (RotationError, ValueError) as exc:
        raise fail(getattr(exc, "message", None) or str(exc)) from None
    from rotation.config import resolve_config_path

    inventory = resolve_config_path(None)
    console.print(cell(f"CA certificate: {cert_path}\nCA key (keep it secret, mode 0600): {key_path}", multiline=True))
    console.print(cell(f"Add this to the inventory ({inventory}: --config or $ROTATION_CONFIG) at the top level, "
                       "merged into an `issuers:` section already there, and name it in a cluster with "
                       "`issuer: internal`:", multiline=True))
    console.print(cell(f"issuers:\n  internal:\n    type: internal_ca\n    ca_cert: {cert_path.resolve()}\n"
                       f"    ca_key_file: {key_path.resolve()}", multiline=True), soft_wrap=True)
    console.print(cell("Running it again never overwrites these files; --force replaces them.", "dim"))


__all__ = ["ca_app", "ca_init", "secret_key"]
