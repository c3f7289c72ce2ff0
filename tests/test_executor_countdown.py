"""The --wait countdown: one line rewritten in place on a terminal, a few plain lines otherwise."""

from __future__ import annotations

import io
from types import SimpleNamespace

from migrator.executor.context import Control, Output
from migrator.executor.runner import Runner


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _count_down(stream, seconds: float) -> str:
    clock = [1_000_000.0]

    def sleep(s: float) -> None:
        clock[0] += s

    me = SimpleNamespace(control=Control(), now=lambda: clock[0], sleep=sleep, waited=0.0,
                         output=Output(stream=stream))
    Runner.countdown(me, clock[0] + seconds, "batch 1: propagation wait")  # type: ignore[arg-type]
    assert me.waited == seconds
    return stream.getvalue()


def test_on_a_terminal_the_countdown_rewrites_one_line():
    text = _count_down(Terminal(), 2 * 3600)
    assert text.count("\n") == 1 and text.endswith("\n")  # only the final line ends one
    assert text.count("\r") > 7000  # rewritten every second
    assert "1h59m59s left" in text and "waited for batch 1: propagation wait" in text


def test_without_a_terminal_a_two_hour_wait_prints_a_few_lines():
    lines = _count_down(io.StringIO(), 2 * 3600).splitlines()
    assert "\r" not in "".join(lines)
    assert 3 <= len(lines) <= 6, lines  # start, every 30 minutes, end
    assert lines[0].startswith("  waiting for batch 1: propagation wait: 2h00m00s left")
    assert lines[-1].startswith("  waited for batch 1: propagation wait")
