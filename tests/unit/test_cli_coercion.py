"""The CLI's parameters convert as typer's pydantic adapters would, without building them for a str, a list of
strs or a value left out (rotation.cli.main._TextFirst)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer import _click as click
from typer._coercion import build_runtime_param

from rotation.cli.main import _build, _text_without_pydantic, _TextFirst


@pytest.mark.parametrize(("name", "args"), [
    ("rotate", ["c00", "cm", "db:sessions", "--trust", "a.pem", "--trust", "b.pem", "--cert-file", "c.pem",
                "--key-file", "k.pem", "--verify-deadline", "90s", "-c", "x.yaml", "--inline"]),
    ("rotate", ["c00"]),
    ("history", ["--limit", "7", "--cluster", "c00"]),
])
def test_values_are_those_typer_gives(name: str, args: list[str]) -> None:
    ours, theirs = _build(name), _build(name)
    with click.Context(ours) as ctx:
        _text_without_pydantic(ours, ctx)
        ours_params = ours.make_context(name, list(args)).params
    theirs_params = theirs.make_context(name, list(args)).params
    assert ours_params == theirs_params
    assert {type(v) for v in ours_params.values()} == {type(v) for v in theirs_params.values()}
    assert all(isinstance(p._runtime_param, _TextFirst) for p in ours.params)  # type: ignore[attr-defined]


def test_a_bad_value_is_refused_as_typer_refuses_it() -> None:
    ours, theirs = _build("history"), _build("history")
    with click.Context(ours) as ctx:
        _text_without_pydantic(ours, ctx)
    messages = []
    for command in (ours, theirs):
        with pytest.raises(click.exceptions.BadParameter) as refused:
            command.make_context("history", ["--limit", "many"])
        messages.append(refused.value.format_message())
    assert messages[0] == messages[1]


def test_anything_but_text_goes_to_typer_s_coercion() -> None:
    command = _build("rotate")
    config = next(p for p in command.params if p.name == "config")
    text_first = _TextFirst(parameter_info=config.type_descriptor.parameter_info,  # type: ignore[attr-defined]
                            annotation=Path, descriptor=config.type_descriptor)  # type: ignore[attr-defined]
    with click.Context(command) as ctx:
        assert text_first.coerce("x.yaml", config, ctx) == \
            build_runtime_param(config.type_descriptor).coerce("x.yaml", config, ctx)  # type: ignore[attr-defined]
        assert text_first.coerce(None, config, ctx) is None
