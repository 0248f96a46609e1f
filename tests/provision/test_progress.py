"""Long steps show their elapsed time while they run (issue 11, item 6)."""

from __future__ import annotations

import io
import time

import pytest

from ducklake_infra.provision.progress import Progress, elapsed


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (59.9, "59s"), (60, "1m00s"),
                                          (185, "3m05s"), (3720, "1h02m")])
def test_elapsed(seconds, text):
    assert elapsed(seconds) == text


def test_ci_log_gets_periodic_lines_with_the_log_path(tmp_path):
    out = io.StringIO()
    p = Progress(out, log_path=tmp_path / "up.log", interval=0.05)
    with p.step("go build kubernetes"):
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    ticks = [line for line in lines if "running for" in line]
    assert lines[0] == "==> go build kubernetes"
    assert len(ticks) >= 2, lines
    assert ticks[0] == f"    ... go build kubernetes: running for 0s (log: {tmp_path / 'up.log'})"
    assert lines[-1].startswith("    ok go build kubernetes (0.")
    assert "\r" not in out.getvalue()                 # no terminal control codes in a log
    time.sleep(0.2)
    assert out.getvalue().splitlines() == lines       # the ticker stopped with the step


def test_terminal_redraws_one_line_in_place():
    out = Tty()
    p = Progress(out, interval=0.05)
    assert p.live
    with p.step("helm releases"):
        time.sleep(0.2)
    text = out.getvalue()
    assert "\r\x1b[K    ... helm releases: 0s" in text
    # the live line is cleared before the result line, which stands alone
    tail = text.rsplit("\r\x1b[K", 1)[1]
    assert tail.startswith("    ok helm releases (") and tail.endswith("s)\n"), tail
    assert text.count("\n") == 2                      # "==> ..." and "ok ...": nothing else


def test_only_the_innermost_step_reports():
    out = io.StringIO()
    p = Progress(out, interval=0.05)
    with p.step("outer"):
        with p.step("inner"):
            time.sleep(0.3)
    ticks = [line for line in out.getvalue().splitlines() if "running for" in line]
    assert ticks and all("inner" in t for t in ticks), ticks


def test_a_failing_step_stops_its_ticker_and_says_failed():
    out = io.StringIO()
    p = Progress(out, interval=0.05)
    with pytest.raises(RuntimeError):
        with p.step("load images"):
            time.sleep(0.12)
            raise RuntimeError("boom")
    n = len(out.getvalue())
    assert "FAILED load images (0.1" in out.getvalue()
    time.sleep(0.2)
    assert len(out.getvalue()) == n
    assert p.timings[-1][0] == "load images" and p.timings[-1][2] == "failed"


def test_quiet_prints_nothing():
    out = io.StringIO()
    p = Progress(out, quiet=True, interval=0.01)
    with p.step("x"):
        time.sleep(0.05)
    assert out.getvalue() == "" and p.timings[0][0] == "x"
