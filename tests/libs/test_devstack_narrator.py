"""The story's narrator on a terminal: it waits for Enter before each numbered chapter after the
first, and Ctrl-C while it waits ends the story."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from tsunagu.devstack import cli


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """stdin is the slave side of a pseudo-terminal; yields the master's fd to type into."""
    master, slave = os.openpty()
    reader = os.fdopen(slave, "r")
    monkeypatch.setattr(sys, "stdin", reader)
    yield master
    reader.close()
    os.close(master)


def test_it_waits_for_enter_between_chapters(terminal: int, capsys: pytest.CaptureFixture[str]):
    stop = threading.Event()
    say = cli._narrator(stop, interactive=True)
    say("1. first chapter")  # no wait before the first
    say("   a detail line")  # nor before a line that is not a chapter
    os.write(terminal, b"\n")
    say("2. second chapter")
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "1. first chapter",
        "   a detail line",
        "   ⏎ Enter で次へ / press Enter to continue",
        "2. second chapter",
    ]


def test_ctrl_c_while_waiting_ends_the_story(terminal: int):
    stop = threading.Event()
    say = cli._narrator(stop, interactive=True)
    say("1. first chapter")
    threading.Timer(0.3, stop.set).start()  # what the SIGINT handler does
    with pytest.raises(cli.DemoStopped):
        say("2. second chapter")


def test_fast_never_waits(capsys: pytest.CaptureFixture[str]):
    stop = threading.Event()
    threading.Timer(2.0, stop.set).start()  # were it to wait, it would raise DemoStopped here
    say = cli._narrator(stop, interactive=False)
    for number in range(1, 4):
        say(f"{number}. chapter")
    assert capsys.readouterr().out.splitlines() == ["1. chapter", "2. chapter", "3. chapter"]
    assert not stop.is_set()
