"""Fuzz the chat command grammar: a Command or UsageError; a rendered command parses back."""

from __future__ import annotations

import atheris
from _harness import run

with atheris.instrument_imports():
    from rotation.chatops.grammar import UsageError, parse, render


def test_one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicode(len(data))
    try:
        command = parse(text)
    except UsageError:
        return
    if render(command) != "confirm" and parse(render(command)) != command:
        raise AssertionError(f"{text!r} -> {command!r} does not render back")


if __name__ == "__main__":
    run(test_one_input)
