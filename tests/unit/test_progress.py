"""Live progress: drawn on a terminal only after a second of work, silent under --json or without a terminal."""

from __future__ import annotations

import io
import threading

from rotation.cli.progress import LiveProgress
from rotation.usecases.progress import Tally


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_drawn_before_a_second_of_work_then_the_bar_is() -> None:
    clock, stream = Clock(), Terminal()
    with LiveProgress("checking", stream=stream, clock=clock, ticker=False) as progress:
        progress(1, 10)
        clock.now += 0.99
        progress(2, 10)
        assert not progress.shown and stream.getvalue() == ""
        clock.now += 0.02
        progress(3, 10)
        assert progress.shown
        assert "checking" in stream.getvalue() and "3/10" in stream.getvalue()


def test_a_slow_step_is_drawn_without_waiting_for_the_next_one() -> None:
    clock, stream = Clock(), Terminal()
    with LiveProgress("auditing", stream=stream, clock=clock, ticker=False) as progress:
        progress(0, 3)
        clock.now += 1.5
        progress.poll()  # what the ticker thread does while a REST read is slow
        assert progress.shown and "0/3" in stream.getvalue()


def test_silent_under_json_and_without_a_terminal() -> None:
    for enabled, stream in ((False, Terminal()), (True, io.StringIO())):
        clock = Clock()
        with LiveProgress("checking", enabled=enabled, stream=stream, clock=clock, ticker=False) as progress:
            progress(1, 10)
            clock.now += 5
            progress(2, 10)
            progress.poll()
            assert not progress.active and not progress.shown
        assert stream.getvalue() == ""


def test_outside_text_in_the_label_is_shown_as_text() -> None:
    clock, stream = Clock(), Terminal()
    with LiveProgress("[red]east[/red]", stream=stream, clock=clock, delay=0, ticker=False) as progress:
        progress(0, 1)
    assert "[red]east[/red]" in stream.getvalue()


def test_the_tally_counts_from_many_threads_and_reports_every_change() -> None:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def progress(done: int, total: int) -> None:
        with lock:
            seen.append((done, total))

    tally = Tally(progress, total=2)
    tally.add(8 * 500 - 2)
    threads = [threading.Thread(target=lambda: [tally.advance() for _ in range(500)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (tally.done, tally.total) == (4000, 4000)
    assert seen[0] == (0, 2) and seen[1] == (0, 4000) and len(seen) == 2 + 4000
    assert max(seen) == (4000, 4000)


def test_steps_in_quick_succession_redraw_once_per_tick() -> None:
    clock, stream = Clock(), Terminal()
    with LiveProgress("checking", stream=stream, clock=clock, ticker=False) as progress:
        clock.now += 2
        progress(1, 300)
        drawn = stream.getvalue()
        for done in range(2, 300):
            progress(done, 300)
        assert stream.getvalue() == drawn  # the same instant: no redraw per handshake
        clock.now += 0.2
        progress(300, 300)
        assert "300/300" in stream.getvalue()
