"""``say`` and ``print_table`` write, without rich, exactly what rich writes: same text, same wrapping,
same padding; and they hand over to rich wherever rich would do something else (a terminal, forced
colours, a line to wrap, a table to shrink, characters wider than one cell)."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from rotation.cli import render
from rotation.cli.render import line, print_table, say

LINES = [
    ("  ", ("c00/cm", "dim"), " ", ("verify", ""), " ", ("ok", "green"), " ", ("4 endpoint(s) serve ab12", "")),
    ("  ", ("c00/cm", "dim"), " ", ("push", ""), " ", ("ok", "green"), " ", ("", "")),  # ends with a space
    (("x" * 40, "bold"),),
    (("y" * 41, "red"), " tail"),
    ("  ", ("a [bold]markup[/] and :smile: stay text", "red")),
    ("  ", ("caf\u00e9 \u540d\u524d", "")),  # not ASCII: rich measures it
    ("  ", ("tab\there\x1b[31m and escape", "")),
    ("", ("", "")),
    ("  plan:",),
    ("queued 1 rotation(s): ", ("a5f88d8ac4dc", ""), " on ", ("Redis redis://127.0.0.1:58391/0", ""),
     "; following (Ctrl-C stops following)"),
    (("word " * 30, ""),),
    (("  many   spaces   between    words " * 4, ""), "   "),
    (("a" * 95 + " " + "b" * 30 + "  c", ""),),
    (("x" * 20 + " " * 30 + "y", ""),),
]
TABLES = [
    [("cm@node1 127.157.1.1:8443", "c22b0ce9744423a9", "bd812345e2006927"),
     ("cm@cluster GET /v1/cluster/certificates", "-", "bd812345e2006927")],
    [("n", None, ""), ("a much longer endpoint label than the others, past forty columns", "x" * 16, "y" * 16)],
    [("caf\u00e9", "-", "-")],
    [],
]


@pytest.fixture(params=["80", "40", "20", "41", "45", "7", "1"])
def columns(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("COLUMNS", request.param)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    _fresh_consoles(monkeypatch)
    return int(request.param)


def _fresh_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich reads COLUMNS when a Console is made: the fallback's consoles are made under this test's settings
    monkeypatch.setattr(render, "console", render._LazyConsole())
    monkeypatch.setattr(render, "err_console", render._LazyConsole(stderr=True))


def _captured(monkeypatch: pytest.MonkeyPatch, write: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    try:
        write()  # type: ignore[operator]
    finally:
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    return out.getvalue(), err.getvalue()


def _rich(print_to: object) -> str:
    buffer = io.StringIO()
    print_to(Console(file=buffer))  # type: ignore[operator]
    return buffer.getvalue()


@pytest.mark.parametrize("soft_wrap", [False, True])
@pytest.mark.parametrize("parts", LINES)
def test_a_line_reads_as_rich_prints_it(parts: tuple, soft_wrap: bool, columns: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _rich(lambda c: c.print(line(*parts), highlight=False, soft_wrap=soft_wrap))
    assert _captured(monkeypatch, lambda: say(*parts, soft_wrap=soft_wrap)) == (expected, "")
    assert _captured(monkeypatch, lambda: say(*parts, err=True, soft_wrap=soft_wrap)) == ("", expected)


@pytest.mark.parametrize("rows", TABLES)
def test_a_table_reads_as_rich_prints_it(rows: list, columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _rich(lambda console: console.print(render.rich_table(("endpoint", "before", "after"), rows)))
    assert _captured(monkeypatch, lambda: print_table(("endpoint", "before", "after"), rows)) == (expected, "")


@pytest.mark.parametrize(("env", "plain"), [({"FORCE_COLOR": "1"}, False), ({"TTY_COMPATIBLE": "1"}, False),
                                            ({"FORCE_COLOR": ""}, True), ({"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"},
                                                                          True)])
def test_forced_colours_are_left_to_rich(env: dict[str, str], plain: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "80")
    _fresh_consoles(monkeypatch)
    parts = ("  ", ("c00/cm", "dim"), " ", ("ok", "green"))
    expected = _rich(lambda c: c.print(line(*parts), highlight=False))
    out, _ = _captured(monkeypatch, lambda: say(*parts))
    assert out == expected
    assert ("\x1b[" not in out) == plain


class _NoRich:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"rich was used ({name})")


def test_plain_text_that_fits_never_reaches_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(render, "console", _NoRich())
    monkeypatch.setattr(render, "err_console", _NoRich())
    out, err = _captured(monkeypatch, lambda: (say(*LINES[0]), say(*LINES[1], err=True), print_table(
        ("endpoint", "before", "after"), TABLES[0]), say(("z" * 200, ""), soft_wrap=True)))
    assert out.splitlines() == ["  c00/cm verify ok 4 endpoint(s) serve ab12",
                                "endpoint                                 before            after           ",
                                "cm@node1 127.157.1.1:8443                c22b0ce9744423a9  bd812345e2006927",
                                "cm@cluster GET /v1/cluster/certificates  -                 bd812345e2006927",
                                "z" * 200]
    assert err == "  c00/cm push ok \n"


def test_wrapping_matches_rich_on_many_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    chooser = random.Random(17)  # the same lines on every run
    monkeypatch.setattr(render, "console", _NoRich())  # ASCII lines: never handed to rich
    for _ in range(200):
        text = "".join(chooser.choice(["a", "bb", "cccc", " ", "  ", "-", "x" * 12]) for _ in range(chooser.randint(0,
                                                                                                                 40)))
        width = chooser.randint(1, 30)
        monkeypatch.setenv("COLUMNS", str(width))
        expected = _rich(lambda c, t=text: c.print(line((t, "")), highlight=False))
        assert _captured(monkeypatch, lambda t=text: say((t, "")))[0] == expected, (text, width)


def test_tables_narrowed_to_the_width_match_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    chooser = random.Random(20)  # the same tables on every run
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    words = ["a", "bb", "cccc", "-", "x" * 9, "metrics_exporter@cluster", "GET", "/v1/cluster/certificates"]
    plain = 0
    for _ in range(300):
        count = chooser.randint(1, 4)
        header = [chooser.choice(["endpoint", "before", "after", "x"]) for _ in range(count)]
        rows = [[" ".join(chooser.choice(words) for _ in range(chooser.randint(0, 4))) + chooser.choice(["", " "])
                 for _ in range(count)] for _ in range(chooser.randint(0, 4))]
        width = chooser.randint(1, 90)
        monkeypatch.setenv("COLUMNS", str(width))
        _fresh_consoles(monkeypatch)

        expected = _rich(lambda console, h=header, r=rows: console.print(render.rich_table(h, r)))
        assert _captured(monkeypatch, lambda h=header, r=rows: print_table(h, r)) == (expected, ""), (header, rows,
                                                                                                         width)
        cells = [header, *rows]
        plain += render._fitted(cells, width) is not None
    assert plain > 100  # most were written without rich


def test_a_wide_endpoint_table_is_wrapped_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(render, "console", _NoRich())
    rows = [("metrics_exporter@node1 127.108.1.1:8070", "589112f44559b44e", "dd910f07c542d868"),
            ("metrics_exporter@cluster GET /v1/cluster/certificates", "-", "dd910f07c542d868")]
    out, _ = _captured(monkeypatch, lambda: print_table(("endpoint", "before", "after"), rows))
    assert out.splitlines() == [
        "endpoint                                      before            after           ",
        "metrics_exporter@node1 127.108.1.1:8070       589112f44559b44e  dd910f07c542d868",
        "metrics_exporter@cluster GET                  -                 dd910f07c542d868",
        "/v1/cluster/certificates                                                        "]
