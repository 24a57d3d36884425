"""The ``rotation`` console script: the domain commands plus the service processes."""

from __future__ import annotations

from rotation.cli import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
