"""The chat command grammar: typed commands for good input, a short usage answer for anything else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotation.chatops.grammar import (
    Check,
    Confirm,
    Help,
    History,
    Rotate,
    Status,
    UsageError,
    parse,
    render,
)
from rotation.core.model import CertName


@pytest.mark.parametrize(("text", "expected"), [
    ("help", Help()),
    ("  HELP ", Help()),
    ("status", Status()),
    ("status east", Status("east")),
    ("check east-1", Check("east-1")),
    ("rotate east proxy", Rotate("east", (CertName.PROXY,))),
    ("rotate east PROXY api proxy", Rotate("east", (CertName.PROXY, CertName.API))),
    ("rotate east all", Rotate("east", ())),
    ("rotate east all --dry-run", Rotate("east", (), dry_run=True)),
    ("rotate --dry-run east cm", Rotate("east", (CertName.CM,), dry_run=True)),
    ("rotate east db:Orders REST_CLIENT", Rotate("east", ("db:Orders", "rest_client"))),  # a database keeps its case
    ("history east db:7", History("east", "db:7")),
    ("history east", History("east")),
    ("history east metrics_exporter", History("east", CertName.METRICS_EXPORTER)),
    ("confirm abcdefghijklmnopqrstuv", Confirm("abcdefghijklmnopqrstuv")),
])
def test_good_commands(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "needle"), [
    ("", "no command"),
    ("   ", "no command"),
    ("rotatee east proxy", "unknown command"),
    ("status a b", "wrong number"),
    ("check", "wrong number"),
    ("rotate east", "name a cluster and a certificate"),
    ("rotate east nginx", "unknown certificate"),
    ("rotate east db:", "unknown certificate"),
    ("rotate east db:../x", "unknown certificate"),
    ("rotate east all proxy", "stands alone"),
    ("rotate east proxy --force", "unknown option"),
    ("rotate east proxy --dry-run --dry-run", "twice"),
    ("rotate ../etc proxy", "not a cluster name"),
    ("history", "wrong number"),
    ("history east proxy extra", "wrong number"),
    ("confirm short", "not a confirmation code"),
    ("status " + "x" * 2000, "too long"),
    ("status <!channel>", "not a cluster name"),
])
def test_bad_commands_get_a_short_usage_answer(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert needle in caught.value.answer
    assert len(caught.value.answer) < 700
    assert "<!channel>" not in caught.value.answer  # nothing that pings a whole channel is echoed


def test_help_lists_every_command() -> None:
    with pytest.raises(UsageError) as caught:
        parse("nope")
    for verb in ("help", "status", "check", "rotate", "history"):
        assert f"`{verb}" in caught.value.answer


words = st.sampled_from(["rotate", "status", "check", "history", "help", "confirm", "all", "--dry-run", "--x",
                         "east", "proxy", "cm", "api", "syncer", "metrics_exporter", "ALL", "", "*", "-", "é"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), st.lists(words, max_size=6).map(" ".join),
                 st.binary(max_size=100).map(lambda b: b.decode("latin-1"))))
def test_no_input_makes_the_parser_raise_anything_else(text: str) -> None:
    try:
        command = parse(text)
    except UsageError as exc:
        assert exc.answer and len(exc.answer) < 1500
    else:
        # Whatever parses renders to text that parses back to the same command.
        assert parse(render(command)) == command if not isinstance(command, Confirm) else True


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(CertName)), st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True), st.booleans())
def test_rotate_round_trips(cert: CertName, cluster: str, dry_run: bool) -> None:
    command = Rotate(cluster, (cert,), dry_run=dry_run)
    assert parse(render(command)) == command
