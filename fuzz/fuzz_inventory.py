"""Fuzz the inventory loader (YAML, aliases, the pydantic model): an Inventory or ConfigError."""

from __future__ import annotations

import warnings
from pathlib import Path

import atheris
from _harness import run

with atheris.instrument_imports():
    from rotation.config.inventory import parse_inventory
    from rotation.core.errors import ConfigError

WHERE = Path("/nonexistent/rotation.yaml")


def test_one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicode(len(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # verify: false warns, on purpose
            parse_inventory(text, WHERE)
    except ConfigError:
        pass


if __name__ == "__main__":
    run(test_one_input)
