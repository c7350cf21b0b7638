"""Readings stamped before the clock was synchronised are re-timed by the correction."""

import threading

import pytest

from gateway.spool import BufferStats, Spool, SpoolSettings
from gateway.spool.storage import MemoryFiles
from gateway import clock
from gateway.clock import ClockWatch
from gateway.frame import Frame


class FakeClocks:
    def __init__(self):
        self.synced = False
        self.wall_offset = 0.0    # how wrong the wall clock is
        self.mono = 1000.0

    def wall(self):
        return 1_700_000_000.0 + self.mono + self.wall_offset


def test_the_step_that_synchronises_the_clock_is_measured():
    clocks = FakeClocks()
    clocks.wall_offset = -86400 * 365          # booted a year behind
    watch = ClockWatch(lambda: clocks.synced, clocks.wall, lambda: clocks.mono, recheck=0)
    assert watch.note(1) is None and watch.note(2) is None
    assert watch.pending
    clocks.mono += 30
    clocks.synced, clocks.wall_offset = True, 0.0   # NTP steps the clock
    assert watch.note(3) == (1, 2, 86400 * 365)
    assert not watch.pending
    assert watch.note(4) is None


def test_small_corrections_are_ignored():
    clocks = FakeClocks()
    watch = ClockWatch(lambda: clocks.synced, clocks.wall, lambda: clocks.mono, recheck=0)
    watch.note(1)
    clocks.synced, clocks.wall_offset = True, 0.2
    assert watch.note(None) is None


def test_queued_readings_are_re_timed_and_the_fix_survives_a_restart():
    hot = MemoryFiles()
    spool = Spool(hot, None, SpoolSettings())
    spool.open()
    cursor = spool.register("a", BufferStats())
    for i in range(5):
        spool.append(Frame(1, (i,), 1000.0 + i, None, None, "t"))
    spool.flush()
    spool.correct_times(2, 3, 500.0)
    assert [f.time for f in cursor.take(10, block=False)] == [1000.0, 1501.0, 1502.0, 1003.0, 1004.0]
    spool._stopping = True   # kill -9 and restart: the correction is in the cursor file
    spool = Spool(hot, None, SpoolSettings())
    spool.open()
    cursor = spool.register("a", BufferStats())
    assert [f.time for f in cursor.take(10, block=False)][1:3] == [1501.0, 1502.0]


def fake_adjtimex(monkeypatch, state):
    """The kernel's answer faked at the narrowest boundary: libc's adjtimex() result."""
    calls = []

    def adjtimex(timex):
        calls.append(timex)
        return state

    monkeypatch.setattr(clock, "_adjtimex", lambda: adjtimex)
    return calls


@pytest.mark.parametrize("state, synchronised", [(0, True), (1, True), (4, True), (clock.TIME_ERROR, False)])
def test_the_kernel_is_asked_with_adjtimex(monkeypatch, state, synchronised):
    calls = fake_adjtimex(monkeypatch, state)
    assert clock.kernel_says_synchronised() is synchronised
    assert len(calls) == 1


def test_the_clock_state_is_known_before_the_first_reading(monkeypatch):
    """A gateway starts with `clock = auto` on an unsynchronised machine: the watch asks the
    kernel when it is given the probe, so the very first reading, and a buffer asking before
    any reading came, get 'not synchronised'."""
    calls = fake_adjtimex(monkeypatch, clock.TIME_ERROR)
    watch = ClockWatch(clock.PROBES["trusted"])      # what the daemon makes before its config
    watch.use(clock.PROBES["auto"])                  # the config says auto: asked at once
    assert len(calls) == 1
    answers = []
    thread = threading.Thread(target=lambda: answers.append(watch.synchronised()))
    thread.start()
    thread.join()
    assert answers == [False]
    assert watch.note(1) is None and watch.pending

