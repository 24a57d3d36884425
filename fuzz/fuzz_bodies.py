"""Fuzz the webhook's body parsers: a form or JSON document, or BadBody; nothing else."""

from __future__ import annotations

import atheris
from _harness import run

with atheris.instrument_imports():
    from rotation.chatops.bodies import BadBody, parse_form, parse_json


def test_one_input(data: bytes) -> None:
    try:
        parse_form(data, 64)
    except BadBody:
        pass
    try:
        parse_json(data)
    except BadBody:
        pass


if __name__ == "__main__":
    run(test_one_input)
