"""Readings stamped before the clock was synchronised are re-timed by the correction."""

from buffers.spool import BufferStats, Spool, SpoolSettings
from buffers.storage import MemoryFiles
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
